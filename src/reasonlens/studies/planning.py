"""The planning study (Men et al., EMNLP 2024): Blocksworld data -> fine-tune -> evaluate.

Each stage writes its own run directory inside the study's, and a stage whose results are
already there is not run again, so an interrupted study resumes where it stopped:

    OUT/
      run.json, config.yaml        the study's resolved configuration
      data/                        Blocksworld files + manifest.json
      train/                       the fine-tuning run (model/ at the end)
      eval_base/, eval_finetuned/  evaluations of the model before and after fine-tuning
      results.json, summary.md, accuracy.png
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.errors import one_of
from reasonlens.runs import RunDir
from reasonlens.studies.planning_analyses import AnalysisLimits
from reasonlens.tasks.blocksworld import read_examples
from reasonlens.tasks.blocksworld.dataset import (
    MANIFEST,
    PAPER_TABLE1,
    DatasetConfig,
    write_dataset,
)
from reasonlens.tasks.blocksworld.dataset import (
    PRESETS as DATA_PRESETS,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanningPreset:
    """Sizes and hyper-parameters of one way to run the study."""

    name: str
    description: str
    counts: tuple[tuple[int, int, int, int], ...]  # (level, blocks, train, test)
    train: dict[str, Any]
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
    extra: dict[str, Any] = field(default_factory=dict)

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
GPU_RECIPE: dict[str, Any] = {
    "method": "full",
    "epochs": 3,
    "batch_size": 20,
    "gradient_accumulation": 1,
    "learning_rate": 1e-4,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.03,
}

# The CPU presets' recipe: one epoch, a short warm-up (lr 3e-4 was tried and learnt less).
CPU_RECIPE: dict[str, Any] = {
    "method": "full",
    "epochs": 1,
    "batch_size": 8,
    "gradient_accumulation": 1,
    "learning_rate": 1e-4,
    "lr_scheduler": "linear",
    "warmup_ratio": 0.05,
}

PRESETS: dict[str, PlanningPreset] = {
    "quick": PlanningPreset(
        name="quick",
        description="a laptop-CPU run in minutes: 4-5 blocks, L1-L3, 576 training problems, "
        "one epoch; 60 test problems evaluated; analyses on up to 64 solved L3 problems "
        "(chosen from 120)",
        counts=tuple((lv, b, 96, 60 if lv == 3 else 10) for lv in (1, 2, 3) for b in (4, 5)),
        blocks=(4, 5),
        train=CPU_RECIPE,
        eval_per_cell=10,
        analysis_blocks=None,
        limits=AnalysisLimits(analysis_set=64, flow=32, masking=32),
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
        train={
            "method": "full",
            "epochs": 3,
            "batch_size": 4,
            "gradient_accumulation": 5,
            "learning_rate": 5e-5,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
        },
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


def preset(name: str) -> PlanningPreset:
    if name not in PRESETS:
        raise one_of("preset", name, PRESETS)
    return PRESETS[name]


def study_config(p: PlanningPreset, model: str, seed: int) -> dict[str, Any]:
    return {
        "study": "planning",
        "preset": p.name,
        "model": model,
        "seed": seed,
        "data": p.dataset(seed).to_dict(),
        "train": p.train,
        "eval_per_cell": p.eval_per_cell,
        "analysis": {
            "level": p.analysis_level,
            "blocks": p.analysis_blocks,
            **asdict(p.limits),
        },
    }


def run_planning_study(
    preset_name: str,
    model: str,
    out: str | Path,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study into `out`; returns its results."""
    from reasonlens.evaluate.planning import evaluate_planning, write_planning_eval
    from reasonlens.models import load_model
    from reasonlens.train import TrainConfig, train

    p = preset(preset_name)
    run = RunDir.create(out, "study-planning", study_config(p, model, seed), overwrite=overwrite)
    handler = run.log_to_file()
    # seconds per stage, summed over every session of this study: a stage a resumed session
    # skips adds next to nothing, so the figures stay those of the work actually done
    timings_file = run.file("timings.json")
    timings: dict[str, float] = _read_json(timings_file) if timings_file.is_file() else {}

    def spent(stage: str, start: float) -> None:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
        run.write_json("timings.json", timings)

    try:
        # 1. data
        start = time.perf_counter()
        data_dir = run.file("data")
        if not (data_dir / MANIFEST).is_file():
            log.info("generating Blocksworld data into %s", data_dir)
            write_dataset(p.dataset(seed), data_dir)
        train_files = sorted(str(f) for f in data_dir.glob("L*_train.jsonl"))
        test_files = sorted(data_dir.glob("L*_test.jsonl"))
        all_test = [ex for f in test_files for ex in read_examples(f)]
        test = _per_cell(all_test, p.eval_per_cell)
        spent("data_s", start)

        # 2. fine-tune
        start = time.perf_counter()
        train_dir = run.file("train")
        config = TrainConfig(model=model, data=train_files, seed=seed, **p.train)
        if device:
            config = TrainConfig(**{**asdict(config), "device": device})
        if not (train_dir / "model" / "config.json").is_file():
            train(config, train_dir, progress=progress)
        spent("train_s", start)

        # 3. evaluate base and fine-tuned, side by side
        evals: dict[str, dict] = {}
        for label, source in (("base", model), ("finetuned", str(train_dir))):
            start = time.perf_counter()
            eval_dir = run.file(f"eval_{label}")
            if not (eval_dir / "results.json").is_file():
                loaded = load_model(source, device=device)
                result = evaluate_planning(
                    loaded, test, mode="both", batch_size=p.eval_batch_size, progress=progress
                )
                eval_run = RunDir.create(
                    eval_dir,
                    "eval",
                    {"model": source, "data": [str(f) for f in test_files], "mode": "both"},
                )
                write_planning_eval(result, eval_run)
            evals[label] = _read_json(eval_dir / "results.json")
            evals[label]["by_cell"] = _by_cell(eval_dir / "examples.jsonl")
            spent(f"eval_{label}_s", start)

        # 4. the paper's analyses, on test problems the fine-tuned model solves
        start = time.perf_counter()
        analyses = _analyses(p, run, str(train_dir), all_test, seed, device, progress, model)
        spent("analyses_s", start)
    finally:
        logging.getLogger("reasonlens").removeHandler(handler)

    from reasonlens.report.planning import write_planning_summary

    results = {
        "preset": p.name,
        "model": model,
        "seed": seed,
        "data": _read_json(data_dir / MANIFEST)["totals"],
        "train": _read_json(train_dir / "results.json"),
        "eval": evals,
        "analysis_set": analyses.pop("analysis_set"),
        "analyses": {k: _headline(k, v) for k, v in analyses.items()},
        "timings_s": timings,
    }
    run.write_json("results.json", results)
    write_planning_summary(run, results, analyses)
    return results


def _analyses(
    p: PlanningPreset,
    run: RunDir,
    model_source: str,
    test: list,
    seed: int,
    device: str | None,
    progress: bool,
    base_name: str = "",
) -> dict:
    from reasonlens.models import load_model
    from reasonlens.studies.planning_analyses import run_all, select_analysis_set

    out = run.file("analyses")
    candidates = [
        ex
        for ex in test
        if ex.level == p.analysis_level
        and (p.analysis_blocks is None or ex.n_blocks == p.analysis_blocks)
    ]
    model = load_model(model_source, device=device)
    if base_name:  # plots name the model a reader knows, not the training run's directory
        model.name = f"{Path(base_name).name} (fine-tuned)"
    items, counts = select_analysis_set(
        model, candidates, p.limits.analysis_set, seed, cache=_solved_cache(out, candidates)
    )
    log.info("analysis set: %s", counts)
    if not items:
        return {"analysis_set": counts}
    palette = p.dataset(seed).colors
    results = {
        "analysis_set": counts,
        **run_all(model, items, out, p.limits, palette, seed=seed, progress=progress),
    }
    if p.horizon_levels:
        results["horizons"] = _horizons(p, model, test, out, palette, seed, progress)
    return results


def _solved_cache(out: Path, candidates: list) -> Path:
    """Where the teacher-forcing verdicts on these candidates are kept (one file per level and
    block counts, so the horizons reuse the main analysis's verdicts)."""
    levels = sorted({ex.level for ex in candidates})
    blocks = sorted({ex.n_blocks for ex in candidates})
    name = "_".join(f"L{lv}" for lv in levels) + "_b" + "-".join(map(str, blocks))
    return out / f"solved_{name}.json"


def _horizons(p, model, test, out: Path, palette, seed: int, progress: bool) -> dict:
    """Future-decision probes at each longer level, and the one figure comparing their reach."""
    from reasonlens.report.horizons import plot_horizons
    from reasonlens.studies.planning_analyses import run_probes, select_analysis_set

    matrices: dict[int, dict] = {}
    sets: dict[str, dict] = {}
    for level in p.horizon_levels:
        candidates = [ex for ex in test if ex.level == level]
        if not candidates:
            continue
        items, counts = select_analysis_set(
            model, candidates, p.limits.analysis_set, seed, cache=_solved_cache(out, candidates)
        )
        sets[f"L{level}"] = counts
        if len(items) < 5:
            continue  # too few solved problems to split into train and test
        same_as_main = level == p.analysis_level and (
            p.analysis_blocks is None or {ex.n_blocks for ex in candidates} == {p.analysis_blocks}
        )
        # the main analysis already probed this level's problems: reuse them
        directory = out if same_as_main and p.limits.probes is None else out / f"horizon_L{level}"
        directory.mkdir(parents=True, exist_ok=True)
        probes = run_probes(
            model, items, directory, progress, palette, p.limits.probe_layer_stride, seed
        )
        matrices[level] = probes["future_matrix_linear"]
        counts["probe_test_problems"] = probes["n_test"]
    if matrices:
        plot_horizons(matrices, out / "horizons.png", f"Look-ahead by plan length, {model.name}")
    return {
        "analysis_sets": sets,
        "future_matrix_linear": {f"L{k}": v for k, v in matrices.items()},
    }


def _headline(name: str, result: dict) -> dict:
    """What results.json keeps of an analysis (the full result is in analyses/NAME.json)."""
    keep = (
        "n_examples",
        "seconds",
        "chunks",
        "normalized",
        "impact",
        "future_matrix_linear",
        "future_matrix_mlp",
        "analysis_sets",
    )
    if name == "extraction":
        return {k: result["raw"][k] for k in ("mean", "std", "components")} | {
            "n_examples": result["n_examples"],
            "seconds": result["seconds"],
        }
    return {k: v for k, v in result.items() if k in keep}


def _by_cell(examples_jsonl: Path) -> dict[str, dict]:
    """Metrics per (level, blocks) cell, from the evaluation's per-example records."""
    from reasonlens.evaluate.planning import summarise

    cells: dict[str, list[dict]] = {}
    for line in examples_jsonl.read_text().splitlines():
        record = json.loads(line)
        cells.setdefault(f"L{record['level']}/{record['n_blocks']}", []).append(record)
    return {key: summarise(records) for key, records in sorted(cells.items())}


def _per_cell(examples: list, limit: int | None) -> list:
    if limit is None:
        return examples
    seen: dict[tuple[int, int], int] = {}
    kept = []
    for ex in examples:
        cell = (ex.level, ex.n_blocks)
        if seen.get(cell, 0) < limit:
            seen[cell] = seen.get(cell, 0) + 1
            kept.append(ex)
    return kept


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())
