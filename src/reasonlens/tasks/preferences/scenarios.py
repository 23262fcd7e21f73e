"""Choice scenarios of the preferences study: a question and five numeric attributes.

Two layouts are read:

- this project's own (the release's ``candidate_scenarios.json``): a JSON list of
  ``{"short_name", "question", "attributes": [{"name", "units", "range": [min, max]}] x 5}``;
- the release's ``scenarios.csv``: ``scenario,question,attr1..attr5,attr1_min..attr5_min,
  attr1_max..attr5_max``. It has no units. Units come only from ``candidate_scenarios.json``
  (pass it as ``units``): the first 1100 candidates became ``scenarios.csv`` in order, and the CSV
  question is the candidate's with "Imagine you are {role}. " in front. Rows are matched by
  ``short_name`` (unique in both files) and checked: the same attribute names in the same order,
  the same ranges, and a question ending with the candidate's. A public reproduction rebuilt
  scenarios from the CSV with ``units=''``, so its test prompts differed from training; a
  :class:`Scenario` read without units says so (``units is None``) instead of inventing them.

A scenario is validated when it is made: exactly five attributes, distinct names, and for each
a range with min < max (a zero-width range would divide by zero when values are normalised, a
reversed one would flip the sign of every weight). Mistakes are one-line
:class:`~reasonlens.errors.UserError`\\ s naming the file, the scenario and what would be right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.tasks.preferences.files import read_csv_rows, read_text

#: Every scenario has this many attributes (the study's design, and the release's columns).
N_ATTRIBUTES = 5

#: The columns of the release's scenarios.csv.
CSV_COLUMNS = (
    ["scenario", "question"]
    + [f"attr{i}" for i in range(1, N_ATTRIBUTES + 1)]
    + [f"attr{i}_min" for i in range(1, N_ATTRIBUTES + 1)]
    + [f"attr{i}_max" for i in range(1, N_ATTRIBUTES + 1)]
)


@dataclass(frozen=True)
class Attribute:
    """One dimension of a choice: values are drawn from [low, high] and shown with `units`
    (None: not known, e.g. read from scenarios.csv without candidate_scenarios.json)."""

    name: str
    low: float
    high: float
    units: str | None = None

    @property
    def span(self) -> float:
        """high - low: the scale the regression's predictors and the utilities divide by."""
        return self.high - self.low


@dataclass(frozen=True)
class Scenario:
    """A choice context: `short_name` identifies it in every file, `question` heads the prompt,
    and the five `attributes` are shown in this order (attr1..attr5 of the release's files)."""

    short_name: str
    question: str
    attributes: tuple[Attribute, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", tuple(self.attributes))  # a list is hashable now
        check_scenario(self)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def has_units(self) -> bool:
        """Whether every attribute's units are known (needed to render a training prompt)."""
        return all(a.units is not None for a in self.attributes)

    def normalise(self, values: Iterable[float]) -> list[float]:
        """(x_i - min_i) / (max_i - min_i) for the five values of an option."""
        return [(x - a.low) / a.span for x, a in zip(values, self.attributes, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """This project's JSON layout (the release's candidate_scenarios.json)."""
        return {
            "short_name": self.short_name,
            "question": self.question,
            "attributes": [
                {"name": a.name, "units": a.units, "range": [a.low, a.high]}
                for a in self.attributes
            ],
        }


def check_scenario(scenario: Scenario) -> None:
    """Refuse a scenario the analyses cannot use (see the module docstring for why)."""
    name = scenario.short_name
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"a scenario has no short name (question {scenario.question!r})")
    attributes = scenario.attributes
    if len(attributes) != N_ATTRIBUTES:
        raise UserError(
            f"scenario {name!r} has {len(attributes)} attributes; "
            f"every scenario needs exactly {N_ATTRIBUTES}"
        )
    seen: set[str] = set()
    for a in attributes:
        if not isinstance(a.name, str) or not a.name.strip():
            raise UserError(f"scenario {name!r} has an attribute with no name")
        if a.name in seen:
            raise UserError(
                f"scenario {name!r} names attribute {a.name!r} twice; the {N_ATTRIBUTES} "
                "attribute names must be distinct"
            )
        seen.add(a.name)
        if not (math.isfinite(a.low) and math.isfinite(a.high)):
            raise UserError(
                f"scenario {name!r}, attribute {a.name!r}: range [{a.low}, {a.high}] is not "
                "finite; give two finite numbers min < max"
            )
        if a.low >= a.high:
            kind = "zero-width" if a.low == a.high else "reversed"
            raise UserError(
                f"scenario {name!r}, attribute {a.name!r}: range [{a.low:g}, {a.high:g}] is "
                f"{kind}; it must be [min, max] with min < max"
            )


def load_scenarios(path: str | Path, units: str | Path | None = None) -> dict[str, Scenario]:
    """Scenarios by short name, in file order, from a .json (this project's layout) or a .csv
    (the release's scenarios.csv, with units from `units` = candidate_scenarios.json)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        if units is not None:
            raise UserError(
                f"{path} is a JSON scenarios file, which carries its own units; "
                "--units applies to a scenarios.csv only"
            )
        return read_scenarios_json(path)
    if suffix == ".csv":
        scenarios = read_scenarios_csv(path)
        if units is not None:
            scenarios = join_units(scenarios, read_scenarios_json(Path(units)), path, units)
        return scenarios
    raise UserError(
        f"{path}: unknown scenarios file type {suffix or '(none)'!r}; give a .json "
        "(candidate_scenarios.json layout) or a .csv (scenarios.csv layout)"
    )


def _number(value: Any, where: str) -> float:
    """A finite float from a JSON number or a CSV cell, or a UserError saying `where`."""
    if isinstance(value, bool):
        raise UserError(f"{where} is {value!r}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where} is {value!r}, not a number") from None
    if not math.isfinite(number):
        raise UserError(f"{where} is {value!r}, not a finite number")
    return number


def read_scenarios_json(path: str | Path) -> dict[str, Scenario]:
    """This project's layout: a JSON list of {short_name, question, attributes}."""
    path = Path(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, list):
        raise UserError(f"{path} must hold a JSON list of scenarios, not a {type(data).__name__}")
    scenarios: dict[str, Scenario] = {}
    for index, entry in enumerate(data):
        where = f"{path} scenario {index}"
        if not isinstance(entry, dict):
            raise UserError(f"{where} is a {type(entry).__name__}, not an object")
        missing = [k for k in ("short_name", "question", "attributes") if k not in entry]
        if missing:
            raise UserError(f"{where} has no {', '.join(missing)}")
        name = entry["short_name"]
        if not isinstance(name, str):
            raise UserError(f"{where}: short_name must be a string, not {name!r}")
        where = f"{path} scenario {name!r}"
        if not isinstance(entry["question"], str):
            raise UserError(f"{where}: question must be a string")
        raw = entry["attributes"]
        if not isinstance(raw, list):
            raise UserError(f"{where}: attributes must be a list of {N_ATTRIBUTES} objects")
        attributes = []
        for k, item in enumerate(raw):
            if not isinstance(item, dict) or "name" not in item or "range" not in item:
                raise UserError(f"{where}, attribute {k}: needs a name and a range [min, max]")
            span = item["range"]
            if not isinstance(span, list) or len(span) != 2:
                raise UserError(
                    f"{where}, attribute {item['name']!r}: range must be [min, max], not {span!r}"
                )
            units = item.get("units")
            if units is not None and not isinstance(units, str):
                raise UserError(f"{where}, attribute {item['name']!r}: units must be a string")
            low = _number(span[0], f"{where}, attribute {item['name']!r}: range min")
            high = _number(span[1], f"{where}, attribute {item['name']!r}: range max")
            attributes.append(Attribute(str(item["name"]), low, high, units))
        _add(scenarios, path, _made(path, name, entry["question"], attributes))
    return scenarios


def _made(path: Path, name: str, question: str, attributes: list[Attribute]) -> Scenario:
    """A Scenario, its validation error prefixed with the file it came from."""
    try:
        return Scenario(name, question, tuple(attributes))
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def _add(scenarios: dict[str, Scenario], path: Path, scenario: Scenario) -> None:
    if scenario.short_name in scenarios:
        raise UserError(
            f"{path}: scenario {scenario.short_name!r} occurs twice; short names must be unique"
        )
    scenarios[scenario.short_name] = scenario


def read_scenarios_csv(path: str | Path) -> dict[str, Scenario]:
    """The release's scenarios.csv (no units)."""
    path = Path(path)
    rows = read_csv_rows(path, CSV_COLUMNS, "a scenarios.csv needs " + ",".join(CSV_COLUMNS))
    scenarios: dict[str, Scenario] = {}
    for number, row in enumerate(rows, start=1):
        name = row["scenario"] or ""
        attributes = []
        for i in range(1, N_ATTRIBUTES + 1):
            cells = (f"attr{i}_min", f"attr{i}_max")
            low, high = (
                _number(row[c], f"{path} row {number} (scenario {name!r}): column {c}")
                for c in cells
            )
            attributes.append(Attribute(row[f"attr{i}"] or "", low, high))
        _add(scenarios, path, _made(path, name, row["question"] or "", attributes))
    return scenarios


def join_units(
    scenarios: dict[str, Scenario],
    candidates: dict[str, Scenario],
    path: str | Path,
    units_path: str | Path,
) -> dict[str, Scenario]:
    """`scenarios` (from scenarios.csv) with each attribute's units taken from the candidate of
    the same short name; a row that is not that candidate (other attribute names or ranges, a
    question not ending with the candidate's) is refused."""
    joined: dict[str, Scenario] = {}
    for name, scenario in scenarios.items():
        where = f"{path}: scenario {name!r}"
        candidate = candidates.get(name)
        if candidate is None:
            raise UserError(f"{where} is not in {units_path}, so its units are unknown")
        if scenario.names != candidate.names:
            raise UserError(
                f"{where} has attributes {', '.join(scenario.names)} but {units_path} has "
                f"{', '.join(candidate.names)}"
            )
        for mine, theirs in zip(scenario.attributes, candidate.attributes, strict=True):
            if (mine.low, mine.high) != (theirs.low, theirs.high):
                raise UserError(
                    f"{where}, attribute {mine.name!r}: range [{mine.low:g}, {mine.high:g}] "
                    f"but {units_path} says [{theirs.low:g}, {theirs.high:g}]"
                )
        if not scenario.question.endswith(candidate.question):
            raise UserError(
                f"{where}: question {scenario.question!r} does not end with {units_path}'s "
                f"{candidate.question!r}"
            )
        attributes = tuple(
            Attribute(a.name, a.low, a.high, c.units)
            for a, c in zip(scenario.attributes, candidate.attributes, strict=True)
        )
        joined[name] = Scenario(name, scenario.question, attributes)
    return joined


def write_scenarios_json(path: str | Path, scenarios: Iterable[Scenario]) -> Path:
    """Save scenarios in this project's layout (atomically)."""
    from reasonlens.runs.files import atomic_write

    text = json.dumps([s.to_dict() for s in scenarios], indent=1, ensure_ascii=False) + "\n"
    atomic_write(path, text)
    return Path(path)


def utility(scenario: Scenario, weights: Sequence[float], values: Sequence[float]) -> float:
    """U = sum_i w_i (x_i - min_i) / (max_i - min_i), summed in attribute order."""
    total = 0.0
    for w, x, attr in zip(weights, values, scenario.attributes, strict=True):
        total += w * ((x - attr.low) / attr.span)
    return total


def target_choice(
    scenario: Scenario, weights: Sequence[float], a: Sequence[float], b: Sequence[float]
) -> str:
    """ "A" iff U_A > U_B under `weights`, else "B" (ties go to B)."""
    return "A" if utility(scenario, weights, a) > utility(scenario, weights, b) else "B"
