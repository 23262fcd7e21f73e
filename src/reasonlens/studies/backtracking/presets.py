"""The backtracking study's presets: how many traces to train on, chains to sample, layers and
lags to probe. No torch at import time (listing studies stays instant)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reasonlens.train.recipe import TrainRecipe

#: The seed's lags: -8 to +48 tokens by 4 (as ``analyses.lag_probes.DEFAULT_LAGS``).
LAGS = tuple(range(-8, 49, 4))


@dataclass(frozen=True)
class BacktrackingPreset:
    name: str
    description: str
    n_train: int  # generated traces to fine-tune on
    n_chains: int  # fresh mazes the fine-tuned model writes one chain for
    rooms: tuple[int, int] = (6, 12)  # rooms per maze (inclusive)
    train: TrainRecipe = field(default_factory=TrainRecipe)
    temperature: float = 0.7
    max_new_tokens: int = 400
    sample_batch: int = 16
    n_layers: int = 5  # probed layers, evenly spaced over the model's depth
    capture_batch: int = 8
    lags: tuple[int, ...] = LAGS
    bag_k: int = 8  # the bag-of-tokens baseline's window (and the prefix baseline's recent one)
    bootstrap: int = 1000
    # the onset measure's permutation null: shuffles of the labels among chains, fitted
    # batched at the probe's layers (its 95th percentile is the floor a probe must clear)
    null_permutations: int = 100
    # the verdict: "beats" a floor or control by at least this much AUC (paired 95% interval)
    min_effect: float = 0.02
    # a lag where a control (or the null) reaches this AUC is not measurable
    ceiling: float = 0.95

    def design(self) -> dict[str, Any]:
        """What the study's data depends on (recorded, so a resumed run checks it)."""
        return {"n_train": self.n_train, "n_chains": self.n_chains, "rooms": list(self.rooms)}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["train"] = dataclasses.asdict(self.train)
        return out


# Measured on the 2-core CPU: one epoch over 400 traces in bf16 writes chains the checker reads
# (see the README's backtracking section for the figures).
CPU_RECIPE = TrainRecipe(
    method="full",
    epochs=1,
    batch_size=8,
    learning_rate=2e-4,
    lr_scheduler="linear",
    warmup_ratio=0.05,
    dtype="bfloat16",
)

GPU_RECIPE = TrainRecipe(
    method="full",
    epochs=2,
    batch_size=16,
    learning_rate=1e-4,
    lr_scheduler="cosine",
    warmup_ratio=0.03,
)

PRESETS: dict[str, BacktrackingPreset] = {
    "quick": BacktrackingPreset(
        name="quick",
        description="a 2-core CPU in under 20 minutes: fine-tune on 400 maze-search traces "
        "(6-12 rooms), sample 160 chains at T=0.7, label them with the checker, probe 5 "
        "layers x 15 lags (onsets and all targets) with every control and a 100-draw "
        "permutation null",
        n_train=400,
        n_chains=160,
        train=CPU_RECIPE,
        # measured on the 2-core CPU: batches of 16 sample about 1.8 s a chain; batches of 32
        # are slower (2.8 s a chain: one chain that runs to the limit holds up 31 others)
        sample_batch=16,
        max_new_tokens=320,
    ),
    "paper": BacktrackingPreset(
        name="paper",
        description="the seed's scale on a GPU: 2,000 traces (8-16 rooms), 1,000 sampled "
        "chains, 5 layers x 15 lags (onsets and all targets) with every control and a "
        "1,000-draw permutation null",
        n_train=2000,
        n_chains=1000,
        rooms=(8, 16),
        train=GPU_RECIPE,
        sample_batch=64,
        capture_batch=32,
        null_permutations=1000,
    ),
}


def probed_layers(n_model_layers: int, k: int) -> list[int]:
    """``k`` layers evenly spaced from the first to the last (fewer when the model has fewer)."""
    if k >= n_model_layers:
        return list(range(n_model_layers))
    if k == 1:
        return [n_model_layers - 1]
    return sorted({round(i * (n_model_layers - 1) / (k - 1)) for i in range(k)})
