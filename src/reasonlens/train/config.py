"""The training configuration: one dataclass, filled from a YAML file and then from flags.

Every field has a default except `data`. The resolved config (defaults filled in, data paths
made absolute) is what the run directory records, so re-running the same command finds the same
run and resumes it, and `config.yaml` from a run can be passed back with `--config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasonlens.errors import UserError, one_of, suggest
from reasonlens.models import DEFAULT_MODEL

METHODS = ("lora", "full")
SCHEDULES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: Learning rates used when none is given: the paper's for full fine-tuning, a usual one for LoRA.
DEFAULT_LEARNING_RATE = {"full": 5e-5, "lora": 2e-4}


@dataclass
class TrainConfig:
    """Everything that decides what a training run computes (and nothing that does not)."""

    data: list[str] = field(default_factory=list)
    model: str = DEFAULT_MODEL
    method: str = "full"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    learning_rate: float | None = None
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_length: int = 1024
    seed: int = 0
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int = 2
    gradient_checkpointing: bool = False
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and fill in what depends on others; UserError names the field."""
        if isinstance(self.data, str | Path):
            self.data = [self.data]
        if not isinstance(self.data, list) or not self.data:
            raise UserError("no training data: give one or more JSONL files (--data FILE)")
        self.data = [str(Path(p).expanduser().resolve()) for p in self.data]
        for path in self.data:
            if not Path(path).is_file():
                raise UserError(f"data file not found: {path}")
        model_path = Path(self.model).expanduser()
        if model_path.exists():
            self.model = str(model_path.resolve())
        if self.method not in METHODS:
            raise one_of("method", self.method, METHODS)
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATE[self.method]
        if self.lr_scheduler not in SCHEDULES:
            raise one_of("lr_scheduler", self.lr_scheduler, SCHEDULES)
        self.dtype = _DTYPE_ALIASES.get(self.dtype, self.dtype)
        if self.dtype not in DTYPES:
            raise one_of("dtype", self.dtype, DTYPES)
        if self.device != "auto" and self.device != "cpu" and self.device not in ("cuda", "cuda:0"):
            raise UserError(
                f"device {self.device!r}: use auto, cpu or cuda (pick a GPU with "
                "CUDA_VISIBLE_DEVICES=N; several GPUs with `accelerate launch`, "
                "see docs/training.md)"
            )
        if isinstance(self.lora_target_modules, str) and "," in self.lora_target_modules:
            self.lora_target_modules = [
                m.strip() for m in self.lora_target_modules.split(",") if m.strip()
            ]
        _positive(self, "lora_r", "lora_alpha", "learning_rate", "epochs", "batch_size")
        _positive(self, "gradient_accumulation", "max_length", "logging_steps", "save_steps")
        _positive(self, "save_total_limit")
        if self.max_steps is not None:
            _positive(self, "max_steps")
        if not 0 <= self.lora_dropout < 1:
            raise UserError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise UserError("weight_decay and max_grad_norm must not be negative")

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, as recorded in the run directory."""
        return dataclasses.asdict(self)


def _positive(config: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise UserError(f"{name} must be a positive number, got {value!r}")


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, keys checked against TrainConfig's fields."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read config {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path} must hold a mapping of option: value, not {type(loaded).__name__}")
    return check_keys(loaded, where=str(path))


def check_keys(values: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Normalise `lora-r` to `lora_r`; an unknown key is a UserError suggesting the nearest."""
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            raise UserError(
                f"{where}: unknown option {key!r}{suggest(name, FIELDS)}; "
                f"valid: {', '.join(FIELDS)}"
            )
        out[name] = value
    return out


def build_config(
    config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """A TrainConfig from a YAML file (optional) with `overrides` on top; None means not given."""
    values = read_config_file(config_file) if config_file else {}
    given = {k: v for k, v in check_keys(overrides or {}, where="options").items() if v is not None}
    values.update(given)
    for name, value in values.items():
        values[name] = _check_type(name, value)
    try:
        return TrainConfig(**values)
    except TypeError as err:  # a value of the wrong shape that validation could not read
        raise UserError(f"bad config: {err}") from None


def _check_type(name: str, value: Any) -> Any:
    """Catch `batch_size: eight` here, with the option's name, not deep inside training.

    YAML reads `5e-5` (no dot) as a string; a float option takes it as the number it means."""
    kind = _TYPES[name]
    if kind.startswith("float") and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "int | None": value is None or (isinstance(value, int) and not isinstance(value, bool)),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "float | None": value is None
        or (isinstance(value, int | float) and not isinstance(value, bool)),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "list[str]": isinstance(value, str | list),
        "list[str] | str": isinstance(value, str | list),
    }[kind]
    if not ok:
        raise UserError(f"option {name!r} expects {kind}, got {value!r}")
    return value
