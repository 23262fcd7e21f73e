"""The backtracking traces behind the task interface: files, record recognition, verdicts.

A record is one maze and its search trace (see :func:`.traces.to_record`); training learns the
completion (the thinking text and the path). :meth:`BacktrackingTask.read` replays every gold
completion with the checker and refuses one that is not a clean, solved search whose spans are
the checker's own: training on it would teach, or label, the wrong thing. A generated
completion is scored by the checker: labelable, solved, error-free, and its backtracks with the
number that were needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError, check_unicode
from reasonlens.jsonl import iter_jsonl
from reasonlens.tasks.backtracking.checker import CheckedTrace, check_trace
from reasonlens.tasks.backtracking.puzzle import Maze
from reasonlens.tasks.backtracking.traces import BACKTRACKING, TASK
from reasonlens.tasks.base import Breakdown, GoldError, Task, TaskItem

_ANSWER_LINE = re.compile(r"</think>\s*Path:[^\n]*\n")


def _rooms_key(labels) -> str:
    return str(labels["n_rooms"])


class BacktrackingTask(Task):
    """Find a path through a maze by depth-first search written as thinking text."""

    name = TASK
    title = "Backtracking search"
    description = "maze search traces with exact backtracking labels (dead ends, backing out)"
    metrics = ("labelable", "solved", "error_free")
    headers = {"error_free": "no errors"}
    breakdowns = {"by_rooms": Breakdown(_rooms_key, "{} rooms")}
    noun = "mazes"
    notes = (
        "labelable: the checker could replay the search; solved: the final path goes from the "
        "start to the goal; no errors: every listed exit and move was right",
    )
    expected = (
        "expected backtracking JSONL: one JSON object per line with task 'backtracking', id, "
        "maze, prompt, completion and spans (as written by reasonlens.tasks.backtracking)"
    )
    stop_rule = "EOS, the end of the 'Path:' line after </think>, or the limit"

    def recognizes(self, record: object) -> bool:
        return isinstance(record, dict) and record.get("task") == TASK

    def read(self, path: str | Path) -> list[TaskItem]:
        path = Path(path)
        items = [
            self.item_from_record(data, f"{path}:{n}")
            for n, data in iter_jsonl(path, self.expected)
        ]
        if not items:
            raise UserError(f"{path}: no records; {self.expected}")
        return items

    def item_from_record(self, data: object, where: str = "record") -> TaskItem:
        """A record as a TaskItem (spans ``backtracking`` into ``prompt + completion``);
        a record the checker does not read back exactly is a GoldError naming ``where``."""
        if not self.recognizes(data):
            raise UserError(f"{where}: not a backtracking record; {self.expected}")
        assert isinstance(data, dict)
        for key in ("id", "prompt", "completion"):
            if not isinstance(data.get(key), str):
                raise UserError(f"{where}: {key!r} must be a string; {self.expected}")
            check_unicode(data[key], f"{where}: {key!r}")
        try:
            maze = Maze.from_dict(data.get("maze"))
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        checked = check_trace(maze, data["completion"])
        fault = _gold_fault(checked)
        if fault:
            raise GoldError(f"{where}: the gold completion {fault}")
        spans = data.get("spans")
        ours = [b.to_dict() for b in checked.backtracks]
        if spans != ours:
            raise GoldError(
                f"{where}: 'spans' are not the backtracks the checker reads in the completion "
                f"({len(ours)} backtracks at {[(s['start'], s['end']) for s in ours]})"
            )
        shift = len(data["prompt"])
        return TaskItem(
            id=data["id"],
            prompt=data["prompt"],
            completion=data["completion"],
            spans={BACKTRACKING: tuple((s + shift, e + shift) for s, e in checked.spans())},
            labels={
                "n_rooms": len(maze.rooms),
                "n_backtracks": checked.n_backtracks,
                "path_length": len(checked.answer or ()) - 1,
            },
            group=f"{len(maze.rooms)} rooms",
            split=str(data.get("split") or ""),
            source=maze,
        )

    def maze(self, item: TaskItem) -> Maze:
        if not isinstance(item.source, Maze):
            raise TypeError("backtracking items carry their Maze as source")
        return item.source

    def check(self, item: TaskItem, completion: str) -> CheckedTrace:
        return check_trace(self.maze(item), completion)

    def score(self, item: TaskItem, completion: str) -> dict[str, Any]:
        checked = self.check(item, completion)
        out = checked.to_dict()
        out["error_free"] = checked.labelable and not checked.errors
        return out

    def stop(self, text: str) -> bool:
        return _ANSWER_LINE.search(text) is not None

    def cut(self, text: str) -> str:
        m = _ANSWER_LINE.search(text)
        return text[: m.end()] if m else text


def _gold_fault(checked: CheckedTrace) -> str | None:
    if not checked.labelable:
        return f"cannot be labelled: {checked.reason}"
    if checked.truncated:
        return "stops inside a sentence"
    if checked.errors:
        return f"has errors: {checked.errors[0]}"
    if not checked.solved:
        return "does not end with a path from the start to the goal"
    return None
