"""A study's report as a declaration, rendered the same way for every study.

A study says *what* its report holds: a headline table, sections of claims (each with the
reference figure, this run's value, the control's and a verdict from
:mod:`reasonlens.report.verdicts`), tables, figures and free text. The builder owns the rest:
the verdicts at a glance that open every report, the explanation of the rules used, the
multiplicity note, the training section (from every training stage), provenance (from the
study's stage list), and `report.md`, `report.html` and `summary.md`, all from one document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.report.document import Document
from reasonlens.report.verdicts import Verdict, explanation, multiplicity


@dataclass(frozen=True)
class Claim:
    """One claim: what is claimed, the reference's figure (the paper, the seed), this run's,
    the control's, and the verdict."""

    text: str
    value: str
    verdict: Verdict
    control: str = "–"
    reference: str = "–"


@dataclass(frozen=True)
class Claims:
    """A table of claims in a section; `reference` and `control` name the columns (None
    leaves the column out)."""

    claims: Sequence[Claim]
    reference: str | None = "paper"
    control: str | None = "control"
    rule: str = "support"  # which rule of report.verdicts judged them


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass(frozen=True)
class Figure:
    """A PNG, relative to the run directory; a missing one is skipped with a note."""

    path: str
    caption: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


Block = "str | Claims | Table | Figure | Bullets | Section"


@dataclass(frozen=True)
class Section:
    """A heading and its blocks, in order: paragraphs (str), Claims, Table, Figure, Bullets,
    or a subsection."""

    title: str
    blocks: Sequence[Any] = ()
    level: int = 2


@dataclass(frozen=True)
class Report:
    """What a study declares. `summary` holds the blocks summary.md adds after the verdicts
    (typically the headline table); `data` is provenance's line on the data."""

    title: str
    intro: Sequence[str] = ()
    headline: Sequence[Any] = ()
    sections: Sequence[Section] = ()
    data: str = ""
    summary: Sequence[Any] = ()
    control_name: str = "control"
    notes: Sequence[str] = field(default_factory=tuple)  # after the verdicts table


@dataclass(frozen=True)
class Provenance:
    """What the builder reads from the run itself: the study's stage folders, the training
    stages' results by stage name, the run record and the results' header."""

    stages: Sequence[str]
    training: dict[str, dict]
    record: dict
    results: dict


def all_claims(blocks: Sequence[Any]) -> list[tuple[str, Claim]]:
    """Every claim in `blocks`, with the title of the section it stands in."""
    out: list[tuple[str, Claim]] = []

    def walk(items: Sequence[Any], title: str) -> None:
        for item in items:
            if isinstance(item, Section):
                walk(item.blocks, item.title)
            elif isinstance(item, Claims):
                out.extend((title, c) for c in item.claims)

    walk(blocks, "")
    return out


def _rules(blocks: Sequence[Any]) -> set[str]:
    found: set[str] = set()
    for item in blocks:
        if isinstance(item, Section):
            found |= _rules(item.blocks)
        elif isinstance(item, Claims):
            found.add(item.rule)
    return found


def glance(report: Report) -> list[Any]:
    """The verdicts at a glance: every claim, its value, its control's and its verdict."""
    claims = all_claims([*report.headline, *report.sections])
    if not claims:
        return []
    tested = sum(c.verdict.decided for _, c in claims)
    count = (
        multiplicity(tested)
        if tested
        else "No claim could be judged on this run: each says why it is not measurable."
    )
    rows = [
        [f"{title}: {c.text}" if title else c.text, c.value, c.control, str(c.verdict)]
        for title, c in claims
    ]
    header = ["claim", "this run", report.control_name, "verdict"]
    return [
        Table(header, rows),
        explanation(_rules([*report.headline, *report.sections])),
        count,
        *report.notes,
    ]


def training_section(training: dict[str, dict]) -> Section | None:
    """One row per training stage: what it trained on, how long, the loss it reached."""
    if not training:
        return None
    rows = []
    for name, t in training.items():
        loss = f"{_num(t.get('first_loss'))} -> {_num(t.get('final_loss'))}"
        rows.append(
            [
                name,
                t.get("method", "–"),
                t.get("examples", "–"),
                t.get("steps", "–"),
                t.get("epochs", "–"),
                loss,
                f"{t.get('device', '?')} ({t.get('precision', '?')})",
            ]
        )
    header = ["stage", "method", "examples", "steps", "epochs", "loss (first -> final)", "device"]
    took = ", ".join(
        f"{name} {t['train_seconds']:.0f}" for name, t in training.items() if t.get("train_seconds")
    )
    note = (
        "Each training stage's run directory holds its full record (`results.json`, the loss "
        "curve, the resolved training config)."
    )
    return Section(
        "Training", (Table(header, rows), note, *([f"Training seconds: {took}."] if took else []))
    )


def provenance_section(report: Report, p: Provenance) -> Section:
    """Model, preset, seed, data, software, machine, timings, and where each stage's files
    are, read from the run: never a hand-kept list."""
    r = p.results
    timings = r.get("timings_s", {})
    return Section(
        "Provenance",
        (
            Bullets(
                [
                    f"model: `{r.get('model')}`; preset: `{r.get('preset')}`; "
                    f"seed: {r.get('seed')}",
                    *([report.data] if report.data else []),
                    "software: "
                    + ", ".join(f"{k} {v}" for k, v in p.record.get("versions", {}).items()),
                    f"machine: {p.record.get('machine', {}).get('platform', '?')}",
                    "timings (s, summed over the sessions that ran the study): "
                    + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
                    "resolved configuration: `config.yaml`; per-stage runs: "
                    + ", ".join(f"`{s}/`" for s in p.stages),
                ]
            ),
        ),
    )


def render(report: Report, run_path: Path, p: Provenance) -> tuple[Document, Document]:
    """(the full report, the summary), as documents."""
    doc = Document(report.title)
    for text in report.intro:
        doc.paragraph(text)
    at_a_glance = glance(report)
    if at_a_glance:
        doc.heading("Verdicts at a glance")
        _blocks(doc, at_a_glance, run_path)
    _blocks(doc, report.headline, run_path)
    sections = [*report.sections, training_section(p.training), provenance_section(report, p)]
    _blocks(doc, [s for s in sections if s is not None], run_path)

    summary = Document(report.title)
    if at_a_glance:
        summary.heading("Verdicts at a glance")
        _blocks(summary, at_a_glance[:1], run_path)
    _blocks(summary, report.summary, run_path)
    summary.paragraph("Full report: `report.md` / `report.html`.")
    return doc, summary


def write(report: Report, run_path: Path, p: Provenance) -> None:
    """report.md, report.html and summary.md."""
    from reasonlens.runs import atomic_write

    doc, summary = render(report, run_path, p)
    doc.write(run_path, "report")
    atomic_write(run_path / "summary.md", summary.to_markdown(run_path))


def markdown(blocks: Sequence[Any], run_path: Path, title: str = "") -> str:
    """Blocks rendered as Markdown on their own (a section, for reading or testing)."""
    doc = Document(title)
    _blocks(doc, blocks, run_path)
    return doc.to_markdown(run_path)


def _blocks(doc: Document, blocks: Sequence[Any], run_path: Path, level: int = 2) -> None:
    for item in blocks:
        if isinstance(item, str):
            doc.paragraph(item)
        elif isinstance(item, Section):
            doc.heading(item.title, item.level)
            _blocks(doc, item.blocks, run_path, item.level + 1)
        elif isinstance(item, Claims):
            header = ["claim"]
            header += [item.reference] if item.reference else []
            header += ["this run"]
            header += [item.control] if item.control else []
            header += ["verdict"]
            rows = []
            for c in item.claims:
                row: list[object] = [c.text]
                row += [c.reference] if item.reference else []
                row += [c.value]
                row += [c.control] if item.control else []
                rows.append([*row, str(c.verdict)])
            doc.table(header, rows)
        elif isinstance(item, Table):
            doc.table(list(item.header), [list(r) for r in item.rows])
        elif isinstance(item, Bullets):
            doc.bullets(list(item.items))
        elif isinstance(item, Figure):
            path = run_path / item.path
            if path.is_file():
                doc.image(path, item.caption)
            else:
                doc.paragraph(f"*(figure not written: `{item.path}`, {item.caption})*")
        else:
            raise TypeError(f"a report block cannot be {type(item).__name__}")


def _num(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"
