"""Search traces with exact backtracking labels: depth-first search written as thinking text.

The trace language has one template per kind of sentence (:data:`TEMPLATES`); the generator
writes them and the checker (:mod:`.checker`) reads them back, so both agree by construction::

    <think>
    I start at K. From K I can go to D or M.
    Try D. From D I can go to B.
    Try B. Wait, B is a dead end. Back to D.
    D has no other way. Back to K.
    Try M. M is the goal.
    </think>
    Path: K M

Backtracking sentences are the two that leave a room: ``dead_end`` ("Wait, B is a dead end.
Back to D.": the room has no way on) and ``exhausted`` ("D has no other way. Back to K.": every
way on was tried). Their character spans (into the completion, the text after the prompt) are
the labels; :mod:`.labels` maps them to tokens. The generator searches a perfect maze, so every
backtrack it writes was needed (see :mod:`.puzzle`).

Pure Python, seeded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.runs.files import atomic_write
from reasonlens.tasks.backtracking.puzzle import Maze, prompt_text, random_maze

TASK = "backtracking"
ROOM, LIST, PATH = "{room}", "{list}", "{path}"
SLOTS = (ROOM, LIST, PATH)

#: Every sentence of the trace language: literal text and slots, in order.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "open": ("<think>",),
    "close": ("</think>",),
    "start": ("I start at ", ROOM, "."),
    "options": ("From ", ROOM, " I can go to ", LIST, "."),
    "try": ("Try ", ROOM, "."),
    "dead_end": ("Wait, ", ROOM, " is a dead end. Back to ", ROOM, "."),
    "exhausted": (ROOM, " has no other way. Back to ", ROOM, "."),
    "goal": (ROOM, " is the goal."),
    "answer": ("Path:", PATH),
}
BACKTRACK_KINDS = ("dead_end", "exhausted")
#: The label of backtracking spans (as in the source data's taxonomy).
BACKTRACKING = "backtracking"


def room_list(rooms: Sequence[str]) -> str:
    """``B``, ``B or C``, ``B, C or D``."""
    if not rooms:
        raise ValueError("an options sentence lists at least one room")
    if len(rooms) == 1:
        return rooms[0]
    return ", ".join(rooms[:-1]) + " or " + rooms[-1]


def sentence(kind: str, *values: Any) -> str:
    """One sentence of the language; ``values`` fill the template's slots in order (a room
    name, a sequence of rooms for a list or a path)."""
    parts, out, it = TEMPLATES[kind], [], iter(values)
    for part in parts:
        if part == ROOM:
            out.append(next(it))
        elif part == LIST:
            out.append(room_list(next(it)))
        elif part == PATH:
            out.append("".join(" " + r for r in next(it)))
        else:
            out.append(part)
    if next(it, None) is not None:
        raise ValueError(f"too many values for a {kind!r} sentence")
    return "".join(out)


@dataclass(frozen=True)
class Backtrack:
    """One backtracking sentence: its characters ``[start, end)`` in the checked text, the
    room left, the room returned to, and whether leaving was needed (the goal cannot be
    reached from ``room`` without going back through the path to it). ``truncated``: the
    text ends inside the sentence (a sampled chain cut by its token limit)."""

    start: int
    end: int
    kind: str
    room: str
    back_to: str
    needed: bool
    truncated: bool = False

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "start": self.start,
            "end": self.end,
            "label": BACKTRACKING,
            "kind": self.kind,
            "room": self.room,
            "back_to": self.back_to,
            "needed": self.needed,
        }
        if self.truncated:
            out["truncated"] = True
        return out


@dataclass(frozen=True)
class Trace:
    """A maze and the search text the generator wrote for it (the completion)."""

    maze: Maze
    text: str
    backtracks: tuple[Backtrack, ...]
    path: tuple[str, ...]

    @property
    def prompt(self) -> str:
        return prompt_text(self.maze)


@dataclass(frozen=True)
class TraceConfig:
    """How traces are drawn: rooms per maze (inclusive range), the least start-goal distance,
    and bounds on the number of backtracks per trace (draws outside are redrawn)."""

    rooms: tuple[int, int] = (6, 12)
    min_distance: int = 2
    min_backtracks: int = 0
    max_backtracks: int | None = None

    def __post_init__(self) -> None:
        lo, hi = self.rooms
        if not 2 <= lo <= hi:
            raise UserError(f"rooms must be a range lo..hi with 2 <= lo <= hi, not {self.rooms}")
        if self.min_backtracks < 0 or (
            self.max_backtracks is not None and self.max_backtracks < self.min_backtracks
        ):
            raise UserError("need 0 <= min_backtracks <= max_backtracks")


def generate_trace(maze: Maze, rng: random.Random) -> Trace:
    """Depth-first search from the start, trying each room's unvisited exits in a random
    order, written in the trace language with the exact span of every backtrack."""
    text: list[str] = []
    length = 0
    backtracks: list[Backtrack] = []
    visited = {maze.start}
    path: list[str] = []

    def write(piece: str) -> tuple[int, int]:
        nonlocal length
        start = length
        text.append(piece)
        length += len(piece)
        return start, length

    def leave(kind: str, room: str, parent: str) -> None:
        s, e = write(sentence(kind, room, parent))
        needed = not maze.reaches_goal(room, avoiding=path[:-1])
        backtracks.append(Backtrack(s, e, kind, room, parent, needed))
        write("\n")

    def visit(room: str) -> bool:
        """Write what the search does in ``room`` (after "Try ROOM." or "I start at ROOM.")."""
        path.append(room)
        if room == maze.goal:
            write(" " + sentence("goal", room) + "\n")
            return True
        options = [n for n in maze.neighbours(room) if n not in visited]
        rng.shuffle(options)
        if not options:
            write(" ")
            leave("dead_end", room, path[-2])
            path.pop()
            return False
        write(" " + sentence("options", room, options) + "\n")
        for nxt in options:
            write(sentence("try", nxt))
            visited.add(nxt)
            if visit(nxt):
                return True
        if len(path) == 1:  # pragma: no cover - the goal is reachable from the start
            raise AssertionError("the search left the start without reaching the goal")
        leave("exhausted", room, path[-2])
        path.pop()
        return False

    write(sentence("open") + "\n" + sentence("start", maze.start))
    visit(maze.start)
    found = tuple(path)
    write(sentence("close") + "\n" + sentence("answer", found) + "\n")
    return Trace(maze, "".join(text), tuple(backtracks), found)


def generate_traces(
    n: int, seed: int = 0, config: TraceConfig | None = None, exclude: Iterable[tuple] = ()
) -> list[Trace]:
    """``n`` traces of distinct mazes (none whose :meth:`Maze.key` is in ``exclude``), drawn
    from one seeded stream: the same seed and config give the same traces everywhere."""
    config = config or TraceConfig()
    rng = random.Random(f"reasonlens-backtracking:{seed}")
    seen = set(exclude)
    out: list[Trace] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise UserError(
                f"could not draw {n} distinct traces with {config} (got {len(out)}); "
                "widen the room range or the backtrack bounds"
            )
        maze = random_maze(rng, rng.randint(*config.rooms), config.min_distance)
        if maze.key() in seen:
            continue
        trace = generate_trace(maze, rng)
        k = len(trace.backtracks)
        if k < config.min_backtracks or (
            config.max_backtracks is not None and k > config.max_backtracks
        ):
            continue
        seen.add(maze.key())
        out.append(trace)
    return out


def generate_split(
    n_train: int, n_test: int, seed: int = 0, config: TraceConfig | None = None
) -> tuple[list[Trace], list[Trace]]:
    """Training and test traces: all mazes distinct, so the test set is disjoint from
    training."""
    traces = generate_traces(n_train + n_test, seed, config)
    return traces[:n_train], traces[n_train:]


def to_record(trace: Trace, id: str, split: str = "", prompt: str | None = None) -> dict:
    """The training record of a trace::

        {"task": "backtracking", "id": "train-0", "split": "train",
         "maze": {"rooms": [...], "corridors": [["A", "B"], ...], "start": "A", "goal": "G"},
         "prompt": "Find a path ...", "completion": "<think>\\n...Path: A C G\\n",
         "spans": [{"start", "end", "label": "backtracking", "kind", "room", "back_to",
                    "needed"}, ...]}

    ``spans`` index the completion. ``prompt`` defaults to the plain problem text; a study
    that trains with a chat template passes the rendered prompt.
    """
    return {
        "task": TASK,
        "id": id,
        "split": split,
        "maze": trace.maze.to_dict(),
        "prompt": trace.prompt if prompt is None else prompt,
        "completion": trace.text,
        "spans": [b.to_dict() for b in trace.backtracks],
    }


def write_records(path: str | Path, records: Iterable[dict]) -> Path:
    """One JSON record per line, written atomically."""
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return Path(path)
