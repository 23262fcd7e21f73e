"""Sharded models: one model split across devices, CPU memory and disk (accelerate's dispatch).

    load_model(name, device_map="auto", max_memory="0=70GiB,1=70GiB,cpu=100GiB")
    load_model(name, device_map='{"model.embed_tokens": 0, "model.layers.0": 0, ..., "lm_head": 1}')
    load_model(name, device_map="auto", max_memory="cpu=2GiB", offload_folder="offload/")

A device map is "auto" (accelerate fills the devices in order, within `max_memory`) or an
explicit map from module names to devices: a GPU index (0, "cuda:1"), "cpu", or "disk"
(weights memory-mapped from `offload_folder`, read in as each layer runs). Everything a user
can get wrong is refused before any weight is read: a device that does not exist here, a
`max_memory` naming such a device or not a size, a map that needs disk with no
`offload_folder`, and `max_memory` too small to hold the model. The map is always made explicit
here (for "auto" from the model's skeleton on the meta device), so the layout that ran is
known and recorded (`hf.hf_device_map`).

Forward hooks see every site as an unsharded model does: accelerate moves each layer's inputs
to its device (and its offloaded weights in) inside the module's forward, so captures and
interventions give the same numbers (tests/test_sharded.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from reasonlens.errors import UserError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*$", re.IGNORECASE)


def parse_device_map(text: str | dict | None) -> str | dict[str, int | str] | None:
    """`--device-map`: None/"" (not sharded), "auto", JSON text, or a .json file of a map."""
    if text is None or isinstance(text, dict):
        return _check_map(text) if isinstance(text, dict) else None
    text = text.strip()
    if not text:
        return None
    if text in ("auto", "balanced", "balanced_low_0", "sequential"):
        return text
    if not text.startswith("{") and text.endswith(".json"):
        try:
            text = Path(text).expanduser().read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"--device-map file {text}: {err.strerror or err}") from None
    try:
        value = json.loads(text)
    except ValueError:
        raise UserError(
            "--device-map must be auto, a JSON object of module -> device "
            '(e.g. \'{"model.layers.0": 0, "lm_head": "cpu"}\') or a .json file of one'
        ) from None
    if not isinstance(value, dict) or not value:
        raise UserError("--device-map JSON must be a non-empty object of module -> device")
    return _check_map(value)


def _check_map(mapping: dict) -> dict[str, int | str]:
    return {
        str(module): check_device(device, f"module {module!r}")
        for module, device in mapping.items()
    }


def check_device(device: object, what: str) -> int | str:
    """A device of a map or of --max-memory, normalised (GPU index as int), that exists here."""
    if isinstance(device, bool) or not isinstance(device, int | str):
        raise UserError(f"{what}: device {device!r} is not a device (a GPU index, cpu or disk)")
    name = device.strip().lower() if isinstance(device, str) else device
    if isinstance(name, str) and name in ("cpu", "disk"):
        return name
    if isinstance(name, str) and name.removeprefix("cuda:").isdigit():
        name = int(name.removeprefix("cuda:"))
    if isinstance(name, str) and name == "cuda":
        name = 0
    if not isinstance(name, int) or name < 0:
        raise UserError(
            f"{what}: unknown device {device!r}; use a GPU index (0, cuda:1), cpu or disk"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name >= count:
        have = f"GPUs 0-{count - 1}" if count else "no GPU"
        raise UserError(f"{what}: device {device!r} does not exist here ({have}; cpu and disk)")
    return name


def parse_max_memory(text: str | dict | None) -> dict[int | str, int] | None:
    """`--max-memory`: "0=20GiB,1=20GiB,cpu=64GiB" or a JSON object; sizes in bytes out."""
    if text is None or text == "" or text == {}:
        return None
    if isinstance(text, str):
        text = text.strip()
        if text.startswith("{"):
            try:
                pairs = json.loads(text)
            except ValueError:
                raise UserError("--max-memory JSON is not valid JSON") from None
            if not isinstance(pairs, dict):
                raise UserError("--max-memory JSON must be an object of device -> size")
        else:
            pairs = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                key, sep, size = part.partition("=")
                if not sep:
                    raise UserError(
                        f"--max-memory item {part!r} is not DEVICE=SIZE "
                        "(e.g. 0=20GiB,1=20GiB,cpu=64GiB)"
                    )
                pairs[key.strip()] = size.strip()
    else:
        pairs = dict(text)
    out: dict[int | str, int] = {}
    for key, size in pairs.items():
        device = check_device(key, "--max-memory")
        if device == "disk":
            raise UserError("--max-memory: disk has no limit; give --offload-folder for disk")
        out[device] = _bytes(size)
    return out


def _bytes(size: object) -> int:
    if isinstance(size, int | float) and not isinstance(size, bool) and size >= 0:
        return int(size)
    match = _SIZE.match(str(size))
    unit = match[2].upper() if match else ""
    if not match or (unit and not unit.endswith("B")) or unit not in _UNITS:
        raise UserError(f"--max-memory: {size!r} is not a size (e.g. 20GiB, 512MB, 1000000)")
    return int(float(match[1]) * _UNITS[unit])


def plan_device_map(
    path: str,
    dtype: torch.dtype,
    device_map: str | dict[str, int | str],
    max_memory: dict[int | str, int] | None,
    offload_folder: str | None,
    name: str,
) -> dict[str, int | str]:
    """The explicit map a sharded load uses; refuses a plan that cannot hold the model."""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes, get_balanced_memory, infer_auto_device_map
    from transformers import AutoConfig, AutoModelForCausalLM

    if isinstance(device_map, dict):
        plan = dict(device_map)
    else:
        config = AutoConfig.from_pretrained(path)
        for key in ("quantization_config",):
            if hasattr(config, key):
                delattr(config, key)
        with init_empty_weights():
            skeleton = AutoModelForCausalLM.from_config(config, dtype=dtype)
        skeleton.tie_weights()
        no_split = list(getattr(skeleton, "_no_split_modules", None) or [])
        memory = max_memory
        if memory is None:
            memory = _available_memory()
        if device_map.startswith("balanced") and sum(isinstance(k, int) for k in memory) > 1:
            memory = get_balanced_memory(
                skeleton, max_memory=memory, no_split_module_classes=no_split, dtype=dtype,
                low_zero=device_map == "balanced_low_0",
            )  # fmt: skip
        plan = dict(
            infer_auto_device_map(
                skeleton, max_memory=memory, no_split_module_classes=no_split, dtype=dtype
            )
        )
        if "disk" in plan.values() and offload_folder is None:
            total = compute_module_sizes(skeleton, dtype=dtype)[""]
            given = sum(memory.values())
            raise UserError(
                f"--max-memory ({_gib(given)} in all) cannot hold model {name!r} "
                f"({_gib(total)} in {str(dtype).removeprefix('torch.')}): raise it, or give "
                "--offload-folder DIR to offload the rest to disk"
            )
    if "disk" in plan.values() and offload_folder is None:
        raise UserError("--device-map puts modules on disk: give --offload-folder DIR for them")
    return plan


def _available_memory() -> dict[int | str, int]:
    from accelerate.utils import get_max_memory

    return dict(get_max_memory())


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.2f} MiB"


def is_sharded(hf: torch.nn.Module) -> bool:
    """Whether `hf` was dispatched by accelerate (a device map with more than one place)."""
    device_map = getattr(hf, "hf_device_map", None)
    return bool(device_map) and (len(set(device_map.values())) > 1 or "disk" in device_map.values())


def input_device(hf: torch.nn.Module, embed: str) -> torch.device:
    """Where a dispatched model's inputs go: the device of its embedding (the CPU when the
    embedding is offloaded to disk: accelerate computes offloaded modules on the CPU here,
    or on the first GPU when there is one in the map)."""
    device_map = hf.hf_device_map
    place = None
    for module, device in device_map.items():
        if module == "" or embed == module or embed.startswith(module + "."):
            place = device
    if place is None:
        place = next(iter(device_map.values()))
    if place in ("cpu", "disk"):
        gpus = [d for d in device_map.values() if isinstance(d, int)]
        return torch.device("cuda", min(gpus)) if place == "disk" and gpus else torch.device("cpu")
    return torch.device("cuda", place) if isinstance(place, int) else torch.device(place)
