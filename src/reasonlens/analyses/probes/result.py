"""What probe training returns: scores with their baselines, controls and intervals.

A probe score means little alone: next to it sit the majority-class baseline (what guessing the
most common training label scores), the control (the same probe trained on shuffled labels:
how much a probe this flexible gets from nothing), and a bootstrap interval over test rows.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from reasonlens.errors import UserError, one_of
from reasonlens.runs.files import jsonable


@dataclass
class Score:
    """One metric per (probe, head) on the test rows, with bootstrap percentile intervals.

    `mean*` is the mean over heads with its own interval (the heads of one resample are averaged
    before taking percentiles, so it is an interval for the mean, not a mean of intervals).
    """

    value: torch.Tensor  # [P, H]
    low: torch.Tensor  # [P, H]
    high: torch.Tensor  # [P, H]
    mean: torch.Tensor  # [P]
    mean_low: torch.Tensor  # [P]
    mean_high: torch.Tensor  # [P]

    def row(self, i: int) -> dict[str, Any]:
        return {
            "value": jsonable(self.value[i]),
            "low": jsonable(self.low[i]),
            "high": jsonable(self.high[i]),
            "mean": jsonable(self.mean[i]),
            "mean_low": jsonable(self.mean_low[i]),
            "mean_high": jsonable(self.mean_high[i]),
        }


@dataclass
class ProbeResult:
    """Probes fitted for every key (e.g. (layer, position)), each with H heads.

    probe / baseline / control map a metric name ("accuracy", "weighted_f1") to a Score.
    `metric` is the headline one, used by the helpers when none is named.
    """

    keys: list[Hashable]
    heads: list[str]
    kind: str
    metric: str
    probe: dict[str, Score]
    baseline: dict[str, Score]
    control: dict[str, Score] | None
    train: dict[str, torch.Tensor]  # [P, H] metrics on the training rows (overfitting check)
    n_train: torch.Tensor  # [P, H] labelled training rows
    n_test: torch.Tensor  # [P, H] labelled test rows
    iterations: torch.Tensor  # [P, H] optimiser steps
    converged: torch.Tensor  # [P, H] bool
    weight: torch.Tensor | None = None  # [P, H, C, d] linear probes, on raw activations
    bias: torch.Tensor | None = None  # [P, H, C] (-inf for classes unseen in training)
    config: dict[str, Any] = field(default_factory=dict)
    # cross-fitting keeps every row's out-of-fold prediction [P, H, N] and the labels
    # [P or 1, N, H], so a report can resample problems and re-score any claim
    predictions: torch.Tensor | None = None
    control_predictions: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    # ---- lookup -------------------------------------------------------------------------
    def index(self, key: Hashable) -> int:
        try:
            return self.keys.index(key)
        except ValueError:
            raise UserError(f"no probe with key {key!r}; keys look like {self.keys[0]!r}") from None

    def score(self, which: str = "probe", metric: str | None = None) -> Score:
        """The Score of 'probe', 'baseline' or 'control' for `metric` (default: headline)."""
        sets = {"probe": self.probe, "baseline": self.baseline, "control": self.control}
        if which not in sets:
            raise one_of("score set", which, sets)
        chosen = sets[which]
        if chosen is None:
            raise UserError("no control was trained (fit_probes(..., control=False))")
        metric = metric or self.metric
        if metric not in chosen:
            raise one_of("metric", metric, chosen)
        return chosen[metric]

    def selectivity(self, metric: str | None = None) -> torch.Tensor:
        """Probe minus control score per (probe, head): what the labels, not the probe, explain."""
        return self.score("probe", metric).value - self.score("control", metric).value

    # ---- reductions ---------------------------------------------------------------------
    def curves(
        self, x: int = 0, which: str = "probe", metric: str | None = None, head: int | None = None
    ) -> dict[Hashable, tuple[list, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Score against key element `x` (e.g. the layer), one curve per rest of the key.

        Returns {rest: (xs, value, low, high)}, xs sorted. Keys that are not tuples form one
        curve named None with the keys themselves as xs. head=None averages the heads.
        """
        s = self.score(which, metric)
        if head is None:
            val, low, high = s.mean, s.mean_low, s.mean_high
        else:
            val, low, high = s.value[:, head], s.low[:, head], s.high[:, head]
        groups: dict[Hashable, list[tuple[Any, int]]] = {}
        for i, key in enumerate(self.keys):
            if isinstance(key, tuple):
                rest = key[:x] + key[x + 1 :]
                groups.setdefault(rest[0] if len(rest) == 1 else rest, []).append((key[x], i))
            else:
                groups.setdefault(None, []).append((key, i))
        out = {}
        for rest, items in groups.items():
            items.sort(key=lambda item: item[0])
            idx = torch.tensor([i for _, i in items])
            out[rest] = ([k for k, _ in items], val[idx], low[idx], high[idx])
        return out

    def best(
        self, x: int = 0, which: str = "probe", metric: str | None = None, head: int | None = None
    ) -> dict[Hashable, tuple[Any, float]]:
        """Max over key element `x` (e.g. over layers) per rest of the key: {rest: (x*, value)}."""
        out = {}
        for rest, (xs, val, _, _) in self.curves(x, which, metric, head).items():
            if bool(torch.isnan(val).all()):
                out[rest] = (None, math.nan)
                continue
            i = int(torch.nan_to_num(val, nan=-math.inf).argmax())
            out[rest] = (xs[i], float(val[i]))
        return out

    # ---- directions ---------------------------------------------------------------------
    def direction(
        self, key: Hashable, head: int = 0, cls: int = 1, normalize: bool = True
    ) -> torch.Tensor:
        """The linear probe's direction for class `cls` in activation space [d].

        w_cls minus the mean of the weights of the classes the head was trained on (softmax is
        unchanged by a common shift; for two classes this is (w1 - w0) / 2). Add it to, or
        project it out of, the activations at the probed site to steer.
        """
        if self.weight is None or self.bias is None:
            raise UserError("only linear probes (kept with keep_weights=True) have directions")
        i = self.index(key)
        seen = torch.isfinite(self.bias[i, head])
        if not bool(seen[cls]):
            raise UserError(f"class {cls} never occurs in the training labels of head {head}")
        w = self.weight[i, head]
        v = w[cls] - w[seen].mean(0)
        return v / v.norm().clamp(min=1e-12) if normalize else v

    # ---- output -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything but the weights, as strict JSON (NaN -> None, tuple keys -> lists)."""
        probes = []
        for i, key in enumerate(self.keys):
            entry: dict[str, Any] = {"key": list(key) if isinstance(key, tuple) else key}
            for name, sets in (("probe", self.probe), ("baseline", self.baseline)):
                entry[name] = {m: s.row(i) for m, s in sets.items()}
            if self.control is not None:
                entry["control"] = {m: s.row(i) for m, s in self.control.items()}
            entry["train"] = {m: jsonable(v[i]) for m, v in self.train.items()}
            entry["n_train"] = self.n_train[i].tolist()
            entry["n_test"] = self.n_test[i].tolist()
            entry["iterations"] = self.iterations[i].tolist()
            entry["converged"] = self.converged[i].tolist()
            probes.append(entry)
        return {
            "kind": self.kind,
            "metric": self.metric,
            "heads": list(self.heads),
            "config": self.config,
            "probes": probes,
        }

    def plot(
        self,
        path: str | Path,
        x: int = 0,
        metric: str | None = None,
        title: str | None = None,
        xlabel: str = "layer",
        legend: str | None = "position",
    ) -> Path:
        """PNG of score (mean over heads, with its interval) against key element `x`, one line
        per rest of the key; the majority baseline dashed in the same colour, the control dotted.
        """
        from matplotlib import colormaps
        from matplotlib.ticker import MaxNLocator

        from reasonlens.plots import new_figure, save_figure

        metric = metric or self.metric
        probe = self.curves(x, "probe", metric)
        base = self.curves(x, "baseline", metric)
        ctrl = self.curves(x, "control", metric) if self.control is not None else {}
        fig = new_figure(figsize=(7.5, 4.2), dpi=120)
        ax = fig.subplots()
        colours = colormaps["tab20" if len(probe) > 10 else "tab10"]
        for n, (rest, (xs, val, low, high)) in enumerate(probe.items()):
            colour = colours(n % colours.N)
            label = "probe" if rest is None else str(rest)
            ax.plot(xs, val.tolist(), color=colour, marker="o", markersize=3, label=label)
            ax.fill_between(xs, low.tolist(), high.tolist(), color=colour, alpha=0.12, lw=0)
            ax.plot(xs, base[rest][1].tolist(), color=colour, linestyle="--", linewidth=0.9)
            if rest in ctrl:
                ax.plot(xs, ctrl[rest][1].tolist(), color=colour, linestyle=":", linewidth=0.9)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{metric} (test, mean over heads)")
        note = "dashed: majority baseline" + ("; dotted: shuffled-label control" if ctrl else "")
        ax.set_title((title + "\n" if title else "") + note, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(
            fontsize=7,
            title=legend,
            title_fontsize=7,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
        )
        fig.tight_layout()
        return save_figure(fig, path)
