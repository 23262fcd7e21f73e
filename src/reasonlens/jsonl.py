"""Reading JSON Lines files: one reader, and one set of errors that name ``file:line``.

Every JSONL file reasonlens reads (a task's data, training pairs, chains, labels, a training
log) goes through here, so each refuses the same mistakes the same way: a directory, a file
that cannot be read, bytes that are not UTF-8 (naming the line), and a line that is not JSON
(naming the line and column, or saying it is nested too deeply). A file a user gives gets a
:class:`~reasonlens.errors.UserError`, which the CLI shows as one line.

Lines end at ``\\n`` only: ``str.splitlines`` would also cut at U+2028, U+0085, ..., which a JSON
string may hold as is (a model's output often does). Blank lines are skipped; line numbers
count them, as an editor does. What a record must hold is the caller's business: the values
come back as decoded, objects or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError

__all__ = ["decode_line", "iter_jsonl", "parse_jsonl", "read_bytes", "read_jsonl", "scan_jsonl"]


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a JSONL file, checked to be UTF-8 text; a UserError naming the file (and
    the line of the first byte that is not UTF-8) otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a JSONL file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x})") from None
    return raw


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for each non-blank line, split at ``\\n`` only."""
    for n, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield n, line


def decode_line(line: str) -> Any | UserError:
    """One line's JSON value, or the UserError saying why it is not JSON (without the
    ``file:line``, which the caller knows)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        return UserError(f"invalid JSON: {err.msg} at column {err.colno}")
    except RecursionError:
        return UserError("invalid JSON: nested too deeply")


def scan_jsonl(path: str | Path) -> Iterator[tuple[int, Any | UserError]]:
    """(line number, decoded value or the UserError saying why not) for each non-blank line:
    for a validator that reports every bad line instead of stopping at the first."""
    for n, line in _lines(read_bytes(path).decode("utf-8")):
        yield n, decode_line(line)


def parse_jsonl(text: str, source: str | Path, expected: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) for each non-blank line of ``text`` (the contents of
    ``source``, already read); the first line that is not JSON raises a UserError
    ``source:line: invalid JSON: ...`` ending in ``; expected`` when given."""
    tail = f"; {expected}" if expected else ""
    for n, line in _lines(text):
        value = decode_line(line)
        if isinstance(value, UserError):
            raise UserError(f"{source}:{n}: {value}{tail}")
        yield n, value


def iter_jsonl(path: str | Path, expected: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, decoded value) for each non-blank line of the file; a UserError naming
    ``file:line`` at the first bad one (see :func:`parse_jsonl`)."""
    yield from parse_jsonl(read_bytes(path).decode("utf-8"), path, expected)


def read_jsonl(path: str | Path, expected: str = "") -> list[Any]:
    """Every record of a JSONL file, in order (see :func:`iter_jsonl` for the errors)."""
    return [value for _, value in iter_jsonl(path, expected)]
