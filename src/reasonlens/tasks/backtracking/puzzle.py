"""The search puzzle behind the backtracking traces: find a path through a small maze.

A maze is a set of rooms (single capital letters) joined by corridors, with a start room and a
goal room. The generator draws a uniformly random tree (a *perfect* maze: exactly one path
between any two rooms), so every branch off the start-goal path is a dead end, and a
depth-first search that tries the exits in a random order has to back out of some of them.
The checker (:mod:`.checker`) reads any search text against a maze, tree or not.

Whether backing out of a room was *needed* is decided by reachability, never by the text: a
backtrack out of room X (entered along the path S ... P X) was needed when the goal cannot be
reached from X without passing through a room of S ... P again. In a tree this is "the goal is
not beyond X".

Pure Python, seeded through :class:`random.Random` (same seed, same mazes on every machine).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from reasonlens.errors import UserError

#: Room names: capital letters except I (the traces say "I start at ...") and O (reads as 0).
ROOM_NAMES = tuple("ABCDEFGHJKLMNPQRSTUVWXYZ")
MAX_ROOMS = len(ROOM_NAMES)


@dataclass(frozen=True)
class Maze:
    """Rooms, corridors (unordered pairs, in the order the prompt lists them), start, goal."""

    rooms: tuple[str, ...]
    corridors: tuple[tuple[str, str], ...]
    start: str
    goal: str

    @cached_property
    def adjacency(self) -> Mapping[str, tuple[str, ...]]:
        """Room -> its neighbours, in corridor-listing order."""
        out: dict[str, list[str]] = {room: [] for room in self.rooms}
        for a, b in self.corridors:
            out[a].append(b)
            out[b].append(a)
        return {room: tuple(n) for room, n in out.items()}

    def neighbours(self, room: str) -> tuple[str, ...]:
        return self.adjacency[room]

    def connected(self, a: str, b: str) -> bool:
        return b in self.adjacency.get(a, ())

    def reaches_goal(self, room: str, avoiding: Collection[str] = ()) -> bool:
        """Whether the goal can be reached from ``room`` without entering ``avoiding``."""
        if room == self.goal:
            return True
        blocked = set(avoiding)
        seen, todo = {room}, deque([room])
        while todo:
            for nxt in self.adjacency[todo.popleft()]:
                if nxt in seen or nxt in blocked:
                    continue
                if nxt == self.goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    def shortest_path(self) -> tuple[str, ...]:
        """A shortest path start -> goal (the only simple one in a tree)."""
        back = {self.start: ""}
        todo = deque([self.start])
        while todo:
            room = todo.popleft()
            if room == self.goal:
                path = [room]
                while back[path[-1]]:
                    path.append(back[path[-1]])
                return tuple(reversed(path))
            for nxt in self.adjacency[room]:
                if nxt not in back:
                    back[nxt] = room
                    todo.append(nxt)
        raise ValueError("the goal cannot be reached from the start")

    def is_path(self, rooms: tuple[str, ...]) -> bool:
        """Whether ``rooms`` walks from the start to the goal along corridors, never twice
        through the same room."""
        return (
            len(rooms) >= 2
            and rooms[0] == self.start
            and rooms[-1] == self.goal
            and len(set(rooms)) == len(rooms)
            and all(self.connected(a, b) for a, b in zip(rooms, rooms[1:], strict=False))
        )

    @property
    def is_tree(self) -> bool:
        return len(self.corridors) == len(self.rooms) - 1  # connected (checked) with n-1 edges

    def key(self) -> tuple:
        """What makes two mazes the same problem (listing order aside)."""
        return (frozenset(frozenset(c) for c in self.corridors), self.start, self.goal)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rooms": list(self.rooms),
            "corridors": [list(c) for c in self.corridors],
            "start": self.start,
            "goal": self.goal,
        }

    @classmethod
    def from_dict(cls, data: object) -> Maze:
        """A maze from its record; anything malformed is a UserError saying what."""
        if not isinstance(data, Mapping):
            raise UserError("'maze' must be an object with rooms, corridors, start and goal")
        rooms = data.get("rooms")
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise UserError("maze 'rooms' must be a list of room names")
        bad = [r for r in rooms if r not in ROOM_NAMES]
        if bad:
            raise UserError(f"maze room {bad[0]!r} is not a capital letter other than I and O")
        if len(set(rooms)) != len(rooms) or len(rooms) < 2:
            raise UserError("maze 'rooms' must name at least 2 rooms, each once")
        corridors = data.get("corridors")
        if not isinstance(corridors, list):
            raise UserError("maze 'corridors' must be a list of [room, room] pairs")
        pairs = []
        for c in corridors:
            if not (isinstance(c, list | tuple) and len(c) == 2 and all(x in rooms for x in c)):
                raise UserError(f"maze corridor {c!r} is not a pair of the maze's rooms")
            if c[0] == c[1]:
                raise UserError(f"maze corridor {c!r} joins a room to itself")
            pairs.append((c[0], c[1]))
        if len({frozenset(p) for p in pairs}) != len(pairs):
            raise UserError("maze 'corridors' lists a corridor twice")
        start, goal = data.get("start"), data.get("goal")
        if start not in rooms or goal not in rooms or start == goal:
            raise UserError("maze 'start' and 'goal' must be two different rooms of the maze")
        maze = cls(tuple(rooms), tuple(pairs), start, goal)
        if not maze.reaches_goal(start):
            raise UserError("maze: the goal cannot be reached from the start")
        return maze


def random_tree(rng: random.Random, n: int) -> list[tuple[int, int]]:
    """The edges of a uniformly random labelled tree on 0..n-1 (a random Pruefer sequence)."""
    if n < 2:
        raise ValueError("a maze needs at least 2 rooms")
    if n == 2:
        return [(0, 1)]
    seq = [rng.randrange(n) for _ in range(n - 2)]
    degree = [1] * n
    for v in seq:
        degree[v] += 1
    edges = []
    for v in seq:
        leaf = min(u for u in range(n) if degree[u] == 1)
        edges.append((leaf, v))
        degree[leaf] -= 1
        degree[v] -= 1
    last = [u for u in range(n) if degree[u] == 1]
    edges.append((last[0], last[1]))
    return edges


def random_maze(rng: random.Random, n_rooms: int, min_distance: int = 2) -> Maze:
    """A perfect maze of ``n_rooms`` rooms with random names; start and goal at least
    ``min_distance`` corridors apart (the farthest pair when the tree is too small)."""
    if not 2 <= n_rooms <= MAX_ROOMS:
        raise UserError(f"a maze has 2 to {MAX_ROOMS} rooms, not {n_rooms}")
    names = rng.sample(ROOM_NAMES, n_rooms)
    edges = [tuple(sorted((names[a], names[b]))) for a, b in random_tree(rng, n_rooms)]
    rng.shuffle(edges)
    probe = Maze(tuple(sorted(names)), tuple(edges), names[0], names[1])
    dist = {room: _distances(probe, room) for room in names}
    far = max(d for row in dist.values() for d in row.values())
    need = min(min_distance, far)
    pairs = [(a, b) for a in names for b in names if a != b and dist[a][b] >= need]
    start, goal = pairs[rng.randrange(len(pairs))]
    return Maze(probe.rooms, probe.corridors, start, goal)


def _distances(maze: Maze, source: str) -> dict[str, int]:
    dist = {source: 0}
    todo = deque([source])
    while todo:
        room = todo.popleft()
        for nxt in maze.adjacency[room]:
            if nxt not in dist:
                dist[nxt] = dist[room] + 1
                todo.append(nxt)
    return dist


def prompt_text(maze: Maze) -> str:
    """The problem as the model reads it (plain text; a study may wrap it in a chat template)."""
    corridors = ", ".join(f"{a}-{b}" for a, b in maze.corridors)
    return (
        f"Find a path from room {maze.start} to room {maze.goal} in this maze.\n"
        f"Corridors: {corridors}.\n"
        "Search step by step, backtracking out of dead ends, then give the path.\n"
    )
