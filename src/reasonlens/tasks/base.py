"""What every task gives the rest of reasonlens: items, how to read them, and how to score them.

Training, evaluation and the analyses never look inside a task. They see :class:`TaskItem`
(a prompt, the gold completion, named character spans into ``prompt + completion``, and labels)
and ask the :class:`Task` what a generated completion is worth, where generation should stop,
and how to break scores down. A task keeps its own rich item type (Blocksworld's ``Example``)
and converts it with :meth:`Task.item`; the item keeps it as ``source``.

Span names with a meaning outside the task:

- ``"answers"``: the spans teacher-forced scoring reads (one blank each, in order);
- ``"steps"``: the lines of a multi-step completion (the default generation limit leaves room
  for a few more of them).

Pure Python: nothing here imports torch or transformers, so commands that need no model start
fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError

Span = tuple[int, int]


class GoldError(UserError):
    """A file that reads well but whose gold completion the task can tell is wrong (its
    message names ``file:line`` and says what is wrong); callers show it as is."""


@dataclass(frozen=True)
class TaskItem:
    """One example of a task, as training and evaluation see it.

    ``labels`` are per-item metadata (copied, in order, into evaluation records); ``group`` is
    the cell of the task's design the item belongs to (e.g. a level and a size); ``split`` is
    ``"train"``/``"test"`` or ``""`` when the file does not say. ``source`` is the task's own
    object the item was made from, if any (ignored by comparisons).
    """

    id: str
    prompt: str
    completion: str
    spans: Mapping[str, tuple[Span, ...]] = field(default_factory=dict)
    labels: Mapping[str, Any] = field(default_factory=dict)
    group: str = ""
    split: str = ""
    source: Any = field(default=None, compare=False, repr=False)

    @property
    def text(self) -> str:
        """``prompt + completion``: every span indexes this string."""
        return self.prompt + self.completion


@dataclass(frozen=True)
class Breakdown:
    """One way to group scores: ``key(labels)`` names an item's group; ``row`` formats that
    name as a table row label (``"{} blocks"``)."""

    key: Callable[[Mapping[str, Any]], str]
    row: str = "{}"

    def __call__(self, labels: Mapping[str, Any]) -> str:
        return self.key(labels)

    def label(self, group: str) -> str:
        return self.row.format(group)


class Task(ABC):
    """A task: reads its files, recognises its records, scores generated completions.

    Class attributes describe it for summaries: ``title`` heads them ("Planning evaluation"),
    ``noun`` counts items ("12 problems"), ``notes`` are bullet lines explaining the metrics,
    ``expected`` says what a file should look like (appended to read errors), ``stop_rule``
    says how generation ends. ``metrics`` are the names in :meth:`score`'s dict that are
    rates, in table order; ``headers`` shortens some of them as table columns.
    """

    name: str
    title: str
    description: str
    metrics: tuple[str, ...] = ()
    headers: Mapping[str, str] = {}
    breakdowns: Mapping[str, Breakdown] = {}
    noun: str = "items"
    notes: tuple[str, ...] = ()
    expected: str = "expected JSONL: one JSON object per line"
    stop_rule: str = "EOS or the limit"

    @abstractmethod
    def read(self, path: str | Path) -> list[TaskItem]:
        """Every item in a file; a bad file raises a UserError naming ``file:line``: a record
        that does not parse, and a gold completion the task can tell is wrong (Blocksworld: an
        illegal plan), since scoring or training against it would measure the wrong thing."""

    @abstractmethod
    def recognizes(self, record: object) -> bool:
        """Whether a decoded JSONL record belongs to this task (read with :meth:`read`)."""

    @abstractmethod
    def score(self, item: TaskItem, completion: str) -> dict[str, Any]:
        """The verdicts on a generated ``completion`` (already :meth:`cut`)."""

    def stop(self, text: str) -> bool:
        """Whether a generated continuation is complete (generation of that row ends)."""
        return False

    def cut(self, text: str) -> str:
        """The part of a generated continuation that is scored."""
        return text

    def item(self, obj: Any) -> TaskItem:
        """``obj`` as a TaskItem: a TaskItem as is; a task with its own item type converts it."""
        if isinstance(obj, TaskItem):
            return obj
        raise TypeError(f"{self.name} items are TaskItems, got {type(obj).__name__}")

    def header(self, metric: str) -> str:
        """The table column header of ``metric``."""
        return self.headers.get(metric, metric)

    def __repr__(self) -> str:
        return f"<task {self.name}>"
