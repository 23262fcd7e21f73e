"""The current-step x future-step matrix of the future-decision probes (the paper's Fig 10),
drawn beside the paper's own, each cell with its majority baseline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _grid(cells: dict, n: int) -> np.ndarray:
    """{r: {c: value}} (str or int keys, steps from 1) -> [future step r, current step c]."""
    grid = np.full((n, n), np.nan)
    for r, row in cells.items():
        for c, value in row.items():
            if value is not None and not math.isnan(value):
                grid[int(r) - 1, int(c) - 1] = value
    return grid


def plot_future_matrix(
    matrix: dict, paper: dict[int, dict[int, float]] | None, path: Path, title: str
) -> Path:
    """Heat map of accuracy (max over layers) for decoding step r's answer at step c < r,
    annotated "accuracy (majority baseline)"; the paper's matrix beside it when given."""
    from reasonlens.plots import new_figure, save_figure

    steps = [int(r) for r in matrix["probe"]] + [int(r) for r in (paper or {})]
    n = max(steps, default=1)
    ours, base = _grid(matrix["probe"], n), _grid(matrix["baseline"], n)
    panels = [("this run", ours, base)]
    if paper:
        panels.append(("paper (Llama-2-7b)", _grid(paper, n), None))
    fig = new_figure(figsize=(4.2 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (label, values, baseline) in zip(axes[0], panels, strict=True):
        image = ax.imshow(values[1:, :-1], vmin=0, vmax=1, cmap="viridis")
        for i in range(1, n):
            for j in range(n - 1):
                if np.isnan(values[i, j]):
                    continue
                text = f"{values[i, j]:.2f}"
                if baseline is not None and not np.isnan(baseline[i, j]):
                    text += f"\n({baseline[i, j]:.2f})"
                colour = "black" if values[i, j] > 0.6 else "white"
                ax.text(j, i - 1, text, ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(n - 1), [str(c) for c in range(1, n)])
        ax.set_yticks(range(n - 1), [str(r) for r in range(2, n + 1)])
        ax.set_xlabel("current step (representation read)")
        ax.set_ylabel("future step (answer decoded)")
        ax.set_title(label, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=130, bbox_inches="tight")
