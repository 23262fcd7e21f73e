"""Exact optimal planner: shortest plans and the number of them, by breadth-first search.

Why it is fast and still exact:

- Slot order does not matter, so a state is the sorted tuple of its non-empty piles.
- An optimal plan alternates ``pick-up X`` / ``stack X ...`` and never puts a block back where
  it was, so it is a sequence of *moves*; its length in steps is twice the number of moves, and
  optimal step plans and optimal move sequences are in one-to-one correspondence. The search
  runs over the move graph, whose states all have an empty hand.
- Every move can be undone in one move (the slot a block leaves is free for its return), so the
  graph is undirected: a breadth-first search *from the goal* gives, for every state, its
  distance to the goal and the number of shortest paths to it.
- Renaming colours maps the graph onto itself. A goal is renamed to the canonical goal of its
  *shape* (its pile heights), so one search per (shape, slots) serves every problem with that
  shape; the search grows level by level only as deep as a question needs, and is cached.

The uniqueness check used to build test sets is :attr:`Solution.n_optimal_plans` ``== 1``,
an exact count, not a sample.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from reasonlens.errors import UserError
from reasonlens.tasks.blocksworld.colors import TABLE
from reasonlens.tasks.blocksworld.state import Action, Problem, pick_up, stack

#: Largest problem the exact planner accepts (8 blocks in 4 slots: 381,360 arrangements).
MAX_BLOCKS = 8

LabelState = tuple[tuple[int, ...], ...]
Shape = tuple[int, ...]
TABLE_LABEL = -1


def successors(state: LabelState, slots: int) -> Iterator[tuple[int, int, LabelState]]:
    """Every non-trivial move from ``state``: (block, destination or TABLE_LABEL, next state)."""
    room = len(state) < slots
    for i, src in enumerate(state):
        block = src[-1]
        rest = src[:-1]
        others = list(state[:i] + state[i + 1 :])
        base = others + [rest] if rest else others
        if rest and room:
            yield block, TABLE_LABEL, tuple(sorted(base + [(block,)]))
        for j, dst in enumerate(others):
            new = list(base)
            new[j] = dst + (block,)
            yield block, dst[-1], tuple(sorted(new))


def shapes(n_blocks: int, slots: int) -> list[Shape]:
    """Pile-height profiles (partitions of n_blocks into at most ``slots`` parts), descending."""
    out: list[Shape] = []

    def rec(left: int, cap: int, acc: tuple[int, ...]) -> None:
        if left == 0:
            out.append(acc)
            return
        if len(acc) == slots:
            return
        for h in range(min(left, cap), 0, -1):
            rec(left - h, h, acc + (h,))

    rec(n_blocks, n_blocks, ())
    return out


def canonical_goal(shape: Shape) -> LabelState:
    """The goal of a shape with blocks labelled 0, 1, ... pile by pile, bottom to top."""
    piles, label = [], 0
    for h in shape:
        piles.append(tuple(range(label, label + h)))
        label += h
    return tuple(sorted(piles))


class GoalTree:
    """Distances and shortest-path counts to one canonical goal, grown one level at a time."""

    def __init__(self, shape: Shape, slots: int) -> None:
        self.shape = shape
        self.slots = slots
        goal = canonical_goal(shape)
        self.dist: dict[LabelState, int] = {goal: 0}
        self.count: dict[LabelState, int] = {goal: 1}
        self.levels: list[list[LabelState]] = [[goal]]
        self.complete = False
        self.expanded = 0

    def _grow(self) -> None:
        depth = len(self.levels)
        dist, count, slots = self.dist, self.count, self.slots
        frontier, nxt = self.levels[-1], []
        for u in frontier:
            cu = count[u]
            for _, _, v in successors(u, slots):
                dv = dist.get(v)
                if dv is None:
                    dist[v] = depth
                    count[v] = cu
                    nxt.append(v)
                elif dv == depth:
                    count[v] += cu
        self.expanded += len(frontier)
        if nxt:
            self.levels.append(nxt)
        else:
            self.complete = True

    def grow_to(self, moves: int) -> None:
        """Make every level up to ``moves`` final (a level's counts are final once it exists)."""
        while len(self.levels) <= moves and not self.complete:
            self._grow()

    def level(self, moves: int) -> list[LabelState]:
        """All states exactly ``moves`` moves from the goal (empty if there are none)."""
        self.grow_to(moves)
        return self.levels[moves] if moves < len(self.levels) else []

    def find(self, state: LabelState) -> int | None:
        """Distance in moves from ``state`` to the goal, growing as needed; None if unreachable."""
        while state not in self.dist and not self.complete:
            self._grow()
        return self.dist.get(state)


_TREES: dict[tuple[Shape, int], GoalTree] = {}

#: The cache is emptied when it holds more states than this (8-block searches run to full
#: depth can reach 381,360 states per shape; this bounds memory to a few hundred MB).
MAX_CACHED_STATES = 2_000_000


def goal_tree(shape: Shape, slots: int, *, cache: bool = True) -> GoalTree:
    """The (cached) search tree for a goal shape; ``cache=False`` builds a fresh one."""
    if not cache:
        return GoalTree(shape, slots)
    key = (shape, slots)
    tree = _TREES.get(key)
    if tree is None:
        if sum(len(t.dist) for t in _TREES.values()) > MAX_CACHED_STATES:
            _TREES.clear()
        tree = _TREES[key] = GoalTree(shape, slots)
    return tree


def clear_cache() -> None:
    """Forget every cached search (benchmarks use it to time cold searches)."""
    _TREES.clear()


@dataclass(frozen=True)
class Labelled:
    """A problem renamed onto its shape's canonical goal."""

    shape: Shape
    init: LabelState
    names: tuple[str, ...]  # names[label] = colour

    def action(self, block: int, target: int) -> tuple[Action, Action]:
        dest = TABLE if target == TABLE_LABEL else self.names[target]
        return pick_up(self.names[block]), stack(self.names[block], dest)


def label(problem: Problem) -> Labelled:
    """Rename ``problem``'s colours so that its goal is the canonical goal of its shape."""
    if problem.n_blocks > MAX_BLOCKS:
        raise UserError(
            f"the exact planner handles at most {MAX_BLOCKS} blocks; "
            f"this problem has {problem.n_blocks}"
        )
    goal_piles = sorted((p for p in problem.goal if p), key=len, reverse=True)
    names = tuple(b for p in goal_piles for b in p)
    index = {b: i for i, b in enumerate(names)}
    init = tuple(sorted(tuple(index[b] for b in p) for p in problem.init if p))
    return Labelled(tuple(len(p) for p in goal_piles), init, names)


@dataclass(frozen=True)
class Solution:
    """Optimal plan length in steps (pick-up and stack each count 1) and how many plans have it.

    ``length`` is None when the goal cannot be reached within the slot limit; a problem whose
    goal already holds has length 0 and exactly one optimal plan (the empty one).
    """

    length: int | None
    n_optimal_plans: int


def solve(problem: Problem, *, cache: bool = True) -> Solution:
    """Shortest plan length and the exact number of shortest plans."""
    lab = label(problem)
    tree = goal_tree(lab.shape, problem.slots, cache=cache)
    moves = tree.find(lab.init)
    if moves is None:
        return Solution(None, 0)
    return Solution(2 * moves, tree.count[lab.init])


def _optimal_moves(tree: GoalTree, state: LabelState) -> list[tuple[int, int, LabelState]]:
    below = tree.dist[state] - 1
    return [m for m in successors(state, tree.slots) if tree.dist.get(m[2]) == below]


def optimal_plan(problem: Problem, rng: random.Random | None = None) -> tuple[Action, ...]:
    """One optimal plan: drawn uniformly from all of them with ``rng``, else the first in
    alphabetical order of steps. Raises UserError if the goal is unreachable."""
    lab = label(problem)
    tree = goal_tree(lab.shape, problem.slots)
    if tree.find(lab.init) is None:
        raise UserError(f"the goal cannot be reached with {problem.slots} table slots")
    return walk(tree, lab, lab.init, rng)


def walk(
    tree: GoalTree, lab: Labelled, state: LabelState, rng: random.Random | None = None
) -> tuple[Action, ...]:
    """Follow optimal moves from ``state`` to the goal (uniform over plans when given rng)."""
    plan: list[Action] = []
    while tree.dist[state] > 0:
        options = _optimal_moves(tree, state)
        if rng is None:
            move = min(options, key=lambda m: tuple(map(str, lab.action(m[0], m[1]))))
        else:
            r = rng.randrange(tree.count[state])
            for move in options:
                r -= tree.count[move[2]]
                if r < 0:
                    break
        plan.extend(lab.action(move[0], move[1]))
        state = move[2]
    return tuple(plan)


def optimal_plans(problem: Problem, limit: int | None = None) -> list[tuple[Action, ...]]:
    """All optimal plans (at most ``limit``), in alphabetical order of their steps."""
    lab = label(problem)
    tree = goal_tree(lab.shape, problem.slots)
    if tree.find(lab.init) is None:
        return []
    out: list[tuple[Action, ...]] = []

    def rec(state: LabelState, prefix: tuple[Action, ...]) -> bool:
        if tree.dist[state] == 0:
            out.append(prefix)
            return limit is not None and len(out) >= limit
        steps = sorted(
            (tuple(map(str, lab.action(b, t))), lab.action(b, t), nxt)
            for b, t, nxt in _optimal_moves(tree, state)
        )
        return any(rec(nxt, prefix + pair) for _, pair, nxt in steps)

    rec(lab.init, ())
    return out
