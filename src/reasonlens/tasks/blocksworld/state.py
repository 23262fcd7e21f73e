"""Blocksworld states, actions and the exact rules of legality.

A *pile* is a tuple of block colours listed **bottom to top**. A *state* as written in a prompt
is a tuple with one entry per table slot, ``()`` for an empty slot; slot order is presentation
only ("there is no order in the piles"), so two states are equal when their non-empty piles are
equal as multisets (:func:`canonical`).

The two actions follow the paper: ``pick-up X`` takes a clear block into the (empty) hand;
``stack X on-top-of Y`` puts the held block ``X`` on a clear block ``Y`` or, with ``Y = table``,
into a free slot. Each is one step, so moving one block costs two steps.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reasonlens.errors import UserError
from reasonlens.tasks.blocksworld.colors import TABLE

Pile = tuple[str, ...]
State = tuple[Pile, ...]

PICK_UP = "pick-up"
STACK = "stack"

_COLOR_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESERVED = frozenset({TABLE, "empty", "on"})


def check_color(word: str, where: str) -> str:
    """Return ``word`` if it can name a block, else raise a UserError saying why."""
    if not _COLOR_RE.fullmatch(word):
        raise UserError(f"{where}: {word!r} is not a colour name (letters, digits, '_')")
    if word in _RESERVED:
        raise UserError(f"{where}: {word!r} is a reserved word and cannot name a block")
    return word


def canonical(state: Iterable[Pile]) -> State:
    """The slot-order-free form of a state: its non-empty piles, sorted."""
    return tuple(sorted(tuple(p) for p in state if p))


@dataclass(frozen=True, slots=True)
class Action:
    """One plan step: ``pick-up block`` or ``stack block on-top-of target``."""

    kind: str
    block: str
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (PICK_UP, STACK):
            raise ValueError(f"unknown action kind {self.kind!r}")
        if (self.kind == STACK) != (self.target is not None):
            raise ValueError("a stack action needs a target; a pick-up has none")

    @property
    def prompt(self) -> str:
        """What precedes the blank in the paper's fill-in-the-blank layout."""
        return PICK_UP if self.kind == PICK_UP else f"{STACK} {self.block} on-top-of"

    @property
    def answer(self) -> str:
        """The one word a model must fill in: the colour picked up, or the destination."""
        return self.block if self.kind == PICK_UP else str(self.target)

    def __str__(self) -> str:
        return f"{self.prompt} {self.answer}"


def pick_up(block: str) -> Action:
    return Action(PICK_UP, block)


def stack(block: str, target: str) -> Action:
    return Action(STACK, block, target)


_ACTION_RES = (
    re.compile(r"pick-up (\S+)"),
    re.compile(r"stack (\S+) on-top-of (\S+)"),
)


def parse_action(text: str) -> Action:
    """Parse ``pick-up X`` or ``stack X on-top-of Y`` (no step prefix); ValueError otherwise."""
    m = _ACTION_RES[0].fullmatch(text)
    if m:
        return pick_up(m.group(1))
    m = _ACTION_RES[1].fullmatch(text)
    if m:
        return stack(m.group(1), m.group(2))
    raise ValueError(f"{text!r} is not 'pick-up X' or 'stack X on-top-of Y'")


@dataclass(frozen=True)
class Problem:
    """An initial and a goal arrangement of the same blocks on ``slots`` table slots.

    ``init`` and ``goal`` have exactly ``slots`` entries each (``()`` = empty slot), in the
    order the prompt shows them. Construction checks every rule and raises a UserError
    naming the fault (a colour twice, a goal block missing from the init, too many piles).
    """

    init: State
    goal: State

    def __post_init__(self) -> None:
        if len(self.init) != len(self.goal):
            raise UserError(
                f"the init state has {len(self.init)} slots but the goal state has {len(self.goal)}"
            )
        if not self.init:
            raise UserError("a problem needs at least one table slot")
        init_blocks = _check_state(self.init, "init state")
        goal_blocks = _check_state(self.goal, "goal state")
        in_init, in_goal = frozenset(init_blocks), frozenset(goal_blocks)
        extra = [b for b in goal_blocks if b not in in_init]
        if extra:
            raise UserError(f"the goal state names {extra[0]!r}, which is not in the init state")
        missing = [b for b in init_blocks if b not in in_goal]
        if missing:
            raise UserError(f"the goal state leaves out {missing[0]!r}")

    @property
    def slots(self) -> int:
        return len(self.init)

    @property
    def blocks(self) -> tuple[str, ...]:
        """Block colours in the order they first appear in the init state."""
        return tuple(b for pile in self.init for b in pile)

    @property
    def n_blocks(self) -> int:
        return sum(len(p) for p in self.init)

    @property
    def trivial(self) -> bool:
        """The goal already holds at the start (a 0-step problem)."""
        return canonical(self.init) == canonical(self.goal)

    @property
    def key(self) -> tuple[int, State, State]:
        """Identity of the problem, independent of slot order: use it to find duplicates."""
        return (self.slots, canonical(self.init), canonical(self.goal))

    @property
    def problem_id(self) -> str:
        """A short stable name of the arrangement (canonical init and goal; duplicates share
        it). It does not depend on the table limit, so a file read with another `--slots`
        names its problems the same."""
        _, init, goal = self.key
        text = "/".join(",".join(p) for p in init) + "|" + "/".join(",".join(p) for p in goal)
        return "bw-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def make_problem(
    init: Sequence[Sequence[str]], goal: Sequence[Sequence[str]], slots: int | None = None
) -> Problem:
    """Build a Problem from piles (bottom to top), padding both states with empty slots.

    ``slots`` defaults to the larger number of entries given; it must hold every pile.
    """
    init_t = tuple(tuple(p) for p in init)
    goal_t = tuple(tuple(p) for p in goal)
    if slots is None:
        slots = max(len(init_t), len(goal_t))
    if slots < 1:
        raise UserError(f"slots must be at least 1, got {slots}")
    return Problem(_pad(init_t, slots, "init state"), _pad(goal_t, slots, "goal state"))


def _pad(state: State, slots: int, where: str) -> State:
    piles = [p for p in state if p]
    if len(piles) > slots:
        raise UserError(f"the {where} has {len(piles)} piles but only {slots} table slots")
    if len(state) <= slots:
        return state + ((),) * (slots - len(state))
    return tuple(piles) + ((),) * (slots - len(piles))


def _check_state(state: State, where: str) -> list[str]:
    seen: list[str] = []
    for pile in state:
        for block in pile:
            check_color(block, where)
            if block in seen:
                raise UserError(f"colour {block!r} appears twice in the {where}")
            seen.append(block)
    if not seen:
        raise UserError(f"the {where} has no blocks")
    return seen


class IllegalAction(Exception):
    """An action the rules forbid in the current state; the message says why."""


class World:
    """A mutable state to run a plan step by step, enforcing every rule."""

    def __init__(self, state: State, slots: int | None = None) -> None:
        self.piles: list[list[str]] = [list(p) for p in state if p]
        self.slots = len(state) if slots is None else slots
        self.holding: str | None = None
        self.blocks = frozenset(b for p in self.piles for b in p)

    def _find(self, block: str) -> list[str]:
        for pile in self.piles:
            if block in pile:
                return pile
        raise AssertionError(block)

    def apply(self, action: Action) -> None:
        """Apply ``action`` or raise IllegalAction with the reason."""
        if action.block == TABLE:
            raise IllegalAction(f"cannot {action.kind} the table")
        for word in (action.block, action.target):
            if word is not None and word != TABLE and word not in self.blocks:
                raise IllegalAction(f"there is no block {word!r}")
        if action.kind == PICK_UP:
            self._pick_up(action.block)
        else:
            self._stack(action.block, str(action.target))

    def _pick_up(self, block: str) -> None:
        if self.holding is not None:
            raise IllegalAction(f"cannot pick up {block}: the hand already holds {self.holding}")
        pile = self._find(block)
        if pile[-1] != block:
            raise IllegalAction(f"cannot pick up {block}: {pile[pile.index(block) + 1]} is on it")
        pile.pop()
        if not pile:
            self.piles.remove(pile)
        self.holding = block

    def _stack(self, block: str, target: str) -> None:
        if self.holding is None:
            raise IllegalAction(f"cannot stack {block}: the hand is empty")
        if self.holding != block:
            raise IllegalAction(f"cannot stack {block}: the hand holds {self.holding}")
        if target == block:
            raise IllegalAction(f"cannot stack {block} on itself")
        if target == TABLE:
            if len(self.piles) >= self.slots:
                raise IllegalAction(
                    f"cannot put {block} on the table: all {self.slots} slots hold piles"
                )
            self.piles.append([block])
        else:
            pile = self._find(target)
            if pile[-1] != target:
                raise IllegalAction(
                    f"cannot stack {block} on {target}: {pile[pile.index(target) + 1]} is on it"
                )
            pile.append(block)
        self.holding = None

    def state(self) -> State:
        return canonical(tuple(p) for p in self.piles)

    def satisfies(self, goal: State) -> bool:
        """The goal holds: hand empty and the same piles, in any slot order."""
        return self.holding is None and self.state() == canonical(goal)


def run_plan(problem: Problem, plan: Sequence[Action]) -> tuple[World, int | None, str | None]:
    """Run ``plan`` from the init state, stopping at the first illegal step.

    Returns the world after the last legal step, and (1-based step number, reason) of the
    first illegal step, or (None, None) when every step is legal.
    """
    world = World(problem.init)
    for k, action in enumerate(plan, start=1):
        try:
            world.apply(action)
        except IllegalAction as err:
            return world, k, str(err)
    return world, None, None
