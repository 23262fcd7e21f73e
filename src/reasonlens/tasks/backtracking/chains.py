"""Chains of thought with labelled character spans, from files in two layouts.

**The source data's layout** (Ward et al.'s ``all_annotated_chains.json``): a JSON list of
``{task_id, problem, reasoning_chain, annotated_chain}``, where ``annotated_chain`` is the
chain with inline markup ``["label"]text["end-section"]`` (labels such as initializing,
deduction, adding-knowledge, example-testing, uncertainty-estimation, backtracking; any label
is kept). The annotator rewrote the chain around its markup, so the sections are located in
``reasoning_chain`` one after the other: each section's text must appear there next, up to
whitespace (a run of spaces or newlines matches any other), and a leading ``<think>`` of the
chain may be missing from the annotation. A section that is not found is an error, never
guessed; text the annotation leaves out at the end of the chain is kept, unlabelled.

**The plain layout**: JSONL (or a JSON list) of ``{id, text, spans: [{start, end, label}],
problem?}``, character offsets into ``text``, end exclusive.

Either way a :class:`Chain` holds the chain text, its spans and the problem (the user message a
chat template wraps). Every fault is a :class:`~reasonlens.errors.UserError` of one line
naming the file and the chain. Pure Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from reasonlens.errors import UserError, check_unicode
from reasonlens.jsonl import parse_jsonl

END_SECTION = "end-section"
#: The labels of the source data's annotation prompt (Venhoff et al.); others are kept too.
SOURCE_LABELS = (
    "initializing",
    "deduction",
    "adding-knowledge",
    "example-testing",
    "uncertainty-estimation",
    "backtracking",
)
_MARK = re.compile(r'\["([^"\]\n]*)"\]')
_THINK = "<think>"


class LabelledSpan(NamedTuple):
    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Chain:
    """A chain of thought: its text, labelled character spans into it, and its problem."""

    id: str
    text: str
    spans: tuple[LabelledSpan, ...]
    problem: str | None = None

    @property
    def labels(self) -> set[str]:
        return {s.label for s in self.spans}

    def spans_of(self, label: str) -> tuple[tuple[int, int], ...]:
        return tuple((s.start, s.end) for s in self.spans if s.label == label)


# ---- the source layout --------------------------------------------------------------------


def parse_markup(annotated: str, where: str = "chain") -> list[tuple[str | None, str]]:
    """``annotated`` cut into ``(label, text)`` pieces in order; text outside any section has
    label None. A section that is never closed, an ``["end-section"]`` that closes nothing, a
    section opened inside another and an empty label are errors naming ``where``."""
    pieces: list[tuple[str | None, str]] = []
    pos = 0
    open_label: str | None = None
    open_at = 0
    for m in _MARK.finditer(annotated):
        label = m[1].strip()
        text = annotated[pos : m.start()]
        if label == END_SECTION:
            if open_label is None:
                raise UserError(
                    f'{where}: ["{END_SECTION}"] at character {m.start()} closes no section'
                )
            pieces.append((open_label, text))
            open_label = None
        else:
            if not label:
                raise UserError(f'{where}: an empty label [""] at character {m.start()}')
            if open_label is not None:
                raise UserError(
                    f'{where}: section ["{open_label}"] opened at character {open_at} is not '
                    f'closed before ["{label}"] at character {m.start()}'
                )
            pieces.append((None, text))
            open_label, open_at = label, m.start()
        pos = m.end()
    if open_label is not None:
        raise UserError(
            f'{where}: section ["{open_label}"] opened at character {open_at} is never closed '
            f'(no ["{END_SECTION}"])'
        )
    pieces.append((None, annotated[pos:]))
    return [(label, text) for label, text in pieces if label is not None or text.strip()]


def _loose(text: str) -> re.Pattern:
    """``text`` with every whitespace run matching any whitespace run."""
    parts = re.split(r"(\s+)", text)
    return re.compile("".join(r"\s+" if p.isspace() else re.escape(p) for p in parts if p))


def align_markup(
    pieces: Sequence[tuple[str | None, str]], chain: str, where: str = "chain"
) -> tuple[LabelledSpan, ...]:
    """The labelled pieces as character spans of ``chain``: each piece (stripped) must come
    next in the chain, after whitespace only (see the module docstring)."""
    spans = []
    cursor = 0
    if chain.lstrip().startswith(_THINK) and not (
        pieces and pieces[0][1].lstrip().startswith(_THINK)
    ):
        cursor = chain.index(_THINK) + len(_THINK)
    for label, text in pieces:
        core = text.strip()
        if not core:
            continue
        cursor = len(chain) - len(chain[cursor:].lstrip())
        m = _loose(core).match(chain, cursor)
        if m is None:
            found = chain[cursor : cursor + 40]
            what = f'section ["{label}"]' if label else "text between sections"
            raise UserError(
                f"{where}: the annotated chain differs from reasoning_chain at character "
                f"{cursor}: {what} reads {core[:40]!r}, the chain {found!r}"
            )
        if label is not None:
            spans.append(LabelledSpan(m.start(), m.end(), label))
        cursor = m.end()
    return tuple(spans)


def parse_annotated(records: object, source: str = "input") -> list[Chain]:
    """Chains from the source layout's decoded JSON (a list of records)."""
    if not isinstance(records, list):
        raise UserError(
            f"{source}: expected a JSON list of {{task_id, problem, reasoning_chain, "
            "annotated_chain}} objects"
        )
    chains = []
    for i, rec in enumerate(records):
        where = f"{source}[{i}]"
        if not isinstance(rec, dict):
            raise UserError(f"{where}: not a JSON object")
        cid = rec.get("task_id", rec.get("id"))
        if isinstance(cid, bool) or not isinstance(cid, str | int) or cid == "":
            raise UserError(f"{where}: 'task_id' must be a string or an integer")
        where = f"{source}: chain {cid}"
        for key in ("reasoning_chain", "annotated_chain"):
            if not isinstance(rec.get(key), str):
                raise UserError(f"{where}: {key!r} must be a string")
            check_unicode(rec[key], f"{where}: {key!r}")
        problem = rec.get("problem")
        if problem is not None and not isinstance(problem, str):
            raise UserError(f"{where}: 'problem' must be a string")
        pieces = parse_markup(rec["annotated_chain"], where)
        spans = align_markup(pieces, rec["reasoning_chain"], where)
        chains.append(Chain(str(cid), rec["reasoning_chain"], spans, problem))
    return _unique(chains, source)


# ---- the plain layout ---------------------------------------------------------------------


def parse_span_record(rec: object, where: str) -> Chain:
    """One plain-layout record ``{id, text, spans: [{start, end, label}], problem?}``."""
    if not isinstance(rec, dict):
        raise UserError(f"{where}: not a JSON object")
    cid = rec.get("id")
    if isinstance(cid, bool) or not isinstance(cid, str | int) or cid == "":
        raise UserError(f"{where}: 'id' must be a string or an integer")
    where = f"{where} (chain {cid})"
    text = rec.get("text")
    if not isinstance(text, str):
        raise UserError(f"{where}: 'text' must be a string")
    check_unicode(text, f"{where}: 'text'")
    problem = rec.get("problem")
    if problem is not None and not isinstance(problem, str):
        raise UserError(f"{where}: 'problem' must be a string")
    raw = rec.get("spans")
    if not isinstance(raw, list):
        raise UserError(f"{where}: 'spans' must be a list of {{start, end, label}} objects")
    spans = []
    for j, s in enumerate(raw):
        if not isinstance(s, dict):
            raise UserError(f"{where}: span {j} is not an object")
        start, end, label = s.get("start"), s.get("end"), s.get("label")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise UserError(f"{where}: span {j} needs integer 'start' and 'end'")
        if not 0 <= start < end <= len(text):
            raise UserError(
                f"{where}: span {j} [{start}, {end}) is out of range for a text of "
                f"{len(text)} characters (need 0 <= start < end <= length)"
            )
        if not isinstance(label, str) or not label.strip():
            raise UserError(f"{where}: span {j} needs a non-empty string 'label'")
        spans.append(LabelledSpan(start, end, label.strip()))
    return Chain(str(cid), text, tuple(sorted(spans)), problem)


# ---- files --------------------------------------------------------------------------------


def read_chains(path: str | Path) -> list[Chain]:
    """Every chain of a file in either layout (told apart by its records' keys)."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
        except RecursionError:
            raise UserError(f"{path}: invalid JSON (nested too deeply)") from None
        first = data[0] if isinstance(data, list) and data else None
        if isinstance(first, dict) and "annotated_chain" in first:
            return parse_annotated(data, str(path))
        if not isinstance(data, list) or not data:
            raise UserError(f"{path}: expected a non-empty JSON list of chains")
        return _unique([parse_span_record(r, f"{path}[{i}]") for i, r in enumerate(data)], path)
    _refuse_one_object(text, path)
    chains = [parse_span_record(rec, f"{path}:{n}") for n, rec in parse_jsonl(text, path)]
    return _unique(chains, path)


def _refuse_one_object(text: str, path: Path) -> None:
    """A file that is one JSON object, not a chain record (one written over several lines, or
    whose keys are no chain's, e.g. ``{"chains": [...]}``), is refused as such, not read as
    JSONL and blamed on a line or on ``id``."""
    if not text.lstrip().startswith("{"):
        return
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return  # JSONL of several records (or broken JSON): read line by line
    lines = sum(1 for line in text.split("\n") if line.strip())
    if isinstance(data, dict) and (lines > 1 or not {"id", "text", "spans"} & set(data)):
        keys = ", ".join(repr(k) for k in list(data)[:3]) + (", ..." if len(data) > 3 else "")
        raise UserError(
            f"{path}: expected a JSON list of chains (or JSONL, one chain a line), got an object "
            f"(keys {keys or 'none'})"
        )


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a file of chains")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"file of chains not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None


def _unique(chains: list[Chain], source: Any) -> list[Chain]:
    seen: set[str] = set()
    for c in chains:
        if c.id in seen:
            raise UserError(f"{source}: chain id {c.id!r} occurs twice")
        seen.add(c.id)
    return chains


def span_records(chains: Iterable[Chain]) -> list[dict[str, Any]]:
    """Chains in the plain layout (what :func:`read_chains` reads back)."""
    out = []
    for c in chains:
        rec: dict[str, Any] = {"id": c.id, "text": c.text}
        if c.problem is not None:
            rec["problem"] = c.problem
        rec["spans"] = [{"start": s, "end": e, "label": lab} for s, e, lab in c.spans]
        out.append(rec)
    return out
