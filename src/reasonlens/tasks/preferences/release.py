"""Files of the preferences study: the original release's CSV layouts, which this project uses
as its own layouts too (so its results and the paper's can be read by the same code).

Scenarios are read by :mod:`reasonlens.tasks.preferences.scenarios`. Here, all CSV with a header:

- **weights** (``instilled_weights.csv``; targets): ``scenario,attr1..attr5``, one row per
  scenario, numbers (the release's are integers with max |w| = 100 per row).
- **learned weights** (``<model>regression_results.csv``, and this project's
  ``learned_weights.csv``): ``scenario,b_attr1..b_attr5``. The release rounds them to integers;
  this project keeps floats.
- **decisions** (``<model>instilled_selections.csv``; also what this project's study writes):
  ``[model,]scenario,selection,A_attribute_1..A_attribute_5,B_attribute_1..B_attribute_5
  [,logit_diff]``. ``selection`` is the model's raw reply (parsed later, strictly: anything but
  "A"/"B" is invalid); attribute values are in attr1..attr5 order, as shown in the prompt.
  ``logit_diff`` (optional, this project's extension) is logit(A) - logit(B) at the first
  assistant position.
- **reports** (``<model>instilled_weight_reports.csv`` etc.):
  ``explaining_model,version,scenario,report_attr1..report_attr5,A_attribute_1..5,
  B_attribute_1..5``, one row per *parseable* reply (the release dropped the others, so its
  files cannot say how many were bad). This project may instead keep the raw replies,
  ``scenario,reply[,explaining_model,version]``, parsed here strictly, each bad one kept as a
  :class:`Report` with no weights so that it is counted.

Every reader checks its file against the scenarios: a scenario the scenarios file does not
hold, a scenario given twice in a weights file, a missing column or a cell that is not a
number is one :class:`~reasonlens.errors.UserError` naming the file, the row (and scenario)
and the column.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reasonlens.errors import UserError, suggest
from reasonlens.tasks.preferences.files import read_csv_rows
from reasonlens.tasks.preferences.replies import parse_choice, parse_report
from reasonlens.tasks.preferences.scenarios import N_ATTRIBUTES, Scenario

_POSITIONS = range(1, N_ATTRIBUTES + 1)
A_COLUMNS = tuple(f"A_attribute_{i}" for i in _POSITIONS)
B_COLUMNS = tuple(f"B_attribute_{i}" for i in _POSITIONS)
WEIGHT_COLUMNS = tuple(f"attr{i}" for i in _POSITIONS)
LEARNED_COLUMNS = tuple(f"b_attr{i}" for i in _POSITIONS)
REPORT_COLUMNS = tuple(f"report_attr{i}" for i in _POSITIONS)
DECISION_COLUMNS = ("scenario", "selection", *A_COLUMNS, *B_COLUMNS)

#: The fine-tuned models of the release, as its file names spell them (before the "_").
RELEASE_MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18")

Weights = dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class Decision:
    """One trial: the two options' values (attr1..attr5 order) and the model's raw reply."""

    scenario: str
    reply: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    logit_diff: float | None = None
    model: str = ""

    @property
    def choice(self) -> str | None:
        """ "A", "B", or None for an invalid reply (never "A" by default)."""
        return parse_choice(self.reply)


@dataclass(frozen=True)
class Report:
    """One self-report: five weights in attr1..attr5 order, or None for a bad report."""

    scenario: str
    weights: tuple[float, ...] | None
    reply: str | None = None
    model: str = ""
    version: str = ""


def release_file(directory: str | Path, model: str, kind: str) -> Path:
    """A per-model file of the release: `kind` is e.g. "instilled_selections",
    "regression_results", "instilled_weight_reports" (the name after the model prefix)."""
    return Path(directory) / f"{model}_{kind}.csv"


def _number(cell: str | None, path: Path, row: int, scenario: str, column: str) -> float:
    where = f"{path} row {row} (scenario {scenario!r}): column {column}"
    try:
        value = float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{where} is {cell!r}, not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where} is {cell!r}, not a finite number")
    return value


def _option(
    cells: Mapping[str, str | None],
    columns: tuple[str, ...],
    scenario: Scenario,
    path: Path,
    row: int,
) -> tuple[float, ...]:
    """One option's five values, each within (about) its attribute's range: a value more
    than the range's width outside it is not a value of this scenario (a unit mix-up, or a
    row of another file) and would swamp the regression, so it is refused."""
    values = []
    for column, attribute in zip(columns, scenario.attributes, strict=True):
        value = _number(cells[column], path, row, scenario.short_name, column)
        low, high = attribute.low, attribute.high
        if not low - attribute.span <= value <= high + attribute.span:
            raise UserError(
                f"{path} row {row} (scenario {scenario.short_name!r}): column {column} is "
                f"{(cells[column] or '').strip()}, far outside the range [{low:g}, {high:g}] of "
                f"attribute {attribute.name!r}; option values lie within it (up to rounding)"
            )
        values.append(value)
    return tuple(values)


def _known(
    scenario: str, scenarios: Mapping[str, Scenario], path: Path, row: int, source: str
) -> None:
    if scenario not in scenarios:
        raise UserError(
            f"{path} row {row}: column scenario {scenario!r} is not in the {source}"
            f"{suggest(scenario, scenarios)}"
        )


def read_weights(
    path: str | Path,
    scenarios: Mapping[str, Scenario],
    columns: tuple[str, ...] = WEIGHT_COLUMNS,
    source: str = "scenarios file",
) -> Weights:
    """Weights per scenario (file order) from ``scenario,attr1..attr5`` (or other `columns`);
    every scenario must be one of `scenarios` and occur once."""
    path = Path(path)
    what = f"a weights file needs scenario,{','.join(columns)}"
    weights: Weights = {}
    for row, cells in enumerate(read_csv_rows(path, ("scenario", *columns), what), start=1):
        name = cells["scenario"] or ""
        _known(name, scenarios, path, row, source)
        if name in weights:
            raise UserError(f"{path} row {row}: column scenario {name!r} occurs twice")
        weights[name] = tuple(_number(cells[c], path, row, name, c) for c in columns)
    return weights


def read_regression_results(
    path: str | Path, scenarios: Mapping[str, Scenario], source: str = "scenarios file"
) -> Weights:
    """Learned weights per scenario from ``scenario,b_attr1..b_attr5``."""
    return read_weights(path, scenarios, LEARNED_COLUMNS, source)


def write_weights(
    path: str | Path, weights: Mapping[str, Iterable[float]], columns=LEARNED_COLUMNS
) -> Path:
    """Save weights per scenario as ``scenario,b_attr1..b_attr5`` (or `columns`), floats at
    full precision (atomically)."""
    rows = [["scenario", *columns]]
    rows += [[name, *(repr(float(v)) for v in values)] for name, values in weights.items()]
    return _write_rows(path, rows)


def _write_rows(path: str | Path, rows: list[list]) -> Path:
    from reasonlens.runs.files import atomic_write

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic_write(path, buffer.getvalue())
    return Path(path)


def read_decisions(
    path: str | Path, scenarios: Mapping[str, Scenario], source: str = "scenarios file"
) -> list[Decision]:
    """Decisions from the release's selections layout (optionally with ``logit_diff``)."""
    path = Path(path)
    what = "a decisions file needs " + ",".join(DECISION_COLUMNS)
    rows = read_csv_rows(path, DECISION_COLUMNS, what)
    decisions = []
    for row, cells in enumerate(rows, start=1):
        name = cells["scenario"] or ""
        _known(name, scenarios, path, row, source)
        a = _option(cells, A_COLUMNS, scenarios[name], path, row)
        b = _option(cells, B_COLUMNS, scenarios[name], path, row)
        diff = cells.get("logit_diff")
        logit = None if diff in (None, "") else _number(diff, path, row, name, "logit_diff")
        reply = cells["selection"] if cells["selection"] is not None else ""
        decisions.append(Decision(name, reply, a, b, logit, cells.get("model") or ""))
    return decisions


def write_decisions(path: str | Path, decisions: Iterable[Decision]) -> Path:
    """Save decisions in the layout :func:`read_decisions` reads (atomically); ``logit_diff``
    is written when any decision has one."""
    decisions = list(decisions)
    logits = any(d.logit_diff is not None for d in decisions)
    rows = [["model", *DECISION_COLUMNS, *(["logit_diff"] if logits else [])]]
    for d in decisions:
        row = [d.model, d.scenario, d.reply, *map(repr, d.a), *map(repr, d.b)]
        if logits:
            row.append("" if d.logit_diff is None else repr(d.logit_diff))
        rows.append(row)
    return _write_rows(path, rows)


def read_reports(
    path: str | Path, scenarios: Mapping[str, Scenario], source: str = "scenarios file"
) -> list[Report]:
    """Self-reports from the release's layout (parsed ``report_attr1..5``) or this project's
    raw one (a ``reply`` column, parsed strictly; a bad reply is a Report with no weights).
    One file holds one model and version: a file mixing several is refused, since averaging
    across them would blend different models' reports."""
    path = Path(path)
    layout: list[bool] = []

    def needed(header) -> tuple[str, ...]:
        layout.append("reply" in header and not set(REPORT_COLUMNS) <= set(header))
        return ("scenario", "reply") if layout[0] else ("scenario", *REPORT_COLUMNS)

    what = (
        "a reports file needs scenario,report_attr1..report_attr5 (parsed) "
        "or scenario,reply (raw replies)"
    )
    rows = read_csv_rows(path, needed, what)
    raw = layout[0]
    reports = []
    for row, cells in enumerate(rows, start=1):
        name = cells["scenario"] or ""
        _known(name, scenarios, path, row, source)
        if raw:
            reply = cells["reply"] or ""
            weights = parse_report(reply, scenarios[name].names)
        else:
            reply = None
            weights = tuple(_number(cells[c], path, row, name, c) for c in REPORT_COLUMNS)
        model, version = cells.get("explaining_model") or "", cells.get("version") or ""
        reports.append(Report(name, weights, reply, model, version))
    groups = sorted({(r.model, r.version) for r in reports})
    if len(groups) > 1:
        shown = "; ".join(f"{m or '-'} / {v or '-'}" for m, v in groups[:3])
        raise UserError(
            f"{path}: columns explaining_model/version hold {len(groups)} different pairs "
            f"({shown}...); give one file per model and version"
        )
    return reports


def write_reports(path: str | Path, reports: Iterable[Report]) -> Path:
    """Save reports as raw replies, ``explaining_model,version,scenario,reply`` (atomically),
    bad ones included, so that a later reading counts them."""
    rows = [["explaining_model", "version", "scenario", "reply"]]
    for r in reports:
        if r.reply is None:
            raise ValueError("write_reports keeps raw replies; this report has none")
        rows.append([r.model, r.version, r.scenario, r.reply])
    return _write_rows(path, rows)


def write_parsed_reports(path: str | Path, reports: Iterable[Report]) -> Path:
    """Save reports that have weights but no reply (e.g. read from logits) in the release's
    parsed layout, ``explaining_model,version,scenario,report_attr1..5`` (atomically)."""
    rows = [["explaining_model", "version", "scenario", *REPORT_COLUMNS]]
    for r in reports:
        if r.weights is None:
            raise ValueError("write_parsed_reports needs weights; this report has none")
        rows.append([r.model, r.version, r.scenario, *map(repr, r.weights)])
    return _write_rows(path, rows)
