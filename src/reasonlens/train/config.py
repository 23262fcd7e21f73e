"""The training configuration: one dataclass, filled from a YAML file and then from flags.

Every field has a default except `data`. The resolved config (defaults filled in, data paths
made absolute) is what the run directory records, so re-running the same command finds the same
run and resumes it, and `config.yaml` from a run can be passed back with `--config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasonlens.errors import UserError, one_of, suggest
from reasonlens.models import DEFAULT_MODEL

METHODS = ("lora", "full", "grpo")
#: What GRPO trains: a LoRA adapter (merged into model/ at the end) or every weight.
GRPO_WEIGHTS = ("lora", "full")
GRPO_LOSSES = ("dapo", "grpo", "dr_grpo", "bnpo")
GRPO_SCALES = ("group", "batch", "none")
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
#: GRPO's: TRL's default for every weight; LoRA moves less per step, so ten times more.
DEFAULT_GRPO_LEARNING_RATE = {"full": 1e-6, "lora": 1e-5}


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
    # --- GRPO only (--method grpo); an SFT run records none of these ---
    task: str | None = None  # None: the task that recognises the data's first record
    reward: str | None = None  # a task's declared reward (None: the task's own) or module:function
    weights: str = "lora"  # what GRPO trains: lora or full
    prompts_per_step: int = 4  # prompts per optimizer step (each sampled num_generations times)
    num_generations: int = 8  # the group: completions per prompt
    max_completion_length: int = 256  # tokens sampled per completion
    temperature: float = 1.0
    beta: float = 0.001  # KL coefficient (0: no reference model, so no KL is logged)
    epsilon: float = 0.2  # PPO clipping
    loss_type: str = "dapo"
    scale_rewards: str = "group"

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
            if Path(path).is_dir():
                raise UserError(f"data file {path} is a directory: give its JSONL files")
            if not Path(path).is_file():
                raise UserError(f"data file not found: {path}")
        model_path = Path(self.model).expanduser()
        if model_path.exists():
            self.model = str(model_path.resolve())
        if self.method not in METHODS:
            raise one_of("method", self.method, METHODS)
        if self.method == "grpo":
            self._validate_grpo()
        if self.learning_rate is None:
            if self.method == "grpo":
                self.learning_rate = DEFAULT_GRPO_LEARNING_RATE[self.weights]
            else:
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
        for name in FLOAT_FIELDS:  # NaN passes every comparison below; infinity most of them
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{name} must be a finite number, got {value}")
        if isinstance(self.lora_target_modules, str) and self.lora_target_modules != "all-linear":
            # module names: one is a list of one (peft would read a lone string as a regex)
            self.lora_target_modules = [
                m.strip() for m in self.lora_target_modules.split(",") if m.strip()
            ]
        targets = self.lora_target_modules
        if isinstance(targets, str):
            targets = [targets]
        if not targets or not all(isinstance(m, str) and m.strip() for m in targets):
            raise UserError(
                "lora_target_modules must be all-linear or module names, comma-separated "
                f"(e.g. q_proj,v_proj), got {self.lora_target_modules!r}"
            )
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

    def _validate_grpo(self) -> None:
        if self.weights not in GRPO_WEIGHTS:
            raise one_of("weights", self.weights, GRPO_WEIGHTS)
        if self.loss_type not in GRPO_LOSSES:
            raise one_of("loss_type", self.loss_type, GRPO_LOSSES)
        if self.scale_rewards not in GRPO_SCALES:
            raise one_of("scale_rewards", self.scale_rewards, GRPO_SCALES)
        for name in ("num_generations", "max_completion_length", "prompts_per_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"{name} must be a whole number, got {value!r}")
        if self.num_generations < 2:
            raise UserError(
                f"num_generations (the group size) must be at least 2, got {self.num_generations}: "
                "GRPO learns from the differences between completions of one prompt"
            )
        if self.max_completion_length < 1:
            raise UserError(
                f"max_completion_length must be at least 1 token, got {self.max_completion_length}"
            )
        if self.prompts_per_step < 1:
            raise UserError(f"prompts_per_step must be at least 1, got {self.prompts_per_step}")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise UserError(f"temperature must be above 0 (GRPO samples), got {self.temperature!r}")
        if not (isinstance(self.beta, int | float) and self.beta >= 0):
            raise UserError(f"beta (the KL coefficient) must be 0 or more, got {self.beta!r}")
        if not (isinstance(self.epsilon, int | float) and self.epsilon > 0):
            raise UserError(f"epsilon (the clipping range) must be above 0, got {self.epsilon!r}")
        per_step = self.prompts_per_step * self.num_generations
        if isinstance(self.batch_size, int) and self.batch_size > 0 and per_step % self.batch_size:
            raise UserError(
                f"batch_size {self.batch_size} must divide the completions of a step "
                f"({self.prompts_per_step} prompts x {self.num_generations} = {per_step})"
            )
        if self.task == "maze":
            self.task = "backtracking"  # the maze search task's registered name

    @property
    def uses_lora(self) -> bool:
        return self.method == "lora" or (self.method == "grpo" and self.weights == "lora")

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, as recorded in the run directory: an SFT run's has no GRPO
        option (so runs made before GRPO existed resume), a GRPO run's no SFT-only one."""
        out = dataclasses.asdict(self)
        drop = SFT_ONLY_FIELDS if self.method == "grpo" else GRPO_FIELDS
        return {k: v for k, v in out.items() if k not in drop}


def _positive(config: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise UserError(f"{name} must be a positive number, got {value!r}")


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
_TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
FLOAT_FIELDS = tuple(name for name, kind in _TYPES.items() if kind.startswith("float"))
#: Options that only LoRA reads: given with --method full they would be ignored.
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
#: Options only GRPO reads, and options only supervised fine-tuning reads.
GRPO_FIELDS = (
    "task",
    "reward",
    "weights",
    "prompts_per_step",
    "num_generations",
    "max_completion_length",
    "temperature",
    "beta",
    "epsilon",
    "loss_type",
    "scale_rewards",
)
SFT_ONLY_FIELDS = ("gradient_accumulation", "max_length")
_SFT_ONLY_WHY = {
    "gradient_accumulation": "GRPO accumulates the completions of one step "
    "(--prompts-per-step x --num-generations) in micro-batches of --batch-size",
    "max_length": "GRPO samples its completions: their length is --max-completion-length",
}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, keys checked against TrainConfig's fields."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read config {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise UserError(f"config {path} is not a UTF-8 text file") from None
    except yaml.YAMLError as err:
        raise UserError(_yaml_error(path, err)) from None
    except RecursionError:
        raise UserError(f"config {path} is nested too deeply to be a config file") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path} must hold a mapping of option: value, not {type(loaded).__name__}")
    return check_keys(loaded, where=str(path))


def _yaml_error(path: Path, err: yaml.YAMLError) -> str:
    """``file:line: not valid YAML (reason)`` on one line."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start is not None and start is not mark and start.line != mark.line:
        context += f" that starts on line {start.line + 1}"
    parts = [context, getattr(err, "problem", None)]
    reason = "; ".join(p for p in parts if p) or " ".join(str(err).split()) or "bad syntax"
    return f"{where}: not valid YAML ({reason}); expected one 'option: value' per line"


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


#: Module classes LoRA can adapt (peft's LoRA layers).
_LORA_LAYERS = ("Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d", "Conv1D")


def check_lora_targets(config: TrainConfig) -> None:
    """Refuse `lora_target_modules` that name no layer of the model, before a run starts.

    peft matches a name against the end of each module's qualified name (`q_proj` matches
    `model.layers.0.self_attn.q_proj`); this applies the same rule to the model's skeleton,
    built without weights, and asks that each name reach a layer LoRA can adapt."""
    from reasonlens.models.loading import module_types

    targets = config.lora_target_modules
    if not config.uses_lora or targets == "all-linear":
        return
    modules = module_types(config.model)
    if modules is None:
        return
    layers = sorted({k.rsplit(".", 1)[-1] for k, kind in modules.items() if kind in _LORA_LAYERS})
    hint = f"this model's layers: all-linear, {', '.join(layers)}"
    for target in [targets] if isinstance(targets, str) else targets:
        found = [kind for k, kind in modules.items() if k == target or k.endswith("." + target)]
        if not found:
            raise UserError(
                f"unknown LoRA target module {target!r} for {config.model}"
                f"{suggest(target, layers)}; {hint}"
            )
        if not any(kind in _LORA_LAYERS for kind in found):
            raise UserError(
                f"LoRA target module {target!r} is a {found[0]}, not a layer LoRA can adapt "
                f"(linear, embedding or convolution); {hint}"
            )


def build_config(
    config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """A TrainConfig from a YAML file (optional) with `overrides` on top; None means not given."""
    values = read_config_file(config_file) if config_file else {}
    given = {k: v for k, v in check_keys(overrides or {}, where="options").items() if v is not None}
    values.update(given)
    for name, value in values.items():
        values[name] = _check_type(name, value)
    method = values.get("method", TrainConfig.method)
    _check_method_options(method, values, given)
    lora_flags = [name for name in LORA_FIELDS if name in given]
    if method == "full" and lora_flags:
        flags = ", ".join("--" + name.replace("_", "-") for name in lora_flags)
        several = len(lora_flags) > 1
        raise UserError(
            f"{flags} only {'apply' if several else 'applies'} to --method lora, but the "
            f"method is full: drop {'them' if several else 'it'} or pass --method lora"
        )
    try:
        return TrainConfig(**values)
    except TypeError as err:  # a value of the wrong shape that validation could not read
        raise UserError(f"bad config: {err}") from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_method_options(method: str, values: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse options the method would ignore: SFT-only ones with grpo, GRPO ones with SFT,
    LoRA ones with GRPO on every weight."""
    if method == "grpo":
        sft = [name for name in SFT_ONLY_FIELDS if name in values]
        if sft:
            raise UserError(
                f"{_flag(sft[0])} is an SFT option (--method lora|full), not one of --method "
                f"grpo: {_SFT_ONLY_WHY[sft[0]]}"
            )
        lora = [name for name in LORA_FIELDS if name in given]
        if lora and values.get("weights", TrainConfig.weights) == "full":
            raise UserError(
                f"{_flag(lora[0])} applies to LoRA, but GRPO trains every weight here "
                "(--weights full): drop it or pass --weights lora"
            )
        return
    grpo = [name for name in GRPO_FIELDS if name in values]
    if grpo and method in METHODS:
        raise UserError(
            f"{_flag(grpo[0])} is a GRPO option, but the method is {method}: pass "
            "--method grpo or drop it"
        )


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
        "str | None": value is None or isinstance(value, str),
        "list[str]": isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
        "list[str] | str": isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value)),
    }[kind]
    if not ok:
        raise UserError(f"option {name!r} expects {kind}, got {value!r}")
    return value
