"""JSONL files of examples: atomic writes, and reads that name the file and line of a fault."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reasonlens.errors import UserError
from reasonlens.jsonl import scan_jsonl
from reasonlens.runs.files import atomic_write
from reasonlens.tasks.blocksworld.example import Example, example_from_record


def examples_to_jsonl(examples: Iterable[Example]) -> str:
    return "".join(ex.to_json() + "\n" for ex in examples)


def write_examples(path: str | Path, examples: Iterable[Example]) -> None:
    """One JSON record per line (see :mod:`reasonlens.tasks.blocksworld.example`)."""
    atomic_write(path, examples_to_jsonl(examples))


def read_numbered(path: str | Path, *, slots: int | None = None) -> list[tuple[int, Example]]:
    """(line number, example) for every example in a JSONL file of either layout; the first
    bad line raises a UserError naming ``file:line`` and the reason."""
    out = []
    for n, rec in scan_jsonl(path):
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
