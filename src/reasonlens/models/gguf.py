"""Convert a GGUF file once into a safetensors checkpoint that loads in a fraction of a second.

transformers dequantises GGUF weights to float on every load (~15-35 s here) and leaves a
`quantization_config` on the config that blocks `save_pretrained`; so the first load rebuilds
the model from a clean config, copies the weights in, and saves model + tokenizer to the cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from pathlib import Path

from reasonlens.errors import UserError

log = logging.getLogger(__name__)

SOURCE_FILE = "reasonlens_source.json"


def converted_dir(cache_root: Path, name: str) -> Path:
    return cache_root / "models" / name


def is_current(target: Path, source_key: str) -> bool:
    """True when `target` holds a finished conversion of exactly this source."""
    stamp = target / SOURCE_FILE
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("source") == source_key
    except (OSError, json.JSONDecodeError):
        return False


def convert_gguf(
    gguf_path: Path,
    target: Path,
    source_key: str,
    chat_template: str | None = None,
) -> Path:
    """Dequantise `gguf_path` and save it as a safetensors checkpoint in `target`.

    Writes into a temporary sibling directory and renames it into place, so an interrupted
    conversion never leaves a half-written checkpoint that a later load would trust.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    check_gguf(gguf_path)
    log.info(
        "converting %s once into %s (later loads read the safetensors copy)", gguf_path, target
    )
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError, IndexError, struct.error) as err:
        # a well-formed GGUF that transformers cannot read (an architecture it does not
        # support, a tokenizer it does not know)
        raise UserError(f"cannot load {gguf_path} as a model: {_first_line(err)}") from None
    if chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = chat_template

    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    if tied:
        clean.tie_weights()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_dir(target)
    try:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(
            json.dumps({"source": source_key, "gguf": str(gguf_path)}, indent=2)
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def check_gguf(path: Path) -> None:
    """Refuse an empty, foreign, corrupt or truncated GGUF file with a UserError saying which.

    Parses the header, the metadata and the tensor table (no weights are read), and checks
    that every tensor's data lies inside the file: a truncated download fails here, in a
    second or two, instead of deep inside transformers after a partial dequantisation."""
    from gguf import GGUFReader

    def bad(why: str) -> UserError:
        return UserError(f"{path} is not a usable GGUF file: {why}")

    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    if size == 0:
        raise bad("it is empty (0 bytes)")
    if magic != b"GGUF":
        raise bad("it does not start with the GGUF magic bytes (not a GGUF file)")
    try:
        reader = GGUFReader(path)
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as err:  # noqa: BLE001 - any failure to parse means a damaged file
        raise bad(f"it is truncated or corrupt ({_first_line(err)})") from None
    if not reader.tensors:
        raise bad("it holds no tensors")
    if end > size:
        raise bad(f"it is truncated ({size:,} bytes; its tensors need {end:,})")


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    line = lines[0] if lines else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def gguf_source_key(path: Path) -> str:
    """A user's .gguf file is identified by its path, size and modification time."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


# --- temporary directories of conversions ---------------------------------------------------

#: `.{target}.partial.{host}.{pid}.{random}`: whose conversion it is, so that the next one can
#: tell a dead conversion's leftovers (hundreds of MB each) from one still running.
_TEMP = re.compile(r"^\.(?P<name>.+)\.partial\.(?P<host>\w+)\.(?P<pid>\d+)\.\w+$")
#: What `tempfile.mkdtemp(prefix=".{target}-")` made before the names carried a pid.
_LEGACY_TEMP = re.compile(r"^\.(?P<name>.+)-[a-z0-9_]{8}$")
#: A temporary directory this old is stale whoever made it (a conversion takes minutes).
STALE_AFTER_S = 6 * 3600


def _host() -> str:
    return re.sub(r"\W", "_", socket.gethostname()) or "host"


def _temp_dir(target: Path) -> Path:
    """A new temporary directory beside `target`, named after this process; leftovers of
    conversions that died are removed first."""
    remove_stale_temps(target.parent)
    prefix = f".{target.name}.partial.{_host()}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the renamed cache entry is read by all
    return tmp


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. someone else's process (PermissionError): it exists
        return True
    return True


def stale_temp(entry: Path, now: float | None = None) -> bool:
    """Whether `entry` is the temporary directory of a conversion that is no longer running:
    its process (on this host) is gone, or it is older than any conversion takes."""
    if entry.is_symlink() or not entry.is_dir():
        return False
    match = _TEMP.match(entry.name)
    if match is None and _LEGACY_TEMP.match(entry.name) is None:
        return False
    try:
        age = (time.time() if now is None else now) - entry.stat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    return bool(match and match["host"] == _host() and not _pid_alive(int(match["pid"])))


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary directories of dead conversions in `folder`; return them."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if stale_temp(entry):
            log.info("removing %s, left by a conversion that did not finish", entry)
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
