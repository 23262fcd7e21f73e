"""How far ahead future-decision probes reach as plans get longer: one figure, one curve a level."""

from __future__ import annotations

import math
from pathlib import Path


def reach_by_distance(matrix: dict) -> dict[int, tuple[float, float]]:
    """From a current x future matrix ({r: {c: acc}}), the mean accuracy and mean majority
    baseline at each distance k = r - c."""
    by_k: dict[int, list[tuple[float, float]]] = {}
    for r, row in matrix["probe"].items():
        for c, acc in row.items():
            base = matrix["baseline"][r][c]
            if not math.isnan(acc):
                by_k.setdefault(int(r) - int(c), []).append((acc, base))
    return {
        k: (sum(a for a, _ in v) / len(v), sum(b for _, b in v) / len(v))
        for k, v in sorted(by_k.items())
    }


def plot_horizons(matrices: dict[int, dict], path: Path, title: str) -> Path:
    """Accuracy of predicting the decision k steps ahead, one line per plan length (level),
    the majority baseline dashed in the same colour."""
    from reasonlens.plots import new_figure, save_figure

    fig = new_figure(figsize=(6, 3.8))
    ax = fig.subplots()
    for level, matrix in sorted(matrices.items()):
        reach = reach_by_distance(matrix)
        ks = list(reach)
        (line,) = ax.plot(ks, [reach[k][0] for k in ks], marker="o", label=f"L{level}")
        ax.plot(ks, [reach[k][1] for k in ks], ls="--", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("steps ahead (future step - current step)")
    ax.set_ylabel("probe accuracy (max over layers)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(title="plan length", frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
