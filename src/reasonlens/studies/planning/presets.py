"""The planning study's presets: sizes and hyper-parameters of each way to run it.

Plain data, no torch: `reasonlens study list` and `--help` read them without loading a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from reasonlens.tasks.blocksworld.dataset import PAPER_TABLE1, DatasetConfig
from reasonlens.tasks.blocksworld.dataset import PRESETS as DATA_PRESETS
from reasonlens.train.recipe import TrainRecipe


@dataclass(frozen=True)
class AnalysisLimits:
    """How many analysis-set problems each analysis uses (None: all); flow and masking cost
    several passes per problem, so a CPU preset runs them on fewer."""

    analysis_set: int = 400
    extraction: int | None = None
    flow: int | None = None
    masking: int | None = None
    probes: int | None = None
    probe_layer_stride: int = 4  # the paper plots layers 0, 4, 8, ...


@dataclass(frozen=True)
class PlanningPreset:
    """Sizes and hyper-parameters of one way to run the study."""

    name: str
    description: str
    counts: tuple[tuple[int, int, int, int], ...]  # (level, blocks, train, test)
    train: TrainRecipe
    eval_per_cell: int | None  # test problems evaluated per (level, blocks); None = all
    eval_batch_size: int = 16
    analysis_level: int = 3
    analysis_blocks: int | None = 6  # None: every block count of the level
    limits: AnalysisLimits = field(default_factory=AnalysisLimits)
    # beyond the paper: repeat the future-decision probes at these longer levels
    horizon_levels: tuple[int, ...] = ()
    data_preset: str = "paper"
    levels: tuple[int, ...] = (1, 2, 3)
    blocks: tuple[int, ...] = (4, 5, 6)

    def dataset(self, seed: int) -> DatasetConfig:
        base = DATA_PRESETS[self.data_preset]
        return DatasetConfig(
            preset=self.data_preset,
            seed=seed,
            format=base.format,
            slots=base.slots,
            colors=base.colors,
            levels=self.levels,
            blocks=self.blocks,
            counts=self.counts,
        )


def _paper_counts() -> tuple[tuple[int, int, int, int], ...]:
    return tuple((lv, b, *PAPER_TABLE1[(b, lv)]) for lv in (1, 2, 3) for b in (4, 5, 6))


def _full_counts() -> tuple[tuple[int, int, int, int], ...]:
    # the paper's test sets, and as many training problems as the pools allow, up to 2,000 a cell
    pools = {(4, 1): 240, (4, 2): 636, (4, 3): 1332}
    counts = []
    for lv in (1, 2, 3):
        for b in (4, 5, 6):
            test = PAPER_TABLE1[(b, lv)][1]
            train = min(2000, pools.get((b, lv), 10**9) - test)
            counts.append((lv, b, train, test))
    return tuple(counts)


# The fine-tuning recipe of the presets meant for a GPU (global batch 20 as the paper).
GPU_RECIPE = TrainRecipe(
    method="full",
    epochs=3,
    batch_size=20,
    gradient_accumulation=1,
    learning_rate=1e-4,
    lr_scheduler="cosine",
    warmup_ratio=0.03,
)

# The quick preset's training problems per block count, by level: mostly L3, the level the
# analyses read (measured on a 2-core CPU: 96 a level solved 8-12% of L3 test problems under
# teacher forcing, this mix 33%, at the same number of steps).
QUICK_TRAIN = {1: 32, 2: 32, 3: 224}

# The CPU presets' recipe: one epoch, a short warm-up (lr 3e-4 was tried and learnt less), bf16
# autocast (fp32 master weights): 1.5-2x faster a step on this CPU (AVX512-BF16).
CPU_RECIPE = TrainRecipe(
    method="full",
    epochs=1,
    batch_size=8,
    gradient_accumulation=1,
    learning_rate=1e-4,
    lr_scheduler="linear",
    warmup_ratio=0.05,
    dtype="bfloat16",
)

PRESETS: dict[str, PlanningPreset] = {
    "quick": PlanningPreset(
        name="quick",
        description="a laptop-CPU run in minutes: 4-5 blocks, L1-L3, 576 training problems "
        "(448 of them L3), one epoch in bf16; 48 test problems evaluated; every analysis on "
        "30 solved L3 problems (scored from up to 300)",
        counts=tuple(
            (lv, b, QUICK_TRAIN[lv], 150 if lv == 3 else 10) for lv in (1, 2, 3) for b in (4, 5)
        ),
        blocks=(4, 5),
        train=CPU_RECIPE,
        eval_per_cell=8,
        analysis_blocks=None,
        limits=AnalysisLimits(analysis_set=30, flow=30, masking=30),
    ),
    "cpu": PlanningPreset(
        name="cpu",
        description="the analyses at a size a 2-core CPU runs in under an hour: 5 blocks, "
        "L1-L5, 1,408 training problems (most at L3-L5), one epoch; analyses on up to 64 "
        "solved L3 problems (chosen from 200), and the horizons figure for L3-L5",
        counts=(
            (1, 5, 96, 20),
            (2, 5, 192, 20),
            (3, 5, 480, 200),
            (4, 5, 320, 120),
            (5, 5, 320, 120),
        ),
        levels=(1, 2, 3, 4, 5),
        blocks=(5,),
        train=CPU_RECIPE,
        eval_per_cell=20,
        analysis_blocks=5,
        limits=AnalysisLimits(analysis_set=64, flow=32, masking=32),
        horizon_levels=(3, 4, 5),
    ),
    "paper": PlanningPreset(
        name="paper",
        description="the paper's data (Table 1, 567/1579) and fine-tuning: full, 3 epochs, "
        "global batch 20, lr 5e-5",
        counts=_paper_counts(),
        train=TrainRecipe(
            method="full",
            epochs=3,
            batch_size=4,
            gradient_accumulation=5,
            learning_rate=5e-5,
            lr_scheduler="constant",
            warmup_ratio=0.0,
        ),
        eval_per_cell=None,
    ),
    "horizons": PlanningPreset(
        name="horizons",
        description="beyond the paper: 5 blocks, L3-L5 (6-10 steps), 600 training problems a "
        "level; how far ahead future-decision probes reach as plans get longer (meant for a GPU)",
        counts=tuple((lv, 5, 600, 200) for lv in (3, 4, 5)),
        levels=(3, 4, 5),
        blocks=(5,),
        train=GPU_RECIPE,
        eval_per_cell=None,
        analysis_blocks=5,
        horizon_levels=(3, 4, 5),
    ),
    "full": PlanningPreset(
        name="full",
        description="the paper's test sets with up to 2,000 generated training problems per "
        "cell (15,200 in all), full fine-tune, 3 epochs (meant for a GPU)",
        counts=_full_counts(),
        train=GPU_RECIPE,
        eval_per_cell=None,
    ),
}


def design(p: PlanningPreset, seed: int) -> dict[str, Any]:
    """What a run records of the preset (beyond the header every study has)."""
    return {
        "data": p.dataset(seed).to_dict(),
        "train": asdict(p.train),
        "eval_per_cell": p.eval_per_cell,
        "analysis": {
            "level": p.analysis_level,
            "blocks": p.analysis_blocks,
            **asdict(p.limits),
        },
    }
