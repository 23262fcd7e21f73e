"""Figures without pyplot: a `matplotlib.figure.Figure` drawn on its own canvas, saved
atomically. No global backend is switched, so a user's notebook or GUI backend is untouched
and no window ever opens from library code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from reasonlens.runs.files import atomic_write_bytes


def new_figure(**kwargs: Any):
    """A matplotlib Figure (`figsize`, `dpi`, ...) not registered with pyplot."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, path: str | Path, **savefig: Any) -> Path:
    """Render `fig` as PNG into `path` (whole or not at all)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
