"""JSONL files of examples: atomic writes, and reads that name the file and line of a fault."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.runs.files import atomic_write
from reasonlens.tasks.blocksworld.example import Example, example_from_record


def examples_to_jsonl(examples: Iterable[Example]) -> str:
    return "".join(ex.to_json() + "\n" for ex in examples)


def write_examples(path: str | Path, examples: Iterable[Example]) -> None:
    """One JSON record per line (see :mod:`reasonlens.tasks.blocksworld.example`)."""
    atomic_write(path, examples_to_jsonl(examples))


def iter_records(path: str | Path) -> Iterator[tuple[int, Any | UserError]]:
    """(line number, decoded JSON or the UserError saying why not) for each non-blank line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a JSONL file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        # lines end at "\n" only: str.splitlines would also cut at U+2028, U+0085, ...,
        # which a JSON string may hold as is
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as err:
            yield n, UserError(f"invalid JSON: {err.msg} at column {err.colno}")
        except RecursionError:
            yield n, UserError("invalid JSON: nested too deeply")


def read_numbered(path: str | Path, *, slots: int | None = None) -> list[tuple[int, Example]]:
    """(line number, example) for every example in a JSONL file of either layout; the first
    bad line raises a UserError naming ``file:line`` and the reason."""
    out = []
    for n, rec in iter_records(path):
        try:
            if isinstance(rec, UserError):
                raise rec
            out.append((n, example_from_record(rec, slots=slots)))
        except UserError as err:
            raise UserError(f"{path}:{n}: {err}") from None
    return out


def read_examples(path: str | Path, *, slots: int | None = None) -> list[Example]:
    """Every example in a JSONL file of either layout; the first bad line raises a UserError
    naming ``file:line`` and the reason."""
    return [ex for _, ex in read_numbered(path, slots=slots)]
