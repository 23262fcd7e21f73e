"""One way to write a file: to a temporary name beside it, flushed to disk, then renamed.

A reader (or a resumed run) sees the old file or the new one, never half of one, even after a
kill or a power cut. JSON goes through one serialiser, so NaN and infinity become `null`
everywhere (JSON has no NaN) and paths, numpy scalars and tuples come out the same way.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask, read without changing it where the system says it (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (a no-op where it cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems cannot open a directory: the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_into(path: Path, write) -> None:
    """Run `write(tmp_path)`, fsync the result, rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: give the file the usual mode
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8, `\\n` line ends) so that `path` is always whole."""
    _replace_into(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8", newline="\n"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _replace_into(Path(path), lambda tmp: tmp.write_bytes(data))


def atomic_save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None):
    """`atomic_write` for a safetensors file."""
    from safetensors.torch import save_file

    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    _replace_into(Path(path), lambda tmp: save_file(contiguous, str(tmp), metadata))


def jsonable(value: Any) -> Any:
    """Plain JSON values: NaN/inf -> None, tuples -> lists, paths and others -> str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalar
        return jsonable(value.item())
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return str(value)


def to_json(value: Any, indent: int | None = 2) -> str:
    """The one JSON rendering of reasonlens' files (with a final newline)."""
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    atomic_write(path, to_json(value, indent))
    return Path(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


#: What to do about a run whose own files are damaged (the end of every :func:`read_state`
#: refusal unless the caller says otherwise).
DAMAGED = (
    "this run's files are damaged: re-run its study command with --overwrite to start it again"
)

_KINDS = ((bool, "true/false"), (dict, "object"), (list, "list"), (str, "string"))


def json_kind(value: Any) -> str:
    """'a JSON object', 'a JSON list', ... for a decoded JSON value."""
    if value is None:
        return "JSON null"
    for kind, name in _KINDS:
        if isinstance(value, kind):
            return f"a JSON {name}"
    return "a JSON number"


def read_state(path: str | Path, expect: type | None = dict, fix: str = DAMAGED) -> Any:
    """A JSON file a run wrote for itself (its stage record, a stage's results), read as
    carefully as user input: a file that is missing, unreadable, not UTF-8, not JSON, or not
    `expect` (dict: a JSON object, list: a JSON list, None: any value) is a UserError naming
    the file, what is wrong with it and `fix`."""
    from reasonlens.errors import UserError

    path = Path(path)

    def refuse(problem: str) -> UserError:
        return UserError(f"{path} {problem}; {fix}")

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise refuse("is missing") from None
    except OSError as err:
        raise refuse(f"cannot be read ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise refuse(f"is not UTF-8 (byte {err.start} is {data[err.start]:#04x})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise refuse(f"is not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise refuse("is not valid JSON (nested too deeply)") from None
    if expect is not None and not isinstance(value, expect):
        raise refuse(f"holds {json_kind(value)}, expected {json_kind(expect())}")
    return value


def read_state_lines(path: str | Path, fix: str = DAMAGED) -> list[dict]:
    """A JSONL file a run wrote for itself (one object per line), read like
    :func:`read_state` through the one JSONL reader; a bad line is named ``file:line``."""
    from reasonlens.errors import UserError
    from reasonlens.jsonl import iter_jsonl

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} is missing; {fix}")
    records = []
    try:
        for number, record in iter_jsonl(path):
            if not isinstance(record, dict):
                kind = json_kind(record)
                raise UserError(f"{path}:{number} holds {kind}, expected a JSON object")
            records.append(record)
    except UserError as err:
        raise UserError(f"{err}; {fix}") from None
    return records


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks (a run records what its inputs were)."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
