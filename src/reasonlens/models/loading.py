"""Load any supported model by one name: a built-in, a hub id, a local directory or a .gguf file."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from reasonlens.errors import UserError
from reasonlens.models.architectures import Architecture, architecture_for
from reasonlens.models.gguf import convert_gguf, converted_dir, gguf_source_key, is_current
from reasonlens.models.registry import BUILTIN_MODELS, builtin
from reasonlens.paths import cache_dir
from reasonlens.runs import RUN_FILE, read_run

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass
class ResolvedSource:
    """Where a model name points, after built-ins and GGUF files are turned into a directory."""

    kind: str  # "builtin" | "gguf" | "run" | "directory" | "hub"
    path: str  # what from_pretrained receives
    builtin_name: str | None = None


def resolve_source(name: str) -> ResolvedSource:
    """Map a model name to something `from_pretrained` can read, converting GGUF once."""
    if name in BUILTIN_MODELS:
        spec = builtin(name)
        target = converted_dir(cache_dir(), name)
        if not is_current(target, spec.source_key()):
            try:
                gguf = spec.locate()
            except ModuleNotFoundError as err:
                raise UserError(
                    f"model {name!r} needs the package {err.name!r}: {spec.install_hint}"
                ) from None
            _require_gguf_package()
            convert_gguf(gguf, target, spec.source_key(), spec.chat_template)
        return ResolvedSource("builtin", str(target), builtin_name=name)

    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file not found: {name}")
        _require_gguf_package()
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        target = converted_dir(cache_dir(), f"gguf-{path.stem}-{digest}")
        key = gguf_source_key(path)
        if not is_current(target, key):
            convert_gguf(path, target, key)
        return ResolvedSource("gguf", str(target))
    if path.is_dir() and (path / RUN_FILE).is_file():
        return _run_model(path)
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            raise UserError(
                f"{name} is a LoRA adapter, not a full model: merge it into its base with "
                "`reasonlens train-merge` (a training run's directory loads directly)"
            )
        if not (path / "config.json").is_file():
            raise UserError(
                f"{name} is a directory but not a model: it has no config.json "
                "(expected a Hugging Face checkpoint saved with save_pretrained)"
            )
        return ResolvedSource("directory", str(path))
    if _HUB_ID.match(name) and not path.exists():
        return ResolvedSource("hub", name)
    raise UserError(
        f"unknown model {name!r}; use a built-in ({', '.join(BUILTIN_MODELS)}), "
        "a Hugging Face id (org/name), a model directory, or a .gguf file"
    )


def _run_model(path: Path) -> ResolvedSource:
    """A run directory loads the model it says it produces (run.json `produces.model`)."""
    record = read_run(path) or {}
    kind, produced = record.get("kind"), record.get("produces", {}).get("model")
    if produced is None:
        raise UserError(
            f"{path} is a {kind!r} run, which produces no model: a training run's directory "
            "(or a model directory) can be loaded as a model"
        )
    model_dir = path / produced
    if not (model_dir / "config.json").is_file():
        raise UserError(
            f"{path} is a {kind} run that has not finished (no {produced}/ yet); re-run the "
            "same command to resume it"
        )
    return ResolvedSource("run", str(model_dir))


def _require_gguf_package() -> None:
    try:
        import gguf  # noqa: F401
    except ModuleNotFoundError:
        raise UserError("reading GGUF files needs the 'gguf' package: pip install gguf") from None


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but no CUDA GPU is available; use cpu")
    return dev


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on a GPU, fp32 on the CPU (CPU bf16 matmuls are slow and less exact)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


@dataclass
class LoadedModel:
    """A Hugging Face model with its tokenizer and the site map of its architecture."""

    name: str
    hf: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    arch: Architecture
    source: str = ""

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.hf.get_submodule(self.arch.layers)

    @property
    def d_model(self) -> int:
        return self.hf.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.hf.get_submodule(self.arch.unembed).weight.shape[0]

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def unembed(self) -> torch.nn.Module:
        return self.hf.get_submodule(self.arch.unembed)

    @property
    def final_norm(self) -> torch.nn.Module:
        return self.hf.get_submodule(self.arch.final_norm)

    @property
    def base(self) -> torch.nn.Module:
        return self.hf.get_submodule(self.arch.base)

    def info(self) -> dict:
        cfg = self.hf.config
        return {
            "name": self.name,
            "architecture": self.arch.name,
            "model_type": cfg.model_type,
            "class": type(self.hf).__name__,
            "layers": self.n_layers,
            "d_model": self.d_model,
            "heads": getattr(cfg, "num_attention_heads", None),
            "kv_heads": getattr(cfg, "num_key_value_heads", None),
            "vocab_size": self.vocab_size,
            "parameters": sum(p.numel() for p in self.hf.parameters()),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "attn_implementation": self.hf.config._attn_implementation,
            "source": self.source,
        }


def load_model(
    name: str,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a model for analysis: eval mode, sensible device and dtype, site map checked."""
    source = resolve_source(name)
    dev = pick_device(device)
    kwargs: dict = {"dtype": pick_dtype(dtype, dev)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with _quiet_loading():
            hf = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise UserError(
            f"could not load model {name!r}: {str(err).splitlines()[0]}"
            + (" (HF_HUB_OFFLINE=1: only locally cached hub models load)" if offline else "")
            + f"; built-in models: {', '.join(BUILTIN_MODELS)}"
        ) from None
    except ValueError as err:
        raise UserError(f"could not load model {name!r}: {str(err).splitlines()[0]}") from None
    arch = architecture_for(hf)
    hf.to(dev).eval()
    tokenizer = _tokenizer(source, name)
    return LoadedModel(name=name, hf=hf, tokenizer=tokenizer, arch=arch, source=source.path)


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor progress bar: a cached load takes a fraction of a second."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer alone (fast: no weights are read once a built-in is converted)."""
    return _tokenizer(resolve_source(name), name)


def _tokenizer(source: ResolvedSource, name: str) -> PreTrainedTokenizerBase:
    try:
        tok = AutoTokenizer.from_pretrained(source.path)
    except (OSError, ValueError) as err:
        raise UserError(
            f"could not load the tokenizer of {name!r}: {str(err).splitlines()[0]}"
        ) from None
    if source.builtin_name:
        spec = BUILTIN_MODELS[source.builtin_name]
        if spec.chat_template and not tok.chat_template:
            tok.chat_template = spec.chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
