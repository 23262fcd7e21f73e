"""One progress bar for every long loop: rich on stderr (so stdout stays clean), or nothing."""

from __future__ import annotations


class Progress:
    """A rich progress bar over `total` units, shown only when `enabled`."""

    def __init__(self, enabled: bool, total: int, label: str, transient: bool = False):
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(console=Console(stderr=True), transient=transient)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def label(self, text: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
