"""Sample Blocksworld problems of a given optimal length, uniformly, without repeats.

A problem is fixed by its goal and an init state exactly ``level`` moves (``2 * level`` steps)
from it. For every goal *shape* the planner's search from the canonical goal lists the states
at that distance and how many optimal plans each has, so drawing a problem is: a shape (weighted
by how many problems it has), a random naming of its blocks with ``n`` palette colours, and an
init from the list. That is uniform over all distinct problems, and the pool sizes are exact, so
asking for more problems than exist fails at once with the count instead of looping.

Test problems come from the unique-optimal part of the pool; train problems from the whole pool
minus the test problems, with one optimal plan drawn uniformly at random.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from reasonlens.errors import UserError
from reasonlens.tasks.blocksworld.colors import DEFAULT_COLORS
from reasonlens.tasks.blocksworld.example import Example
from reasonlens.tasks.blocksworld.formats import PAPER, check_format
from reasonlens.tasks.blocksworld.planner import (
    MAX_BLOCKS,
    GoalTree,
    Labelled,
    LabelState,
    Shape,
    canonical_goal,
    clear_cache,
    goal_tree,
    shapes,
    walk,
)
from reasonlens.tasks.blocksworld.state import Pile, Problem, State, canonical, check_color

#: Highest level: L5 = 10 steps. Level k means an optimal plan of 2k steps (k moves).
MAX_LEVEL = 5
LEVELS = tuple(f"L{k}" for k in range(1, MAX_LEVEL + 1))


def parse_level(level: str | int) -> int:
    """``"L3"``, ``"3"`` or ``3`` -> 3."""
    text = str(level).strip().upper().removeprefix("L")
    if not text.isdigit() or not 1 <= int(text) <= MAX_LEVEL:
        raise UserError(
            f"unknown level {level!r}; valid: {', '.join(LEVELS)} (L1 = 2 steps ... L5 = 10 steps)"
        )
    return int(text)


@dataclass(frozen=True)
class _ShapePool:
    shape: Shape
    tree: GoalTree
    n_goals: int  # distinct labelled goals of this shape
    states: list[LabelState]  # init states exactly `moves` moves away
    unique: list[LabelState]  # ... of which exactly one optimal plan reaches the goal


class ProblemPool:
    """All problems with ``n_blocks`` blocks on ``slots`` slots whose optimal plan is
    ``moves`` moves long, indexed by goal shape (built from the planner's cached searches)."""

    _cache: dict[tuple[int, int, int], ProblemPool] = {}

    def __init__(self, n_blocks: int, slots: int, moves: int) -> None:
        self.n_blocks, self.slots, self.moves = n_blocks, slots, moves
        self.shapes: list[_ShapePool] = []
        for shape in shapes(n_blocks, slots):
            tree = goal_tree(shape, slots)
            states = tree.level(moves)
            unique = [s for s in states if tree.count[s] == 1]
            n_goals = math.factorial(n_blocks)
            for h in set(shape):
                n_goals //= math.factorial(shape.count(h))
            self.shapes.append(_ShapePool(shape, tree, n_goals, states, unique))

    @classmethod
    def get(cls, n_blocks: int, slots: int, moves: int) -> ProblemPool:
        key = (n_blocks, slots, moves)
        if key not in cls._cache:
            cls._cache[key] = cls(n_blocks, slots, moves)
        return cls._cache[key]

    def _weights(self, unique: bool) -> list[int]:
        return [sp.n_goals * len(sp.unique if unique else sp.states) for sp in self.shapes]

    def size(self, n_colors: int, unique: bool) -> int:
        """Number of distinct problems over an ``n_colors`` palette (exact)."""
        return math.comb(n_colors, self.n_blocks) * sum(self._weights(unique))

    def draw(self, rng: random.Random, colors: Sequence[str], unique: bool) -> _Candidate:
        """One problem, uniformly over the pool."""
        sp = self.shapes[_weighted_index(rng, self._weights(unique))]
        names = tuple(rng.sample(list(colors), self.n_blocks))
        states = sp.unique if unique else sp.states
        return _Candidate(sp, names, states[rng.randrange(len(states))])

    def all_problems(self, colors: Sequence[str], unique: bool) -> list[_Candidate]:
        """Every problem of the pool, in a fixed order (used when most of a small pool is asked
        for, where drawing with rejection would slow down)."""
        out = []
        for combo in itertools.combinations(colors, self.n_blocks):
            for sp in self.shapes:
                goal0 = canonical_goal(sp.shape)
                seen: set[State] = set()
                for names in itertools.permutations(combo):
                    goal = canonical(tuple(names[i] for i in p) for p in goal0)
                    if goal in seen:
                        continue
                    seen.add(goal)
                    out.extend(
                        _Candidate(sp, names, s) for s in (sp.unique if unique else sp.states)
                    )
        return out


@dataclass(frozen=True)
class _Candidate:
    pool: _ShapePool
    names: tuple[str, ...]
    init: LabelState

    def piles(self, state: LabelState) -> list[Pile]:
        return [tuple(self.names[i] for i in p) for p in state]

    @property
    def key(self) -> tuple[State, State]:
        goal = canonical(self.piles(canonical_goal(self.pool.shape)))
        return canonical(self.piles(self.init)), goal

    def build(self, rng: random.Random, slots: int, fmt: str, split: str | None) -> Example:
        """Place the piles in random slots and draw one optimal plan uniformly."""
        init = _layout(self.piles(self.init), slots, rng)
        goal = _layout(self.piles(canonical_goal(self.pool.shape)), slots, rng)
        lab = Labelled(self.pool.shape, self.init, self.names)
        plan = walk(self.pool.tree, lab, self.init, rng)
        n_opt = self.pool.tree.count[self.init]
        return Example(Problem(init, goal), plan, fmt, n_opt, split)


def _weighted_index(rng: random.Random, weights: list[int]) -> int:
    """An index drawn with probability proportional to its integer weight (exact, no floats)."""
    r = rng.randrange(sum(weights))
    for i, w in enumerate(weights):
        r -= w
        if r < 0:
            return i
    raise AssertionError("unreachable")


def clear_caches() -> None:
    """Forget all cached searches and pools (benchmarks use it to time cold starts)."""
    clear_cache()
    ProblemPool._cache.clear()


def _layout(piles: list[Pile], slots: int, rng: random.Random) -> State:
    out: list[Pile] = [()] * slots
    for pile, pos in zip(piles, rng.sample(range(slots), len(piles)), strict=True):
        out[pos] = pile
    return tuple(out)


def _check_request(n_blocks: int, level: int, slots: int, colors: Sequence[str]) -> None:
    if not 1 <= n_blocks <= MAX_BLOCKS:
        raise UserError(f"number of blocks must be 1..{MAX_BLOCKS}, got {n_blocks}")
    parse_level(level)
    if slots < 1:
        raise UserError(f"slots must be at least 1, got {slots}")
    for c in colors:
        check_color(c, "palette")
    if len(set(colors)) != len(colors):
        raise UserError("the palette names a colour twice")
    if len(colors) < n_blocks:
        raise UserError(
            f"{n_blocks}-block problems need {n_blocks} colours but the palette has "
            f"{len(colors)} ({', '.join(colors)}); give more colours"
        )


def count_problems(
    n_blocks: int,
    level: int,
    *,
    slots: int = 4,
    colors: Sequence[str] = DEFAULT_COLORS,
    unique: bool = False,
) -> int:
    """How many distinct problems exist (with a unique optimal plan, if ``unique``)."""
    _check_request(n_blocks, level, slots, colors)
    return ProblemPool.get(n_blocks, slots, level).size(len(colors), unique)


def _sample(
    pool: ProblemPool,
    rng: random.Random,
    colors: Sequence[str],
    unique: bool,
    count: int,
    exclude: set[tuple[State, State]],
) -> list[_Candidate]:
    available = pool.size(len(colors), unique) - len(exclude)
    if 2 * count > available:
        everything = [c for c in pool.all_problems(colors, unique) if c.key not in exclude]
        return rng.sample(everything, count)
    out, seen = [], set(exclude)
    while len(out) < count:
        cand = pool.draw(rng, colors, unique)
        if cand.key not in seen:
            seen.add(cand.key)
            out.append(cand)
    return out


def _describe(n_blocks: int, level: int, slots: int, colors: Sequence[str]) -> str:
    return (
        f"{n_blocks} blocks, L{level} ({2 * level} steps), {slots} slots and {len(colors)} colours"
    )


def generate_split(
    n_blocks: int,
    level: int,
    *,
    n_train: int,
    n_test: int,
    slots: int = 4,
    colors: Sequence[str] = DEFAULT_COLORS,
    fmt: str = PAPER,
    seed: int = 0,
    split_names: tuple[str | None, str | None] = ("train", "test"),
) -> tuple[list[Example], list[Example]]:
    """Train and test problems for one (blocks, level) cell.

    Test problems are distinct and have a unique optimal plan; train problems are distinct,
    never a test problem, and may have several optimal plans (one is drawn uniformly). The
    random stream depends only on the arguments, so a cell is the same whatever other cells a
    dataset holds. ``split_names`` label the two lists' examples.
    """
    _check_request(n_blocks, level, slots, colors)
    check_format(fmt)
    if n_train < 0 or n_test < 0:
        raise UserError("train and test counts must be >= 0")
    pool = ProblemPool.get(n_blocks, slots, level)
    n_unique, n_all = pool.size(len(colors), True), pool.size(len(colors), False)
    where = _describe(n_blocks, level, slots, colors)
    if n_test > n_unique:
        raise UserError(
            f"asked for {n_test} test problems with {where}, but only {n_unique} distinct "
            "problems have a unique optimal plan; ask for fewer, or change blocks/slots/colours"
        )
    if n_train + n_test > n_all:
        raise UserError(
            f"asked for {n_train} train + {n_test} test problems with {where}, but only {n_all} "
            "distinct problems exist; ask for fewer, or change blocks/slots/colours"
        )
    rng = random.Random(f"reasonlens.blocksworld:{seed}:{n_blocks}:{level}:{slots}")
    test_c = _sample(pool, rng, colors, True, n_test, set())
    test = [c.build(rng, slots, fmt, split_names[1]) for c in test_c]
    train_c = _sample(pool, rng, colors, False, n_train, {c.key for c in test_c})
    train = [c.build(rng, slots, fmt, split_names[0]) for c in train_c]
    return train, test


def generate_problems(
    n_blocks: int,
    level: int,
    count: int,
    *,
    slots: int = 4,
    colors: Sequence[str] = DEFAULT_COLORS,
    unique: bool = False,
    fmt: str = PAPER,
    seed: int = 0,
) -> list[Example]:
    """``count`` distinct problems of one size and level (``unique``: one optimal plan each)."""
    train, test = generate_split(
        n_blocks,
        level,
        n_train=0 if unique else count,
        n_test=count if unique else 0,
        slots=slots,
        colors=colors,
        fmt=fmt,
        seed=seed,
        split_names=(None, None),
    )
    return train + test
