"""Read any search text against its maze: where it backtracks, and whether it had to.

The checker replays a text in the trace language (:data:`.traces.TEMPLATES`) sentence by
sentence, keeping the search's path (a stack of rooms). Every backtracking sentence gets its
exact character span and a verdict from the maze, not from the text: *needed* when the goal
cannot be reached from the room left without going back through the path to it
(:meth:`.puzzle.Maze.reaches_goal`). It labels a model's sampled chain exactly as the generator
labels its own traces.

Three outcomes:

- **labelled**, no errors: every sentence parsed and every move was legal;
- **labelled with errors**: the text is readable and the search position is defined at every
  sentence, but some facts are wrong (exits listed wrongly, a move along no corridor, a room
  visited twice, a false goal claim, a wrong final path). Backtracks are still labelled;
- **unlabelable**, with the reason: a sentence that is not in the language, a room that is not
  in the maze, or a sentence that contradicts the search position ("Back to C" when the path
  came from B; "From D ..." while at E), so where the search is, and what a backtrack leaves,
  is undefined from there on. The backtracks read before that point are kept (for inspection)
  but the chain should not be used as labelled data.

A text that stops in the middle of a sentence (a sampled chain cut by its token limit) is
*truncated*: its complete sentences are labelled, and a final fragment that can only be the
beginning of a backtracking sentence is labelled as one (``truncated=True``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasonlens.tasks.backtracking.chains import Chain, LabelledSpan
from reasonlens.tasks.backtracking.puzzle import Maze
from reasonlens.tasks.backtracking.traces import (
    BACKTRACK_KINDS,
    BACKTRACKING,
    LIST,
    PATH,
    ROOM,
    TEMPLATES,
    Backtrack,
)

_ROOM_RX = r"[A-Z]"
_FULL = {
    ROOM: f"({_ROOM_RX})",
    LIST: rf"({_ROOM_RX}(?:, {_ROOM_RX})*(?: or {_ROOM_RX})?)",
    PATH: rf"((?: {_ROOM_RX})+)",
}
_PREFIX = {
    ROOM: f"(?:{_ROOM_RX})?",
    LIST: rf"(?:{_ROOM_RX}(?:(?:,| o|, | or| or )(?:{_ROOM_RX})?)*)?",
    PATH: rf"(?: {_ROOM_RX}?)*",
}


def _literal_prefix(text: str) -> str:
    """A regex matching every prefix of ``text`` (the empty one included)."""
    out = ""
    for ch in reversed(text):
        out = f"(?:{re.escape(ch)}{out})?"
    return out


def _full(parts: tuple[str, ...]) -> str:
    return "".join(_FULL.get(p, re.escape(p)) for p in parts)


def _prefix(parts: tuple[str, ...]) -> re.Pattern:
    alternatives = [
        _full(parts[:k]) + (_PREFIX[p] if p in _PREFIX else _literal_prefix(p))
        for k, p in enumerate(parts)
    ]
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


# the answer line ends at a newline (or the end of the text)
_SENTENCES = {
    kind: re.compile(_full(parts) + (r"(?=\n|$)" if kind == "answer" else ""))
    for kind, parts in TEMPLATES.items()
}
_PREFIXES = {kind: _prefix(parts) for kind, parts in TEMPLATES.items()}
_SPACE = re.compile(r"\s*")


@dataclass(frozen=True)
class CheckedTrace:
    """What the checker read in a text (see the module docstring)."""

    labelable: bool
    reason: str | None  # why not labelable
    backtracks: tuple[Backtrack, ...]
    errors: tuple[str, ...]
    reached_goal: bool  # the search said "G is the goal." while at the goal
    answer: tuple[str, ...] | None  # the final "Path:" line, if any
    solved: bool  # the answer is a path from the start to the goal
    truncated: bool  # the text stops inside a sentence
    sentences: int  # complete sentences read

    @property
    def n_backtracks(self) -> int:
        return len(self.backtracks)

    @property
    def n_needed(self) -> int:
        return sum(b.needed for b in self.backtracks)

    @property
    def n_unneeded(self) -> int:
        return sum(not b.needed for b in self.backtracks)

    def spans(self, which: str = BACKTRACKING) -> tuple[tuple[int, int], ...]:
        """Character spans of the backtracks: ``"backtracking"`` (all), ``"needed"``,
        ``"unneeded"``, or a kind (``"dead_end"``, ``"exhausted"``)."""
        keep = {
            BACKTRACKING: lambda b: True,
            "needed": lambda b: b.needed,
            "unneeded": lambda b: not b.needed,
        }.get(which, lambda b: b.kind == which)
        return tuple(b.span for b in self.backtracks if keep(b))

    def chain(self, id: str, text: str, problem: str | None = None) -> Chain:
        """The checked text as a :class:`~.chains.Chain` to label tokens from: every
        backtrack is a ``backtracking`` span, and also a ``needed-backtracking`` or
        ``unneeded-backtracking`` one (either can be the probes' target)."""
        spans = []
        for b in self.backtracks:
            spans.append(LabelledSpan(b.start, b.end, BACKTRACKING))
            which = "needed" if b.needed else "unneeded"
            spans.append(LabelledSpan(b.start, b.end, f"{which}-{BACKTRACKING}"))
        return Chain(str(id), text, tuple(spans), problem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labelable": self.labelable,
            "reason": self.reason,
            "n_backtracks": self.n_backtracks,
            "n_needed": self.n_needed,
            "n_unneeded": self.n_unneeded,
            "errors": list(self.errors),
            "reached_goal": self.reached_goal,
            "answer": None if self.answer is None else " ".join(self.answer),
            "solved": self.solved,
            "truncated": self.truncated,
            "sentences": self.sentences,
            "spans": [b.to_dict() for b in self.backtracks],
        }


class _Unlabelable(Exception):
    pass


class _Reader:
    """The search state while a text is replayed."""

    def __init__(self, maze: Maze):
        self.maze = maze
        self.path: list[str] = []
        self.visited: set[str] = set()
        self.listed: dict[str, tuple[str, ...]] = {}
        self.tried: dict[str, set[str]] = {}
        self.backtracks: list[Backtrack] = []
        self.errors: list[str] = []
        self.reached = False
        self.answer: tuple[str, ...] | None = None
        self.opened = self.closed = False
        self.sentences = 0

    def room(self, name: str) -> str:
        if name not in self.maze.adjacency:
            raise _Unlabelable(f"room {name} is not in the maze")
        return name

    def at(self, name: str, what: str) -> str:
        room = self.room(name)
        if not self.path:
            raise _Unlabelable(f"{what} before 'I start at ...'")
        if room != self.path[-1]:
            raise _Unlabelable(f"{what} names room {room} while the search is at {self.path[-1]}")
        return room

    def error(self, text: str) -> None:
        if text not in self.errors:
            self.errors.append(text)

    def searching(self, kind: str) -> None:
        if self.closed:
            self.error("the search goes on after </think>")
        elif self.reached and kind != "goal":
            self.error("the search goes on after reaching the goal")

    def read(self, kind: str, m: re.Match) -> None:
        self.sentences += 1
        getattr(self, f"_{kind}")(m)

    def _open(self, m: re.Match) -> None:
        if self.opened or self.path:
            self.error("a second <think>")
        self.opened = True

    def _close(self, m: re.Match) -> None:
        if self.closed:
            self.error("a second </think>")
        self.closed = True

    def _start(self, m: re.Match) -> None:
        room = self.room(m[1])
        if self.path:
            raise _Unlabelable("'I start at ...' a second time")
        if room != self.maze.start:
            self.error(f"starts at {room}, not at the start {self.maze.start}")
        self.path.append(room)
        self.visited.add(room)

    def _options(self, m: re.Match) -> None:
        room = self.at(m[1], "'From ...'")
        self.searching("options")
        listed = tuple(self.room(r) for r in re.findall(_ROOM_RX, m[2]))
        truth = {n for n in self.maze.neighbours(room) if n not in self.visited}
        if len(set(listed)) != len(listed):
            self.error(f"lists a way from {room} twice")
        if set(listed) != truth:
            ways = ", ".join(sorted(truth)) or "none"
            self.error(f"lists the ways from {room} as {', '.join(listed)} (unvisited: {ways})")
        if room in self.listed:
            self.error(f"lists the ways from {room} a second time")
        self.listed[room] = listed

    def _try(self, m: re.Match) -> None:
        nxt = self.room(m[1])
        if not self.path:
            raise _Unlabelable("'Try ...' before 'I start at ...'")
        self.searching("try")
        here = self.path[-1]
        if not self.maze.connected(here, nxt):
            self.error(f"tries {nxt} from {here}: no corridor {here}-{nxt}")
        elif here not in self.listed:
            self.error(f"tries {nxt} before listing the ways from {here}")
        elif nxt not in self.listed[here]:
            self.error(f"tries {nxt}, not among the ways listed from {here}")
        if nxt in self.visited:
            self.error(f"enters {nxt} a second time")
        self.tried.setdefault(here, set()).add(nxt)
        self.path.append(nxt)
        self.visited.add(nxt)

    def _leave(self, kind: str, m: re.Match) -> None:
        room = self.at(m[1], f"a {kind.replace('_', ' ')} sentence")
        back = self.room(m[2])
        if len(self.path) < 2:
            raise _Unlabelable(f"backs out of the start {room}: there is nowhere to go back to")
        if back != self.path[-2]:
            raise _Unlabelable(f"goes back from {room} to {back}, but it came from {self.path[-2]}")
        self.searching(kind)
        if kind == "exhausted":
            untried = [r for r in self.listed.get(room, ()) if r not in self.tried.get(room, ())]
            if untried:
                self.error(f"gives up on {room} before trying {', '.join(untried)}")
        needed = not self.maze.reaches_goal(room, avoiding=self.path[:-1])
        self.backtracks.append(Backtrack(m.start(), m.end(), kind, room, back, needed))
        self.path.pop()

    def _dead_end(self, m: re.Match) -> None:
        self._leave("dead_end", m)

    def _exhausted(self, m: re.Match) -> None:
        self._leave("exhausted", m)

    def _goal(self, m: re.Match) -> None:
        room = self.at(m[1], "a goal sentence")
        if room != self.maze.goal:
            self.error(f"says {room} is the goal; the goal is {self.maze.goal}")
            return
        self.reached = True

    def _answer(self, m: re.Match) -> None:
        rooms = tuple(self.room(r) for r in m[1].split())
        if self.answer is not None:
            self.error("a second 'Path:' line")
        self.answer = rooms
        if not self.maze.is_path(rooms):
            self.error(f"the answer {' '.join(rooms)} is not a path from the start to the goal")

    def fragment(self, start: int, rest: str) -> bool:
        """Whether a final fragment is the beginning of some sentence; one that can only
        begin a backtracking sentence is labelled as a truncated backtrack."""
        kinds = [k for k, rx in _PREFIXES.items() if rx.fullmatch(rest)]
        if not kinds:
            return False
        if set(kinds) <= set(BACKTRACK_KINDS) and len(self.path) >= 2:
            kind, room, back = kinds[0], self.path[-1], self.path[-2]
            needed = not self.maze.reaches_goal(room, avoiding=self.path[:-1])
            end = start + len(rest)
            self.backtracks.append(Backtrack(start, end, kind, room, back, needed, True))
        return True


def summarize(checks: Sequence[CheckedTrace]) -> dict[str, Any]:
    """What a set of checked chains (a model's samples) shows: how many could be labelled
    (and why not), how often the search backtracked, and how often that was needed."""
    labelled = [c for c in checks if c.labelable]
    backtracks = [b for c in labelled for b in c.backtracks]
    n = len(checks)

    def share(k: int, of: int) -> float | None:
        return k / of if of else None

    return {
        "chains": n,
        "labelable": len(labelled),
        "unlabelable": n - len(labelled),
        "unlabelable_reasons": dict(
            Counter(_reason_kind(c.reason) for c in checks if not c.labelable).most_common()
        ),  # fmt: skip
        "truncated": sum(c.truncated for c in labelled),
        "solved": sum(c.solved for c in labelled),
        "error_free": sum(not c.errors for c in labelled),
        "backtracks": len(backtracks),
        "needed": sum(b.needed for b in backtracks),
        "unneeded": sum(not b.needed for b in backtracks),
        "chains_that_backtrack": sum(bool(c.backtracks) for c in labelled),
        "backtracks_per_chain": share(len(backtracks), len(labelled)),
        "share_needed": share(sum(b.needed for b in backtracks), len(backtracks)),
        "share_labelable": share(len(labelled), n),
    }


def _reason_kind(reason: str | None) -> str:
    """A reason without its particulars (character positions, quoted text), for counting."""
    text = re.sub(r"at character \d+: .*", "at character N", reason or "")
    return re.sub(r"\b[A-Z]\b", "X", text)


def _sentence_at(text: str, pos: int) -> tuple[str, re.Match] | None:
    for kind, rx in _SENTENCES.items():
        m = rx.match(text, pos)
        if m:
            return kind, m
    return None


def check_trace(maze: Maze, text: str) -> CheckedTrace:
    """Replay ``text`` (a completion: the search after the prompt) against ``maze``."""
    reader = _Reader(maze)
    pos, n = 0, len(text)
    reason: str | None = None
    truncated = False
    try:
        while True:
            pos = _SPACE.match(text, pos).end()
            if pos >= n:
                break
            found = _sentence_at(text, pos)
            if found is None:
                rest = text[pos:]
                if "\n" not in rest.rstrip() and reader.fragment(pos, rest.rstrip()):
                    truncated = True
                    break
                snippet = rest[:40] + ("..." if len(rest) > 40 else "")
                raise _Unlabelable(f"cannot read the text at character {pos}: {snippet!r}")
            kind, m = found
            reader.read(kind, m)
            pos = m.end()
        if reader.sentences == 0 and not truncated:
            raise _Unlabelable("the text is empty")
        if not reader.path and not truncated:
            raise _Unlabelable("the search never starts ('I start at ...')")
    except _Unlabelable as err:
        reason = str(err)
    answer = reader.answer
    return CheckedTrace(
        labelable=reason is None,
        reason=reason,
        backtracks=tuple(reader.backtracks),
        errors=tuple(reader.errors),
        reached_goal=reader.reached,
        answer=answer,
        solved=reason is None and answer is not None and maze.is_path(answer),
        truncated=truncated,
        sentences=reader.sentences,
    )
