"""The preferences study's training files behind the task interface.

A record is one chat example, already rendered with the model's template (the study writes
its data for one model; see :func:`~reasonlens.tasks.preferences.trials.render`)::

    {"task": "preferences", "kind": "decision" | "report", "scenario": "green_tea",
     "names": [five attribute names], "a": [...], "b": [...],
     "prompt": "<rendered system + user text, the assistant's turn opened>",
     "completion": "A"}

A decision's completion is the target's letter; a report's is the JSON object of the target
weights. Training learns the completion and the end token only (``reasonlens.train.data``
labels the tokens from ``len(prompt)`` on). :meth:`PreferencesTask.read` refuses a record
whose gold completion is not one the task's own parsers accept: training on it would teach a
reply that is scored as invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonlens.errors import UserError, check_unicode
from reasonlens.jsonl import parse_jsonl
from reasonlens.tasks.base import Breakdown, GoldError, Task, TaskItem
from reasonlens.tasks.preferences.files import read_text
from reasonlens.tasks.preferences.replies import parse_choice, parse_report

TASK = "preferences"
KINDS = ("decision", "report")


def record(kind: str, scenario: str, names, a, b, prompt: str, completion: str) -> dict[str, Any]:
    """One training record (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return {
        "task": TASK,
        "kind": kind,
        "scenario": scenario,
        "names": list(names),
        "a": list(a),
        "b": list(b),
        "prompt": prompt,
        "completion": completion,
    }


class PreferencesTask(Task):
    """Decisions between two options ("A"/"B") and reports of the five weights (JSON)."""

    name = TASK
    title = "Preferences"
    description = "choose between two options by five attributes; report the weights as JSON"
    metrics = ("valid", "correct")
    breakdowns = {"by_kind": Breakdown(lambda labels: labels["kind"])}
    noun = "trials"
    notes = (
        'valid: the reply is exactly "A" or "B" (a decision) or a JSON object of the five '
        "weights (a report); correct: the decision equals the target's",
    )
    expected = (
        "expected preferences JSONL: one JSON object per line with task 'preferences', kind, "
        "scenario, names, prompt and completion (as written by `reasonlens study preferences`)"
    )
    stop_rule = "EOS or the limit"

    def recognizes(self, record: object) -> bool:
        return isinstance(record, dict) and record.get("task") == TASK

    def read(self, path: str | Path) -> list[TaskItem]:
        records = parse_jsonl(read_text(Path(path)), path, self.expected)
        return [self.item_from_record(data, f"{path}:{n}") for n, data in records]

    def item_from_record(self, data: object, where: str = "record") -> TaskItem:
        if not self.recognizes(data):
            raise UserError(f"{where}: not a preferences record; {self.expected}")
        assert isinstance(data, dict)
        for key in ("kind", "scenario", "prompt", "completion"):
            if not isinstance(data.get(key), str):
                raise UserError(f"{where}: {key!r} must be a string; {self.expected}")
            check_unicode(data[key], f"{where}: {key!r}")
        kind, completion = data["kind"], data["completion"]
        names = data.get("names")
        if kind not in KINDS:
            raise UserError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise UserError(f"{where}: 'names' must be the list of the attribute names")
        if kind == "decision" and parse_choice(completion) != completion:
            raise GoldError(f"{where}: the gold decision {completion!r} is not exactly A or B")
        if kind == "report" and parse_report(completion, names) is None:
            raise GoldError(
                f"{where}: the gold report {completion!r} is not a JSON object of the "
                f"weights of {', '.join(names)}"
            )
        return TaskItem(
            id=f"{data['scenario']}:{where.rsplit(':', 1)[-1]}",
            prompt=data["prompt"],
            completion=completion,
            labels={"kind": kind, "scenario": data["scenario"], "names": tuple(names)},
            group=kind,
            source=data,
        )

    def score(self, item: TaskItem, completion: str) -> dict[str, Any]:
        if item.labels["kind"] == "decision":
            choice = parse_choice(completion)
            return {"valid": choice is not None, "correct": choice == item.completion}
        reported = parse_report(completion, item.labels["names"])
        return {"valid": reported is not None, "correct": None}
