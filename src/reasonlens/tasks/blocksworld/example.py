"""One Blocksworld example: the problem, its plan, its text in one layout, and the JSON record.

JSON record keys (one record per JSONL line; key order is fixed so files are byte-stable):

- text fields. ``paper``: ``prompt`` (everything up to and including the ``Plan:`` line) and
  ``completion`` (the step lines, no trailing newline); ``text = prompt + completion``.
  ``seed``: ``instruction``, ``input``, ``output`` as in the public reproduction;
  ``text = input + "\\n\\n" + output``.
- structured fields: ``problem_id`` (content hash; duplicates share it), ``format``,
  ``split`` ("train"/"test"/null), ``level`` (steps/2, null if odd), ``n_steps``, ``n_blocks``,
  ``slots``, ``init`` and ``goal`` (one list per table slot, blocks **bottom to top**, ``[]`` for
  an empty slot, in the order the text shows them), ``plan`` (step strings such as
  ``"stack red on-top-of table"``), ``n_optimal_plans`` (exact count from the planner, null if
  unknown), ``spans`` (see :class:`~reasonlens.tasks.blocksworld.formats.Spans`, offsets into
  ``text``).

Reading is driven by the text: a record with only ``prompt``+``completion``, ``text``, or
``instruction``/``input``/``output`` is parsed; structured fields, when present, must agree with
the text (``init``/``goal`` also give the slot positions the seed text leaves out). ``spans`` and
``problem_id`` are always recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonlens.errors import UserError, check_unicode
from reasonlens.tasks.blocksworld.formats import (
    PAPER,
    PLAN_HEADER,
    RULES,
    SEED,
    SEED_INSTRUCTION,
    Rendered,
    Spans,
    check_format,
    parse_text,
    render,
    seed_fields,
)
from reasonlens.tasks.blocksworld.state import Action, Problem, State

#: A seed-layout record that gives no slot count has no table limit: the public
#: reproduction's generator puts any number of piles on the table, so such a record gets as
#: many slots as it has blocks (every block could stand alone) unless the reader says.
NO_TABLE_LIMIT = "as many table slots as blocks (no table limit)"


@dataclass(frozen=True)
class Example:
    """A problem, a plan for it, and that pair written in layout ``format``."""

    problem: Problem
    plan: tuple[Action, ...]
    format: str = PAPER
    n_optimal_plans: int | None = None
    split: str | None = None
    rule: str | None = None
    instruction: str | None = None
    rendered: Rendered = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_format(self.format)
        object.__setattr__(self, "plan", tuple(self.plan))
        if self.rule is None:
            object.__setattr__(self, "rule", RULES[self.format])
        if self.format == SEED and self.instruction is None:
            object.__setattr__(self, "instruction", SEED_INSTRUCTION)
        object.__setattr__(
            self, "rendered", render(self.problem, self.plan, self.format, self.rule)
        )

    @property
    def init(self) -> State:
        """Init piles, one per slot in the order shown, each bottom to top."""
        return self.problem.init

    @property
    def goal(self) -> State:
        """Goal piles, one per slot in the order shown, each bottom to top."""
        return self.problem.goal

    @property
    def slots(self) -> int:
        return self.problem.slots

    @property
    def n_blocks(self) -> int:
        return self.problem.n_blocks

    @property
    def problem_id(self) -> str:
        return self.problem.problem_id

    @property
    def n_steps(self) -> int:
        return len(self.plan)

    @property
    def prompt(self) -> str:
        """What the model sees before the plan: the text up to and including ``Plan:\\n``."""
        return self.rendered.prompt

    @property
    def completion(self) -> str:
        """The plan's step lines (no trailing newline)."""
        return self.rendered.completion

    @property
    def text(self) -> str:
        """``prompt + completion``; every span indexes this string."""
        return self.rendered.text

    @property
    def spans(self) -> Spans:
        return self.rendered.spans

    @property
    def level(self) -> int | None:
        """L1..L5 = 2..10 steps; None for an odd number of steps."""
        return None if len(self.plan) % 2 else len(self.plan) // 2

    def to_record(self) -> dict[str, Any]:
        """The JSON record (see the module docstring for the keys)."""
        rec: dict[str, Any] = {}
        if self.format == PAPER:
            rec["prompt"] = self.prompt
            rec["completion"] = self.completion
        else:
            rec["instruction"] = self.instruction
            rec["input"], rec["output"] = seed_fields(self.rendered)
        rec.update(
            problem_id=self.problem_id,
            format=self.format,
            split=self.split,
            level=self.level,
            n_steps=self.n_steps,
            n_blocks=self.n_blocks,
            slots=self.slots,
            init=[list(p) for p in self.init],
            goal=[list(p) for p in self.goal],
            plan=[str(a) for a in self.plan],
            n_optimal_plans=self.n_optimal_plans,
            spans=self.spans.to_dict(),
        )
        if self.rule != RULES[self.format]:
            rec["rule"] = self.rule
        return rec

    def to_json(self) -> str:
        return json.dumps(self.to_record(), ensure_ascii=False)


def example_from_record(record: Any, *, slots: int | None = None) -> Example:
    """Read one JSON record in either layout; UserError (without location) if it is bad.

    ``slots`` is used only for a seed-layout record that carries no ``slots``/``init`` field;
    without it such a record has no table limit (:data:`NO_TABLE_LIMIT`).
    """
    if not isinstance(record, dict):
        raise UserError("a record must be a JSON object")
    fmt = record.get("format")
    if fmt is None:
        fmt = SEED if "input" in record or "output" in record else PAPER
    check_format(fmt)
    text = _record_text(record, fmt)
    parsed = parse_text(text, fmt)

    n_slots = _slots(record, parsed.init, parsed.goal, fmt, slots)
    init = _structured_state(record, "init", parsed.init, n_slots, fmt)
    goal = _structured_state(record, "goal", parsed.goal, n_slots, fmt)
    problem = Problem(init, goal)

    if "plan" in record and record["plan"] != [str(a) for a in parsed.plan]:
        raise UserError("field 'plan' does not match the plan in the text")
    n_opt = record.get("n_optimal_plans")
    if n_opt is not None and (not isinstance(n_opt, int) or isinstance(n_opt, bool) or n_opt < 0):
        raise UserError(f"field 'n_optimal_plans' must be a count, got {n_opt!r}")
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        raise UserError(f"field 'split' must be a string, got {split!r}")
    instruction = record.get("instruction") if fmt == SEED else None
    if instruction is not None:
        if not isinstance(instruction, str):
            raise UserError(f"field 'instruction' must be a string, got {instruction!r}")
        _check_unicode(instruction, "instruction")
    example = Example(problem, parsed.plan, fmt, n_opt, split, parsed.rule, instruction)

    for name in ("n_blocks", "n_steps", "level"):
        if name in record and record[name] != getattr(example, name):
            raise UserError(
                f"field {name!r} is {record[name]!r} but the text has {getattr(example, name)!r}"
            )
    if example.text != text:
        raise UserError("the text is not in the canonical layout (spacing or line breaks differ)")
    return example


def _record_text(record: dict[str, Any], fmt: str) -> str:
    def field_(name: str) -> str:
        value = record.get(name)
        if not isinstance(value, str):
            raise UserError(f"field {name!r} is missing or not a string")
        _check_unicode(value, name)
        return value.replace("\r\n", "\n")

    if fmt == SEED:
        return field_("input").rstrip() + "\n\n" + field_("output").rstrip()
    if "prompt" in record or "completion" in record:
        prompt, completion = field_("prompt"), field_("completion").rstrip()
        if not prompt.endswith(PLAN_HEADER + "\n"):
            raise UserError("field 'prompt' must end with the 'Plan:' line")
        text = prompt + completion
        if "text" in record and field_("text").rstrip() != text:
            raise UserError("field 'text' is not prompt + completion")
        return text
    if "text" in record:
        return field_("text").rstrip()
    raise UserError(
        "a record needs 'prompt' and 'completion', or 'text' (paper layout), "
        "or 'instruction', 'input' and 'output' (seed layout)"
    )


def _slots(record: dict[str, Any], init: State, goal: State, fmt: str, default: int | None) -> int:
    if fmt == PAPER:
        if len(init) != len(goal):
            raise UserError(
                f"the init state shows {len(init)} slots but the goal state shows {len(goal)}"
            )
        n = len(init)
    elif "slots" in record:
        n = record["slots"]
    elif isinstance(record.get("init"), list):
        n = len(record["init"])
    else:
        n = default if default is not None else max(1, sum(len(p) for p in init))
    if "slots" in record and record["slots"] != n:
        raise UserError(f"field 'slots' is {record['slots']!r} but the text shows {n} slots")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UserError(f"slots must be a positive integer, got {n!r}")
    return n


def _check_unicode(value: str, name: str) -> None:
    check_unicode(value, f"field {name!r}")


def _structured_state(
    record: dict[str, Any], name: str, shown: State, slots: int, fmt: str
) -> State:
    value = record.get(name)
    if value is None:
        piles = [p for p in shown if p]
        if len(piles) > slots:
            raise UserError(f"the {name} state has {len(piles)} piles but only {slots} slots")
        return shown + ((),) * (slots - len(shown))
    if not (
        isinstance(value, list)
        and all(isinstance(p, list) and all(isinstance(b, str) for b in p) for p in value)
    ):
        raise UserError(f"field {name!r} must be a list of piles (lists of colour names)")
    state = tuple(tuple(p) for p in value)
    if len(state) != slots:
        raise UserError(f"field {name!r} has {len(state)} slots, expected {slots}")
    same = state == shown if fmt == PAPER else [p for p in state if p] == list(shown)
    if not same:
        raise UserError(f"field {name!r} does not match the {name} state in the text")
    return state


def make_example(
    problem: Problem,
    plan: Sequence[Action],
    fmt: str = PAPER,
    *,
    n_optimal_plans: int | None = None,
    split: str | None = None,
) -> Example:
    """An Example in layout ``fmt`` with that layout's own rule text."""
    return Example(problem, tuple(plan), fmt, n_optimal_plans, split)
