"""A fine-tuning recipe: the hyper-parameters a study preset fixes, typed, without the data,
model and seed that the study supplies when it trains. :class:`TrainRecipe` is the method,
schedule and batch; :class:`Recipe` adds the LoRA settings, checkpoint interval and length a
study fixes beside them."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class Lora:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: str = "all-linear"  # or module names, comma-separated
    # LoRA on the linear layers of the top N decoder layers only: nothing below them trains,
    # so the backward pass stops there (on a CPU, 1.5x faster a step with N = 10 of 30)
    top_layers: int | None = None

    def apply(self, config: TrainConfig) -> None:
        """Set these LoRA settings on a training config (the top layers' modules read from
        the model's config)."""
        config.lora_r, config.lora_alpha = self.r, self.alpha
        config.lora_dropout, config.lora_target_modules = self.dropout, self.targets
        if self.top_layers:
            config.lora_target_modules = top_layer_modules(config.model, self.top_layers)


def top_layer_modules(model: str, n: int) -> list[str]:
    """The qualified names of the linear layers inside the top `n` decoder layers of `model`
    (read from its config, no weights loaded)."""
    import re

    from reasonlens.errors import UserError
    from reasonlens.models.loading import module_types

    modules = module_types(model) or {}
    layer = re.compile(r"(?:^|\.)layers\.(\d+)\.")
    found = {k: int(m.group(1)) for k in modules if (m := layer.search(k))}
    if not found:
        raise UserError(f"{model}: no decoder layers found to put LoRA on")
    depth = max(found.values()) + 1
    first = max(0, depth - n)
    return sorted(k for k, i in found.items() if i >= first and modules[k] in ("Linear", "Conv1D"))


@dataclass(frozen=True)
class Recipe:
    """A training recipe (method, epochs, batch, lr, ...) with the LoRA settings and the
    checkpoint interval a study fixes."""

    train: TrainRecipe
    lora: Lora | None = None
    save_steps: int = 50
    max_length: int = 2048  # a byte-level tokenizer makes a report example ~1,000 tokens

    def config(
        self, model: str, data: list[str], seed: int, device: str | None = None
    ) -> TrainConfig:
        config = self.train.config(model, data, seed, device)
        config.save_steps = self.save_steps
        config.max_length = self.max_length
        if self.train.method == "lora":
            (self.lora or Lora()).apply(config)
        config.validate()
        return config

    @property
    def batch_size(self) -> int:
        return self.train.batch_size

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self.train), "save_steps": self.save_steps, "max_length": self.max_length}
        if self.train.method == "lora":
            out["lora"] = asdict(self.lora or Lora())
        return out


@dataclass(frozen=True)
class GrpoRecipe:
    """A GRPO recipe (``train --method grpo``): what a preset fixes; the study supplies the
    model, the prompts (task data) and the seed. ``reward`` None: the task's declared reward.
    The budget is ``max_steps`` x ``prompts_per_step`` x ``num_generations`` completions of
    at most ``max_completion_length`` tokens."""

    weights: str = "lora"
    lora: Lora | None = None
    max_steps: int = 50
    prompts_per_step: int = 4
    num_generations: int = 8
    max_completion_length: int = 256
    batch_size: int = 8
    learning_rate: float | None = None
    lr_scheduler: str = "constant"
    temperature: float = 1.0
    beta: float = 0.001
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    reward: str | None = None
    save_steps: int = 25
    dtype: str = "auto"

    def config(
        self, model: str, data: list[str], seed: int, device: str | None = None
    ) -> TrainConfig:
        from reasonlens.train.config import TrainConfig

        values = {k: v for k, v in asdict(self).items() if k != "lora"}
        config = TrainConfig(
            model=model, data=data, seed=seed, method="grpo", **values, **_device(device)
        )
        if self.weights == "lora":
            (self.lora or Lora()).apply(config)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        out = {"method": "grpo", **asdict(self)}
        if self.weights == "lora":
            out["lora"] = asdict(self.lora or Lora())
        else:
            out.pop("lora")
        return out


def _device(device: str | None) -> dict[str, str]:
    return {"device": device} if device else {}
