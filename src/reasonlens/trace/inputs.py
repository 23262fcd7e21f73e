"""Inputs to trace: texts or token ids, optionally with the token positions to keep."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reasonlens.errors import UserError, check_unicode


@dataclass(frozen=True)
class TraceInput:
    """One example: `text` or `input_ids`, and optionally which token positions to keep.

    Positions index the example's own tokens (0 is its first token); negative values count
    from its end, so -1 is the last token.
    """

    text: str | None = None
    input_ids: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("a TraceInput needs exactly one of text or input_ids")
        if self.text is not None and not self.text:
            raise UserError("a text to trace is empty: it has no tokens; give non-empty text")
        if self.text is not None:
            check_unicode(self.text, "a text to trace")
        if self.input_ids is not None and not self.input_ids:
            raise UserError("a trace input's input_ids are empty: give one token id or more")
        if self.positions is not None and not self.positions:
            raise UserError(
                "a trace input's positions are empty: give one position or more (or none, "
                "to use --positions all or last)"
            )

    def key(self) -> str:
        return json.dumps([self.text, self.input_ids, self.positions])


class JsonlInputs:
    """A JSONL file read lazily and re-readable, one example per line.

    Each line is an object with `text` (a string) or `input_ids` (a list of ints), and
    optionally `positions` (a list of ints). Lines end at `\n` only (a JSON string may hold
    U+2028 as is). Bad lines are reported as file:line: reason.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"{self.path} is a directory, not a JSONL input file")
        if not self.path.is_file():
            raise UserError(f"input file not found: {self.path}")
        if self.path.suffix not in (".jsonl", ".json"):
            raise UserError(f"{self.path}: expected a .jsonl file (one JSON object per line)")

    def __iter__(self) -> Iterator[TraceInput]:
        with self.path.open("rb") as handle:  # binary: split at b"\n" only
            for number, raw in enumerate(handle, start=1):
                where = f"{self.path}:{number}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise UserError(
                        f"{where}: not UTF-8 text (byte {raw[err.start]:#04x}); "
                        "expected one JSON object per line"
                    ) from None
                if line.strip():
                    yield parse_input_line(line, where)


_EXPECTED = "expected a JSON object with 'text' (a string) or 'input_ids' (token ids)"


def parse_input_line(line: str, where: str) -> TraceInput:
    """One JSONL line as a TraceInput; a UserError naming `where` (file:line) if it is bad."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: not valid JSON ({err.msg}); {_EXPECTED}") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply; {_EXPECTED}") from None
    if not isinstance(record, dict):
        raise UserError(f"{where}: {_EXPECTED}")
    text, ids, positions = record.get("text"), record.get("input_ids"), record.get("positions")
    if (text is None) == (ids is None):
        raise UserError(f"{where}: give exactly one of 'text' (a string) or 'input_ids'")
    if text is not None and not isinstance(text, str):
        raise UserError(f"{where}: 'text' must be a string")
    if text is not None and not text:
        raise UserError(f"{where}: 'text' is empty: it has no tokens to trace")
    if text is not None:
        check_unicode(text, f"{where}: 'text'")
    if ids is not None and not (isinstance(ids, list) and ids and all(map(_is_int, ids))):
        raise UserError(
            f"{where}: 'input_ids' must be a non-empty list of token ids (integers, not "
            "booleans or floats)"
        )
    if ids is not None and any(i < 0 for i in ids):
        raise UserError(f"{where}: token id {min(ids)} is negative: token ids count from 0")
    if positions is not None and not (isinstance(positions, list) and all(map(_is_int, positions))):
        raise UserError(f"{where}: 'positions' must be a list of integers")
    if positions is not None and not positions:
        raise UserError(
            f"{where}: 'positions' is empty: list one position or more, or leave it out"
        )
    return TraceInput(
        text=text,
        input_ids=tuple(ids) if ids is not None else None,
        positions=tuple(positions) if positions is not None else None,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_inputs(items: Iterable[TraceInput | str] | JsonlInputs) -> Iterable[TraceInput]:
    """Accept plain strings as well as TraceInputs; keep JsonlInputs lazy."""
    if isinstance(items, JsonlInputs):
        return items
    return [TraceInput(text=x) if isinstance(x, str) else x for x in items]


def fingerprint(items: Iterable[TraceInput]) -> tuple[str, int]:
    """A hash of every input and their count, read in one streaming pass."""
    digest = hashlib.sha256()
    count = 0
    for item in items:
        digest.update(item.key().encode())
        digest.update(b"\n")
        count += 1
    return digest.hexdigest(), count
