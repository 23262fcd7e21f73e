"""Which tasks exist, built on first use, and which one a data record belongs to.

A task is named here by the module that defines it, so looking one up imports only that task
(no torch, no other task). New tasks add one line to ``_FACTORIES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from reasonlens.errors import one_of
from reasonlens.tasks.base import Task

#: task name -> "module:class" that builds it (asked in this order by :func:`task_for_record`)
_FACTORIES: dict[str, str] = {
    "blocksworld": "reasonlens.tasks.blocksworld.task:BlocksworldTask",
    "preferences": "reasonlens.tasks.preferences.task:PreferencesTask",
    "backtracking": "reasonlens.tasks.backtracking.task:BacktrackingTask",
}


class _Tasks(Mapping[str, Task]):
    """Name -> task, each built (imported) the first time it is asked for."""

    def __init__(self, factories: Mapping[str, str]):
        self._factories = dict(factories)
        self._built: dict[str, Task] = {}

    def __getitem__(self, name: str) -> Task:
        if name not in self._built:
            module, attr = self._factories[name].split(":")
            self._built[name] = getattr(importlib.import_module(module), attr)()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


TASKS: Mapping[str, Task] = _Tasks(_FACTORIES)


def get_task(name: str) -> Task:
    """The task called ``name``; a UserError listing the known ones otherwise."""
    if name not in TASKS:
        raise one_of("task", name, tuple(TASKS))
    return TASKS[name]


def task_for_record(record: object) -> Task | None:
    """The first task that recognises ``record`` (a decoded JSONL line), or None."""
    return next((task for task in TASKS.values() if task.recognizes(record)), None)
