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
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from reasonlens.errors import UserError, suggest
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
    """Map a model name to something `from_pretrained` can read, converting GGUF once.

    Everything a user can get wrong fails here, as a UserError, before anything is written:
    an empty or unknown name, a GGUF file that is empty or corrupt, a directory that is not a
    model or whose weights are truncated, a run directory whose run.json is unreadable."""
    if not name.strip():
        raise UserError(f"no model given: use {_MODEL_KINDS}")
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
    if name.endswith(".gguf") and not path.is_dir():
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
            what = (
                "a directory, not a .gguf file, and not a model directory either"
                if name.endswith(".gguf")
                else "a directory but not a model"
            )
            raise UserError(
                f"{name} is {what}: it has no config.json "
                "(expected a Hugging Face checkpoint saved with save_pretrained)"
            )
        check_checkpoint(path, name)
        return ResolvedSource("directory", str(path))
    if _HUB_ID.match(name) and not path.exists():
        return ResolvedSource("hub", name)
    if path.exists():
        raise UserError(f"{name} is a file, not a model: use {_MODEL_KINDS}")
    raise UserError(f"unknown model {name!r}{suggest(name, BUILTIN_MODELS)}; use {_MODEL_KINDS}")


_MODEL_KINDS = (
    f"a built-in ({', '.join(BUILTIN_MODELS)}), a Hugging Face id (org/name), "
    "a model directory, a .gguf file or a training run directory"
)


def check_checkpoint(path: Path, name: str) -> None:
    """Refuse a model directory whose config.json is unreadable or names an architecture
    transformers does not know, or whose safetensors files are truncated or not safetensors.

    Reads the config and each weight file's header only (checking that it covers the file),
    so it costs milliseconds, and a broken checkpoint fails before a command writes anything."""
    from safetensors import safe_open
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"could not load model {name!r}: {_first_line(err)}") from None
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            reason = _first_line(err)
            raise UserError(
                f"model {name!r}: {file.name} is not a readable safetensors file ({reason}): "
                "it is truncated or corrupt; save the checkpoint again"
            ) from None


def _run_model(path: Path) -> ResolvedSource:
    """A run directory loads the model it says it produces (run.json `produces.model`)."""
    record = read_run(path)
    if record is None:
        raise UserError(
            f"{path / RUN_FILE} is corrupt (not a JSON run record): {path} cannot be loaded "
            "as a model; re-run the command that made it, or pass its model directory"
        )
    produces = record.get("produces")
    kind = record.get("kind")
    produced = produces.get("model") if isinstance(produces, dict) else None
    if not isinstance(produced, str) or not produced:
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
    check_checkpoint(model_dir, str(path))
    return ResolvedSource("run", str(model_dir))


def _first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message (its type when it has none)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


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
        """Where inputs go: the device of the parameters, or of the embedding for a model
        dispatched across devices and disk (see models.sharding)."""
        from reasonlens.models.sharding import input_device, is_sharded

        if is_sharded(self.hf):
            return input_device(self.hf, self.arch.embed)
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
    device_map: str | dict | None = None,
    max_memory: str | dict | None = None,
    offload_folder: str | Path | None = None,
) -> LoadedModel:
    """Load a model for analysis: eval mode, sensible device and dtype, site map checked.

    With `device_map` ("auto" or a map of module -> GPU index, "cpu" or "disk"; see
    :mod:`reasonlens.models.sharding`) the model is split across devices, CPU memory and
    disk (`offload_folder`) by accelerate, within `max_memory` ("0=20GiB,cpu=64GiB")."""
    source = resolve_source(name)
    dev, kwargs = _placement(name, source, device, dtype, device_map, max_memory, offload_folder)
    sharded = "device_map" in kwargs
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with _quiet_loading():
            hf = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except OSError as err:
        offline = source.kind == "hub" and os.environ.get("HF_HUB_OFFLINE") == "1"
        raise UserError(
            f"could not load model {name!r}: {_first_line(err)}"
            + (" (HF_HUB_OFFLINE=1: only locally cached hub models load)" if offline else "")
            + f"; built-in models: {', '.join(BUILTIN_MODELS)}"
        ) from None
    except (ValueError, SafetensorError) as err:
        raise UserError(f"could not load model {name!r}: {_first_line(err)}") from None
    arch = architecture_for(hf)
    if not sharded:  # a dispatched model stays where its map put it
        hf.to(dev)
    hf.eval()
    tokenizer = _tokenizer(source, name)
    return LoadedModel(name=name, hf=hf, tokenizer=tokenizer, arch=arch, source=source.path)


def check_placement(
    name: str,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | dict | None = None,
    max_memory: str | dict | None = None,
    offload_folder: str | Path | None = None,
) -> dict | None:
    """Check where `name` would load (device, dtype, a device map within --max-memory) without
    reading its weights, so a command refuses a bad placement before writing anything. The
    explicit device map a sharded load would use, or None when it is not sharded."""
    source = resolve_source(name)
    _dev, kwargs = _placement(name, source, device, dtype, device_map, max_memory, offload_folder)
    return kwargs.get("device_map")


def _placement(name, source, device, dtype, device_map, max_memory, offload_folder):
    """The device and the from_pretrained arguments that place the model (dtype, device map)."""
    from reasonlens.models.sharding import parse_device_map, parse_max_memory, plan_device_map

    sharded = parse_device_map(device_map)
    memory = parse_max_memory(max_memory)
    if memory is not None and sharded is None:
        raise UserError("--max-memory applies to a sharded load: give --device-map auto too")
    if offload_folder is not None and sharded is None:
        raise UserError("--offload-folder applies to a sharded load: give --device-map too")
    if sharded is None:
        dev = pick_device(device)
        return dev, {"dtype": pick_dtype(dtype, dev)}
    if device not in (None, "auto", "cpu"):
        raise UserError("give either --device or --device-map (the map places every module)")
    # bf16 by default when there are GPUs to place the model on, as for an unsharded load
    dev = torch.device("cuda" if torch.cuda.is_available() and device != "cpu" else "cpu")
    kwargs: dict = {"dtype": pick_dtype(dtype, dev)}
    folder = str(offload_folder) if offload_folder is not None else None
    kwargs["device_map"] = plan_device_map(
        source.path, kwargs["dtype"], sharded, memory, folder, name
    )
    if folder is not None:
        kwargs["offload_folder"] = folder
    return dev, kwargs


def load_random_model(
    name: str,
    seed: int = 0,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """A model of the same architecture and shape as `name` (its config and tokenizer), with
    every weight drawn afresh by the architecture's own initialisation from `seed`: a control
    that reads the same tokens through the same computation, having learnt nothing. Seeded
    in a forked RNG, so the caller's random state is left as it was."""
    from transformers import AutoConfig

    source = resolve_source(name)
    dev = pick_device(device)
    try:
        config = AutoConfig.from_pretrained(source.path)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"could not read the config of {name!r}: {_first_line(err)}") from None
    if hasattr(config, "quantization_config"):  # a GGUF conversion's: nothing to dequantise
        del config.quantization_config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf = AutoModelForCausalLM.from_config(config, dtype=pick_dtype(dtype, dev))
    arch = architecture_for(hf)
    hf.to(dev).eval()
    tokenizer = _tokenizer(source, name)
    return LoadedModel(
        name=f"{name} (random weights, seed {seed})",
        hf=hf,
        tokenizer=tokenizer,
        arch=arch,
        source=f"random:{seed}:{source.path}",
    )


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


def module_types(name: str) -> dict[str, str] | None:
    """Every module of the model `name` (qualified name -> class name), built from its config
    on the meta device, so no weights are read; None when its config cannot be read here
    (e.g. a hub id offline: loading it will say why)."""
    from transformers import AutoConfig

    source = resolve_source(name)
    try:
        config = AutoConfig.from_pretrained(source.path)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {key: type(module).__name__ for key, module in skeleton.named_modules() if key}


def layer_count(name: str) -> int | None:
    """The number of decoder layers of the model `name`, from its config alone (no weights);
    None when the config cannot be read here."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_source(name).path)
        return int(config.get_text_config().num_hidden_layers)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def check_model(name: str) -> ResolvedSource:
    """Everything about the model `name` that can be checked without loading its weights:
    :func:`resolve_source`, its tokenizer, and for a hub id that its config can be read (with
    HF_HUB_OFFLINE=1: that it is in the local cache). A command that runs for a while calls
    this before writing anything, so a model that cannot load is refused at once, not when a
    later stage reaches it."""
    source = resolve_source(name)
    if source.kind == "hub":
        _check_hub(name)
    _tokenizer(source, name)
    return source


def _check_hub(name: str) -> None:
    from transformers import AutoConfig

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(name, local_files_only=True)
        except Exception:  # noqa: BLE001 - any failure here means: not cached
            raise UserError(
                f"model {name!r} is not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 "
                f"forbids downloading it: download it first (huggingface-cli download {name}), "
                f"or use a built-in ({', '.join(BUILTIN_MODELS)}) or a model directory"
            ) from None
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"could not load model {name!r}: {_first_line(err)}") from None


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer alone (fast: no weights are read once a built-in is converted)."""
    return _tokenizer(resolve_source(name), name)


def _tokenizer(source: ResolvedSource, name: str) -> PreTrainedTokenizerBase:
    try:
        tok = AutoTokenizer.from_pretrained(source.path)
    except Exception as err:  # noqa: BLE001 - tokenizers raises bare Exceptions on a bad file
        raise UserError(f"could not load the tokenizer of {name!r}: {_first_line(err)}") from None
    if source.builtin_name:
        spec = BUILTIN_MODELS[source.builtin_name]
        if spec.chat_template and not tok.chat_template:
            tok.chat_template = spec.chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
