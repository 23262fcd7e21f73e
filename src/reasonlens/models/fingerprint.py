"""Which weights a model has, cheaply: a fingerprint that changes when the weights change.

A run that resumes work done with a model (a trace, an evaluation, a study's stages) must know
that the model at the same path still has the same weights: a model retrained in place keeps
its name and its path. Hashing every byte of a 500 MB checkpoint takes seconds; this reads a
few hundred kilobytes instead:

* every weights file's size and modification time (a rewrite changes them);
* a safetensors file's header (names, dtypes, shapes, offsets) and, of every tensor, its first,
  middle and last bytes, so a retrained tensor changes the fingerprint even where the file's
  size and layout stay the same (a LoRA merge rewrites only some matrices, in the middle of the
  file);
* of any other weights file (.bin, .pt, .gguf), its first and last MiB and bytes sampled
  evenly between them;
* config.json, whole.

A hub id is fingerprinted through its local snapshot (the files a load reads); with none yet,
by name and revision. A model that exists only in memory (no files) is fingerprinted from its
parameters. Standard library only (no torch) except for that last case.

The module also checks that a safetensors file is whole (:func:`safetensors_problem`): its
header parses and the file is exactly as long as the header says.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

#: Files whose bytes are a model's weights.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
#: Small files that decide what the weights compute; hashed whole.
CONFIG_FILES = ("config.json",)
SAMPLE = 256  # bytes read at each sampled place of a tensor
EDGE = 1 << 20  # first and last MiB of a file that is not safetensors
SPREAD = 32  # samples between them
MAX_HEADER = 100 << 20  # safetensors refuses larger headers too


def weights_fingerprint(source: str | Path) -> str:
    """A fingerprint of the weights at `source`: a model directory, one weights file, or a
    Hugging Face hub id ("sha256:<hex>"; milliseconds for a 500 MB checkpoint)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _digest(_directory_parts(path))
    if path.is_file():
        return _digest(_file_parts(path, path.name))
    return _hub_fingerprint(str(source))


def model_fingerprint(model: Any) -> str:
    """The fingerprint of a loaded model (a `LoadedModel`): of the files it was loaded from
    (`model.source`), or of its parameters when it has none (a model built in memory)."""
    source = getattr(model, "source", "") or ""
    path = Path(source).expanduser() if source else None
    if path is not None and (path.exists() or _looks_like_hub_id(source)):
        return weights_fingerprint(source)
    return parameters_fingerprint(model.hf)


def parameters_fingerprint(module: Any) -> str:
    """A fingerprint of a torch module's parameters and buffers, from their values (every
    value of a small tensor, evenly spaced samples of a large one)."""
    import torch

    digest = hashlib.sha256(b"parameters\n")
    with torch.no_grad():
        for name, tensor in sorted(module.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            if flat.numel() > 4096:
                step = flat.numel() // 4096
                flat = flat[::step][:4096]
            values = flat.to("cpu", torch.float64).numpy().tobytes()
            digest.update(f"{name} {tuple(tensor.shape)} {tensor.dtype}\n".encode())
            digest.update(hashlib.sha256(values).digest())
    return f"sha256:{digest.hexdigest()}"


def safetensors_problem(path: str | Path) -> str | None:
    """Why the safetensors file at `path` is not whole (None: it is). Reads its header only."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header, data_start = _read_header(handle, size)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    except ValueError as err:
        return str(err)
    end = _data_length(header)
    if end is None:
        return "its header lists tensors without valid data offsets"
    if data_start + end != size:
        return (
            f"it is {size} bytes but its header describes {data_start + end} "
            "(truncated, or not fully written)"
        )
    return None


# --- internals ----------------------------------------------------------------------------


def _digest(parts: list[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return f"sha256:{digest.hexdigest()}"


def _directory_parts(path: Path) -> list[bytes]:
    parts: list[bytes] = []
    for name in sorted(os.listdir(path)):
        full = path / name
        if not full.is_file():
            continue
        if name in CONFIG_FILES:
            parts += [name.encode(), full.read_bytes()]
        elif name.endswith(WEIGHT_SUFFIXES) and not name.startswith("training_args"):
            parts += _file_parts(full, name)
        elif name.endswith(".safetensors.index.json"):
            parts += [name.encode(), full.read_bytes()]
    return parts


def _file_parts(path: Path, name: str) -> list[bytes]:
    real = path.resolve()  # a hub snapshot links to blobs: their times are the real ones
    stat = real.stat()
    parts = [f"{name} {stat.st_size} {stat.st_mtime_ns}".encode()]
    with real.open("rb") as handle:
        if name.endswith(".safetensors"):
            try:
                parts += _safetensors_samples(handle, stat.st_size)
                return parts
            except ValueError:
                handle.seek(0)  # not a readable safetensors file: sample it as bytes
        parts += _byte_samples(handle, stat.st_size)
    return parts


def _read_header(handle, size: int) -> tuple[dict, int]:
    if size < 8:
        raise ValueError(f"it is {size} bytes, shorter than a safetensors header")
    (length,) = struct.unpack("<Q", handle.read(8))
    if length > MAX_HEADER or 8 + length > size:
        raise ValueError(
            f"its header claims {length} bytes but the file is {size} (truncated or not "
            "a safetensors file)"
        )
    raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("its header is not valid JSON (truncated or corrupt)") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return header, 8 + length


def _data_length(header: dict) -> int | None:
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            return None
        end = max(end, offsets[1])
    return end


def _safetensors_samples(handle, size: int) -> list[bytes]:
    header, start = _read_header(handle, size)
    parts = [json.dumps(header, sort_keys=True).encode()]
    for key in sorted(k for k in header if k != "__metadata__"):
        begin, end = header[key]["data_offsets"]
        length = end - begin
        places = {begin, begin + max(0, (length - SAMPLE) // 2), max(begin, end - SAMPLE)}
        for place in sorted(places):
            handle.seek(start + place)
            parts.append(handle.read(min(SAMPLE, length)))
    return parts


def _byte_samples(handle, size: int) -> list[bytes]:
    if size <= 2 * EDGE + SPREAD * SAMPLE:
        return [handle.read()]
    parts = [handle.read(EDGE)]
    span = size - 2 * EDGE - SAMPLE
    for i in range(SPREAD):
        handle.seek(EDGE + span * i // (SPREAD - 1))
        parts.append(handle.read(SAMPLE))
    handle.seek(size - EDGE)
    parts.append(handle.read(EDGE))
    return parts


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def _hub_fingerprint(repo_id: str) -> str:
    """Through the local snapshot of a hub model (what a load reads); else by its revision."""
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or no hub library): fall back below
        snapshot = None
    if snapshot is not None and snapshot.is_dir():
        return _digest([b"hub", *_directory_parts(snapshot)])
    revision = "unknown"
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            from huggingface_hub import model_info

            revision = model_info(repo_id).sha or revision
        except Exception:  # noqa: BLE001 - offline or unknown: the name alone
            pass
    return _digest([f"hub {repo_id}@{revision}".encode()])
