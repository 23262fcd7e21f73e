"""One progress display for every long loop: rich on stderr (so stdout stays clean), or nothing.

Bars share one live display, so a bar opened inside another (an analysis inside a study's
stage) shows beneath it instead of fighting it for the terminal. When a bar closes, it leaves a
line saying what it did and how long it took: the terminal keeps a record of every step of a
long run, and :func:`say` adds lines (a stage starting, finishing) to the same record.
"""

from __future__ import annotations

import time
from typing import Any

_live: dict[str, Any] = {"bar": None, "users": 0}


def _console():
    from rich.console import Console

    bar = _live["bar"]
    return bar.console if bar is not None else Console(stderr=True)


def say(text: str) -> None:
    """A line on stderr, above any bars on show."""
    _console().print(text, highlight=False)


class Progress:
    """A bar over `total` units, shown only when `enabled`; on closing, a line with the count
    and the seconds it took (none when `transient`)."""

    def __init__(self, enabled: bool, total: int, label: str, transient: bool = False):
        self._bar = None
        self._text = label
        self._transient = transient
        self._done = 0
        self._total = total
        self._start = time.perf_counter()
        if enabled:
            self._bar = _acquire()
            self._task = self._bar.add_task(label, total=total)

    def label(self, text: str) -> None:
        """What the bar is doing now (its closing line keeps the label it opened with)."""
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self, n: int = 1) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is None:
            return
        bar, self._bar = self._bar, None
        bar.remove_task(self._task)
        if not self._transient:
            seconds = time.perf_counter() - self._start
            bar.console.print(
                f"  {self._text}: {self._done} of {self._total} in {seconds:.0f} s",
                highlight=False,
            )
        _release()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _acquire():
    if _live["bar"] is None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        bar.start()
        _live["bar"] = bar
    _live["users"] += 1
    return _live["bar"]


def _release() -> None:
    _live["users"] -= 1
    if _live["users"] <= 0 and _live["bar"] is not None:
        _live["bar"].stop()
        _live["bar"] = None
        _live["users"] = 0
