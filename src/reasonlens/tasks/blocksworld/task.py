"""Blocksworld behind the task interface: files, record recognition, plan verdicts, stop rule.

The items are :class:`~reasonlens.tasks.blocksworld.Example` objects, kept as each
TaskItem's ``source``: a verdict needs the problem (its slots included, which the seed layout's
text does not show), not just the text. The model sees ``example.prompt`` as plain text (it ends
with ``Plan:\\n``) and should continue with ``example.completion``; a generated plan is cut
where it ends (:mod:`.plan_text`), then parsed, run, and compared with the optimal planner and
the gold plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reasonlens.tasks.base import Breakdown, GoldError, Task, TaskItem
from reasonlens.tasks.blocksworld.example import Example, example_from_record
from reasonlens.tasks.blocksworld.files import read_numbered
from reasonlens.tasks.blocksworld.plan_text import cut_plan, plan_finished
from reasonlens.tasks.blocksworld.state import run_plan
from reasonlens.tasks.blocksworld.validate import PlanCheck, check_plan

#: Keys that only a Blocksworld record has: such a record is read (and checked) as Blocksworld.
RECORD_KEYS = ("format", "problem_id", "input", "output", "instruction")


def level_key(labels: Mapping[str, Any]) -> str:
    """``"L3"`` for a 6-step plan; ``"odd"`` for an odd number of steps (no level)."""
    return f"L{labels['level']}" if labels["level"] else "odd"


def blocks_key(labels: Mapping[str, Any]) -> str:
    return str(labels["n_blocks"])


def gold_fault(example: Example) -> str | None:
    """Why an example's own (gold) plan cannot be gold: an illegal step, or a goal it does not
    reach; None when it is legal and reaches the goal. (Optimality is the validator's.)"""
    world, bad_step, reason = run_plan(example.problem, example.plan)
    if bad_step is not None:
        return f"step {bad_step} is illegal: {reason}"
    if not world.satisfies(example.goal):
        return "does not reach the goal"
    return None


def plan_verdicts(example: Example, plan_text: str) -> PlanCheck:
    """The validator's verdict on a generated plan; an empty output counts as unparsed."""
    check = check_plan(example.problem, plan_text, reference=example.plan)
    if check.exact_match is None:  # not parsed: it cannot equal the gold plan
        check.exact_match = False
    if not plan_text.strip():
        check.parsed, check.parse_error, check.n_steps = False, "the output has no plan", None
        check.legal = check.goal_reached = check.optimal = check.exact_match = False
    return check


class BlocksworldTask(Task):
    """Blocksworld planning: write the plan that turns the init state into the goal."""

    name = "blocksworld"
    title = "Planning"
    description = "Blocksworld planning: a plan of pick-up/stack steps from init to goal"
    metrics = ("parsed", "legal", "goal_reached", "optimal", "exact_match")
    headers = {"goal_reached": "goal", "exact_match": "exact"}
    breakdowns = {
        "by_level": Breakdown(level_key),
        "by_blocks": Breakdown(blocks_key, "{} blocks"),
    }
    noun = "problems"
    notes = (
        "generation verdicts (greedy, no chat template): parsed, legal, goal reached, optimal "
        "(as short as the planner's plan), exact (equal to the gold plan)",
        "S_step: blanks right with the gold history; S_plan: plans with every blank right",
    )
    expected = (
        "expected Blocksworld JSONL: one JSON object per line with 'prompt' and 'completion' "
        "(as written by `reasonlens data blocksworld`)"
    )
    stop_rule = "EOS, the first line after the plan that is not a step line, or the limit"

    def read(self, path: str | Path) -> list[TaskItem]:
        """Every example of a Blocksworld JSONL file; a line that does not parse, or whose gold
        plan is illegal or misses the goal, raises a UserError naming ``file:line`` (a model
        scored or trained against a wrong gold plan learns and measures the wrong thing)."""
        items = []
        for line, example in read_numbered(path):
            fault = gold_fault(example)
            if fault is not None:
                raise GoldError(
                    f"{path}:{line}: the gold plan {fault}; gold plans must be legal and reach "
                    f"the goal (`reasonlens validate {path}` lists every fault)"
                )
            items.append(self.item(example))
        return items

    def recognizes(self, record: object) -> bool:
        return isinstance(record, dict) and any(k in record for k in RECORD_KEYS)

    def item(self, obj: Any) -> TaskItem:
        """An Example as a TaskItem (spans ``answers`` and ``steps``; labels ``level``,
        ``n_blocks``, ``n_steps``; group ``"L3/4"``); a TaskItem as is."""
        if isinstance(obj, TaskItem):
            return obj
        if not isinstance(obj, Example):
            raise TypeError(f"blocksworld items are Examples, got {type(obj).__name__}")
        labels = {"level": obj.level, "n_blocks": obj.n_blocks, "n_steps": obj.n_steps}
        return TaskItem(
            id=obj.problem_id,
            prompt=obj.prompt,
            completion=obj.completion,
            spans={
                "answers": tuple(s.answer for s in obj.spans.steps),
                "steps": tuple(s.step for s in obj.spans.steps),
            },
            labels=labels,
            group=f"{level_key(labels)}/{blocks_key(labels)}",
            split=obj.split or "",
            source=obj,
        )

    def example(self, item: TaskItem) -> Example:
        """The Example behind ``item`` (re-read from its text if it has none: paper layout)."""
        if isinstance(item.source, Example):
            return item.source
        return example_from_record({"prompt": item.prompt, "completion": item.completion})

    def score(self, item: TaskItem, completion: str) -> dict[str, Any]:
        return plan_verdicts(self.example(item), completion).to_dict()

    def stop(self, text: str) -> bool:
        return plan_finished(text)

    def cut(self, text: str) -> str:
        return cut_plan(text)
