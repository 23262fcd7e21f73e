"""The two text layouts of a Blocksworld example, written and read back, with exact spans.

``paper`` is the paper's Figure 2 layout: no blank lines, one line per table slot with
``<empty>`` for an empty one, its rule text. ``seed`` is the layout of the public reproduction's
JSONL files: blank lines between sections, no ``<empty>`` lines, its own rule text. Both write
piles top first (``<top on ... on bottom>``) and steps as ``step k: pick-up X`` /
``step k: stack X on-top-of Y``.

Rendering returns every chunk's character span, so analyses never re-parse text. Parsing is
a strict line grammar: what it accepts renders back to the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reasonlens.errors import UserError, one_of
from reasonlens.tasks.blocksworld.state import Action, Pile, Problem, State, check_color
from reasonlens.tasks.blocksworld.state import parse_action as _parse_action

PAPER = "paper"
SEED = "seed"
FORMATS = (PAPER, SEED)

PAPER_RULE = (
    "You can pick-up color1. stack color1 on-top-of color2. All the blocks are on the table. "
    "There is no order in the piles. Please output the optimal plan."
)
SEED_RULE = (
    "You can pick-up color1. You can stack color1 on-top-of color2. "
    "You can stack color1 on-top-of table."
)
SEED_INSTRUCTION = (
    "Given the rules, initial state, and goal state, generate an optimal plan to transform "
    "the initial state into the goal state."
)
RULES = {PAPER: PAPER_RULE, SEED: SEED_RULE}

RULE_HEADER = "Rule:"
INIT_HEADER = "Init state:"
GOAL_HEADER = "Goal state:"
PLAN_HEADER = "Plan:"
EMPTY = "<empty>"

Span = tuple[int, int]


def check_format(fmt: str) -> str:
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise one_of("format", fmt if isinstance(fmt, str) else repr(fmt), FORMATS)
    return fmt


@dataclass(frozen=True)
class StepSpans:
    """Spans of one plan step: the whole line, the text before the blank, the answer word."""

    step: Span
    action_prompt: Span
    answer: Span

    def to_dict(self) -> dict[str, list[int]]:
        return {
            "step": list(self.step),
            "action_prompt": list(self.action_prompt),
            "answer": list(self.answer),
        }


@dataclass(frozen=True)
class Spans:
    """Half-open [start, end) character offsets into an example's ``text``.

    ``init_state``/``goal_state`` cover all pile lines (newlines inside included);
    ``init_slots``/``goal_slots`` give one span per pile line shown (the seed layout shows no
    empty slots). ``rule`` is the rule sentence, without its ``Rule:`` header line.
    """

    rule_header: Span
    rule: Span
    init_header: Span
    init_state: Span
    init_slots: tuple[Span, ...]
    goal_header: Span
    goal_state: Span
    goal_slots: tuple[Span, ...]
    plan_header: Span
    steps: tuple[StepSpans, ...]

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in ("rule_header", "rule", "init_header", "init_state"):
            out[name] = list(getattr(self, name))
        out["init_slots"] = [list(s) for s in self.init_slots]
        for name in ("goal_header", "goal_state"):
            out[name] = list(getattr(self, name))
        out["goal_slots"] = [list(s) for s in self.goal_slots]
        out["plan_header"] = list(self.plan_header)
        out["steps"] = [s.to_dict() for s in self.steps]
        return out


@dataclass(frozen=True)
class Rendered:
    """An example's text, split where the plan starts, and its spans."""

    prompt: str
    completion: str
    spans: Spans

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def pile_text(pile: Pile) -> str:
    """``<top on ... on bottom>`` for a pile stored bottom to top; ``<empty>`` for ()."""
    return "<" + " on ".join(reversed(pile)) + ">" if pile else EMPTY


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0

    def add(self, s: str) -> Span:
        start = self.pos
        self.parts.append(s)
        self.pos += len(s)
        return (start, self.pos)

    def text(self) -> str:
        return "".join(self.parts)


def render(problem: Problem, plan: Sequence[Action], fmt: str, rule: str | None = None) -> Rendered:
    """Write a problem and plan in layout ``fmt``; ``rule`` defaults to the layout's own."""
    check_format(fmt)
    rule = RULES[fmt] if rule is None else rule
    gap = "\n" if fmt == PAPER else "\n\n"
    w = _Writer()

    def state(state: State) -> tuple[Span, tuple[Span, ...]]:
        lines = [pile_text(p) for p in state if p or fmt == PAPER]
        spans = []
        for i, line in enumerate(lines):
            if i:
                w.add("\n")
            spans.append(w.add(line))
        return (spans[0][0], spans[-1][1]), tuple(spans)

    rule_header = w.add(RULE_HEADER)
    w.add("\n")
    rule_span = w.add(rule)
    w.add(gap)
    init_header = w.add(INIT_HEADER)
    w.add("\n")
    init_state, init_slots = state(problem.init)
    w.add(gap)
    goal_header = w.add(GOAL_HEADER)
    w.add("\n")
    goal_state, goal_slots = state(problem.goal)
    w.add(gap)
    plan_header = w.add(PLAN_HEADER)
    w.add("\n")
    prompt_len = w.pos
    steps = []
    for k, action in enumerate(plan, start=1):
        if k > 1:
            w.add("\n")
        start = w.pos
        w.add(f"step {k}: ")
        action_prompt = w.add(action.prompt)
        w.add(" ")
        answer = w.add(action.answer)
        steps.append(StepSpans((start, w.pos), action_prompt, answer))
    text = w.text()
    spans = Spans(
        rule_header,
        rule_span,
        init_header,
        init_state,
        init_slots,
        goal_header,
        goal_state,
        goal_slots,
        plan_header,
        tuple(steps),
    )
    return Rendered(text[:prompt_len], text[prompt_len:], spans)


def seed_fields(rendered: Rendered) -> tuple[str, str]:
    """The seed layout's ``input`` and ``output`` fields (text = input + blank line + output)."""
    cut = rendered.spans.plan_header[0]
    return rendered.text[: cut - 2], rendered.text[cut:]


@dataclass(frozen=True)
class Parsed:
    """What a text says: the rule, the piles shown (bottom to top) and the plan."""

    rule: str
    init: State
    goal: State
    plan: tuple[Action, ...]


_STEP_RE = re.compile(r"step ([0-9]+): (.*)")


def parse_pile(line: str, where: str) -> Pile:
    """One pile line (``<red on blue>`` or ``<empty>``) as a bottom-to-top tuple."""
    if line == EMPTY:
        return ()
    inner = line[1:-1]
    if not (line.startswith("<") and line.endswith(">")) or "<" in inner or ">" in inner:
        raise UserError(f"{where}: {line!r} is not a pile like <red on blue> (unbalanced '<')")
    if not inner:
        raise UserError(f"{where}: empty pile '<>' (write <empty>)")
    return tuple(reversed([check_color(w, where) for w in inner.split(" on ")]))


def parse_steps(lines: Sequence[str], where: str = "plan") -> tuple[Action, ...]:
    """``step k: ...`` lines, numbered 1, 2, 3, ... in order."""
    plan = []
    for k, line in enumerate(lines, start=1):
        m = _STEP_RE.fullmatch(line)
        try:
            if not m:
                raise ValueError("expected 'step k: pick-up X' or 'step k: stack X on-top-of Y'")
            if int(m.group(1)) != k:
                raise ValueError(f"expected step {k} here")
            plan.append(_parse_action(m.group(2)))
        except ValueError as err:
            raise UserError(f"{where} line {k} {line!r}: {err}") from None
    return tuple(plan)


def parse_plan(text: str) -> tuple[Action, ...]:
    """A plan as a model might write it: optional ``Plan:`` line, then step lines.

    Blank lines and surrounding spaces are ignored; anything else that is not a step line,
    or steps numbered out of order, raise a UserError saying which line.
    """
    # lines end at "\n" only, as everywhere in reasonlens (not at U+2028, U+0085, ...)
    lines = [ln.strip() for ln in text.strip().split("\n") if ln.strip()]
    if lines and lines[0] == PLAN_HEADER:
        lines = lines[1:]
    return parse_steps(lines)


def parse_text(text: str, fmt: str) -> Parsed:
    """Read a whole example text (prompt + plan) in layout ``fmt``; UserError if it is not one.

    The seed layout's states list only non-empty piles; the paper layout's list every slot.
    """
    check_format(fmt)
    text = text.replace("\r\n", "\n").rstrip()
    lines = text.split("\n")
    headers = [RULE_HEADER, INIT_HEADER, GOAL_HEADER, PLAN_HEADER]
    at, pos = [], 0
    for header in headers:
        try:
            pos = lines.index(header, pos)
        except ValueError:
            raise UserError(f"no {header!r} line in the {fmt} layout") from None
        at.append(pos)
        pos += 1
    if at[0] != 0:
        raise UserError(f"the text must start with {RULE_HEADER!r}")
    sections = [lines[at[i] + 1 : at[i + 1]] for i in range(3)]
    if fmt == SEED:
        for name, sec in zip(headers[1:], sections, strict=True):
            if not sec or sec[-1] != "":
                raise UserError(f"the seed layout needs a blank line before {name!r}")
        sections = [sec[:-1] for sec in sections]
    rule_lines, init_lines, goal_lines = sections
    if not rule_lines or any(not ln.strip() for ln in rule_lines):
        raise UserError("the rule must be one or more non-blank lines after 'Rule:'")
    init = _parse_state(init_lines, "init state", fmt)
    goal = _parse_state(goal_lines, "goal state", fmt)
    plan = parse_steps(lines[at[3] + 1 :])
    return Parsed("\n".join(rule_lines), init, goal, plan)


def _parse_state(lines: list[str], where: str, fmt: str) -> State:
    if not lines:
        raise UserError(f"the {where} has no pile lines")
    piles = tuple(parse_pile(ln, f"{where} line {i}") for i, ln in enumerate(lines, start=1))
    if fmt == SEED and any(not p for p in piles):
        raise UserError(f"the seed layout writes no {EMPTY} lines ({where})")
    return piles
