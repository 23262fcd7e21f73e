"""A fine-tuning recipe: the hyper-parameters a study preset fixes, typed, without the data,
model and seed that the study supplies when it trains."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reasonlens.train.config import TrainConfig


@dataclass(frozen=True)
class TrainRecipe:
    method: str = "full"
    epochs: float = 3.0
    batch_size: int = 8
    gradient_accumulation: int = 1
    learning_rate: float | None = None  # None: the method's default
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    dtype: str = "auto"  # "auto": bf16 on a GPU, fp32 on a CPU; CPU presets may ask for bf16

    def config(
        self, model: str, data: list[str], seed: int, device: str | None = None
    ) -> TrainConfig:
        """The full training config for this recipe (validated like any other)."""
        from reasonlens.train.config import TrainConfig

        extra = {"device": device} if device else {}
        return TrainConfig(model=model, data=data, seed=seed, **dataclasses.asdict(self), **extra)
