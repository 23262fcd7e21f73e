"""What lag probes return: the trained probes, and their scores with intervals over chains.

- :class:`LagProbes`: the fitted weights (on standardised features, with the standardisation),
  thresholds, and :meth:`LagProbes.evaluate` to score them on any chains of a source, with any
  labels over the same tokens (a control's);
- :class:`LagScores`: F1, AUC, precision, recall, the positive rate and the chance F1s per
  (feature set, lag), each an :class:`Estimate` with a percentile bootstrap interval over
  chains; the resamples are kept, so two scores of the same chains compare pairwise
  (:func:`compare`);
- :class:`LagProbeResult`: one fit: the probes, validation and test scores, the split, the
  training history; ``to_dict`` / ``per_example`` / ``plot`` as every analysis result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reasonlens.analyses.lag_probes import metrics as M
from reasonlens.analyses.lag_probes.rows import RowReader, probe_logits, score_chains
from reasonlens.analyses.stats import paired, percentile_interval, resample_weights
from reasonlens.errors import UserError
from reasonlens.runs.files import atomic_save_tensors, jsonable

if TYPE_CHECKING:
    from reasonlens.analyses.lag_probes.fit import ChainSplit
    from reasonlens.analyses.lag_probes.sources import ChainSource

#: Metric names of a LagScores, headline first.
METRICS = ("auc", "f1", "precision", "recall", "positive_rate", "chance_f1", "chance_f1_at_rate")
COUNTS = ("tp", "fp", "fn", "pos", "neg")


@dataclass
class Estimate:
    """One metric per (feature set, lag): value ``[F, K]``, interval bounds ``[F, K]`` (NaN
    without bootstrap), and the bootstrap resamples ``[B, F, K]`` (None without)."""

    value: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    samples: torch.Tensor | None = None

    def at(self, f: int, k: int) -> dict[str, float | None]:
        return {
            "value": jsonable(float(self.value[f, k])),
            "low": jsonable(float(self.low[f, k])),
            "high": jsonable(float(self.high[f, k])),
        }


@dataclass
class LagScores:
    """Scores of a grid of lag probes on some chains (see the module docstring)."""

    layers: list[Hashable]
    lags: list[int]
    chains: list[int]  # source indices of the scored chains
    ids: list[str]
    metrics: dict[str, Estimate]
    threshold: torch.Tensor  # [F, K] logit threshold used
    n_rows: torch.Tensor  # [F, K] rows with a target
    n_positive: torch.Tensor  # [F, K]
    counts: dict[str, torch.Tensor]  # tp/fp/fn/pos/neg per chain [C, F, K]
    pairs: torch.Tensor  # [F, K, C, C] AUC pair counts (see metrics.pair_matrix)
    bootstrap: int
    ci: float
    seed: int

    def __getitem__(self, metric: str) -> Estimate:
        if metric not in self.metrics:
            raise UserError(f"no metric {metric!r}; there are: {', '.join(self.metrics)}")
        return self.metrics[metric]

    def lag_index(self, lag: int) -> int:
        if lag not in self.lags:
            raise UserError(f"no lag {lag}; lags: {self.lags}")
        return self.lags.index(lag)

    def to_dict(self) -> dict[str, Any]:
        cells = []
        for f, layer in enumerate(self.layers):
            for k, lag in enumerate(self.lags):
                cell = {"layer": layer, "lag": lag}
                cell.update({m: e.at(f, k) for m, e in self.metrics.items()})
                cell["threshold"] = jsonable(float(self.threshold[f, k]))
                cell["n_rows"] = int(self.n_rows[f, k])
                cell["n_positive"] = int(self.n_positive[f, k])
                cells.append(cell)
        return {
            "n_chains": len(self.chains),
            "bootstrap": self.bootstrap,
            "ci": self.ci,
            "seed": self.seed,
            "cells": cells,
        }


def score_set(
    scores: torch.Tensor,
    targets: torch.Tensor,
    chain: torch.Tensor,
    n_chains: int,
    threshold: torch.Tensor,
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[dict[str, Estimate], dict[str, torch.Tensor], torch.Tensor]:
    """Metrics of logits ``scores [F, K, N]`` against ``targets [K, N]`` (-1: none), rows of
    ``n_chains`` chains (``chain [N]``), predicting positive at ``scores >= threshold [F, K]``.
    Returns (metrics, per-chain counts ``[C, F, K]``, pair matrices ``[F, K, C, C]``)."""
    n_f, n_k, n = scores.shape
    p = n_f * n_k
    flat = scores.reshape(p, n)
    target = targets.long()[None].expand(n_f, n_k, n).reshape(p, n)
    pred = flat >= threshold.to(flat.device).reshape(p, 1)
    counts = M.chain_counts(pred, target, chain, n_chains)  # [C, P]
    pairs = torch.stack([M.pair_matrix(flat[i], target[i], chain, n_chains) for i in range(p)])
    total = {k: v.sum(0) for k, v in counts.items()}
    point = M.rates(total["tp"], total["fp"], total["fn"], total["pos"], total["neg"])
    den = total["pos"] * total["neg"]
    point["auc"] = torch.where(den > 0, pairs.sum((1, 2)) / den.clamp(min=1e-300), torch.nan)
    samples: dict[str, torch.Tensor] = {}
    if bootstrap:
        # whole chains, from the torch stream the recorded intervals were made with
        weight = torch.from_numpy(resample_weights(n_chains, bootstrap, seed, draw="torch"))
        weight = weight.to(flat.device)
        for start in range(0, bootstrap, 100):
            w = weight[start : start + 100].double()
            part = M.rates(*(w @ counts[k] for k in COUNTS))
            part["auc"] = M.auc_samples(pairs, counts["pos"], counts["neg"], w)
            for name, value in part.items():
                samples.setdefault(name, []).append(value)
        samples = {k: torch.cat(v) for k, v in samples.items()}
    out = {}
    for name in METRICS:
        value = point[name].float().cpu().view(n_f, n_k)
        if bootstrap:
            s = samples[name].float().cpu().view(-1, n_f, n_k)
            low, high = percentile_interval(s, ci)
            out[name] = Estimate(value, low, high, s)
        else:
            nan = torch.full_like(value, math.nan)
            out[name] = Estimate(value, nan, nan.clone())
    per_chain = {k: v.float().cpu().view(n_chains, n_f, n_k) for k, v in counts.items()}
    return out, per_chain, pairs.float().cpu().view(n_f, n_k, n_chains, n_chains)


@dataclass
class LagProbes:
    """Fitted lag probes: ``weight [F, K, d]`` and ``bias [F, K]`` act on standardised
    features ``(x - mean) / scale``; ``threshold [F, K]`` is the logit above which a token is
    predicted positive; ``val_f1`` the validation F1 that chose each probe's epoch; ``onset``:
    they predict onsets (rows inside a span have no target), not every token."""

    layers: list[Hashable]
    lags: list[int]
    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    threshold: torch.Tensor
    val_f1: torch.Tensor
    onset: bool = False

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``[F, N, K]`` logits on raw features ``x [F, N, d]``."""
        z = (x.float() - self.mean[:, None]) / self.scale[:, None]
        return probe_logits(self.weight, self.bias, z)

    def activation_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w [F, K, d], b [F, K])`` on raw activations: ``x @ w + b`` is the logit."""
        w = self.weight / self.scale[:, None]
        return w, self.bias - torch.einsum("fkd,fd->fk", w, self.mean)

    def direction(self, layer: Hashable, lag: int, normalize: bool = True) -> torch.Tensor:
        """The probe's direction in activation space ``[d]`` (for steering or ablation)."""
        if layer not in self.layers:
            raise UserError(f"no layer {layer!r}; layers: {self.layers}")
        if lag not in self.lags:
            raise UserError(f"no lag {lag}; lags: {self.lags}")
        w = self.activation_weights()[0][self.layers.index(layer), self.lags.index(lag)]
        return w / w.norm().clamp(min=1e-12) if normalize else w

    def reader(
        self, source: ChainSource, device: str | torch.device | None = None, cache_bytes: int = 0
    ) -> RowReader:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if list(source.layers) != list(self.layers):
            raise UserError(
                f"the source's feature sets {list(source.layers)} are not the probes' {self.layers}"
            )
        return RowReader(
            source, tuple(self.lags), device, self.mean.to(device), self.scale.to(device),
            cache_bytes, self.onset,
        )  # fmt: skip

    def evaluate(
        self,
        source: ChainSource,
        chains: Sequence[int],
        *,
        labels: Sequence[torch.Tensor] | None = None,
        bootstrap: int = 1000,
        ci: float = 0.95,
        seed: int = 0,
        batch_tokens: int = 8192,
        device: str | torch.device | None = None,
        reader: RowReader | None = None,
    ) -> LagScores:
        """Scores on ``chains`` of ``source`` (``labels``: other labels for the same tokens,
        e.g. positives split by a control), bootstrapping chains with ``seed``: two
        evaluations of the same chains with the same seed share their resamples."""
        chains = list(chains)
        if not chains:
            raise UserError("no chains to score")
        reader = reader or self.reader(source, device)
        dev = reader.device
        scores, targets, where = score_chains(
            self.weight.to(dev), self.bias.to(dev), reader, chains, batch_tokens, labels
        )
        metrics, per_chain, pairs = score_set(
            scores, targets, where, len(chains), self.threshold, bootstrap, ci, seed
        )
        t = targets.long().cpu()
        n_rows = (t >= 0).sum(1)[None].expand(len(self.layers), -1).clone()
        n_pos = (t == 1).sum(1)[None].expand(len(self.layers), -1).clone()
        return LagScores(
            layers=list(self.layers),
            lags=list(self.lags),
            chains=chains,
            ids=[source.ids[i] for i in chains],
            metrics=metrics,
            threshold=self.threshold.clone(),
            n_rows=n_rows,
            n_positive=n_pos,
            counts=per_chain,
            pairs=pairs,
            bootstrap=bootstrap,
            ci=ci,
            seed=seed,
        )

    def save(self, path: str | Path) -> Path:
        """The probes as one safetensors file (layers and lags in its metadata)."""
        tensors = {
            name: getattr(self, name).contiguous()
            for name in ("weight", "bias", "mean", "scale", "threshold", "val_f1")
        }
        meta = {"layers": json.dumps(jsonable(self.layers)), "lags": json.dumps(self.lags)}
        if self.onset:
            meta["targets"] = "onset"
        atomic_save_tensors(path, tensors, meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> LagProbes:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        layers = [tuple(x) if isinstance(x, list) else x for x in json.loads(meta["layers"])]
        onset = meta.get("targets") == "onset"
        return cls(layers=layers, lags=json.loads(meta["lags"]), onset=onset, **tensors)


def compare(
    a: LagScores,
    b: LagScores,
    metric: str = "auc",
    layer_a: int | Sequence[int] = 0,
    layer_b: int | Sequence[int] = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Lag by lag, ``a``'s metric minus ``b``'s on the same chains and bootstrap resamples:
    the difference, its percentile interval at ``level``, the share of resamples where ``a``
    is higher, and ``beats`` (the interval lies above 0). ``layer_*``: the feature set per lag
    (one index for all lags, or one per lag, e.g. the best layer chosen on validation)."""
    if a.chains != b.chains or a.seed != b.seed or a.bootstrap != b.bootstrap:
        raise UserError("compare needs scores of the same chains with the same bootstrap seed")
    if a.lags != b.lags:
        raise UserError(f"the two scores have different lags: {a.lags} vs {b.lags}")
    if not a.bootstrap:
        raise UserError("compare needs bootstrap resamples (bootstrap > 0)")
    la = [layer_a] * len(a.lags) if isinstance(layer_a, int) else list(layer_a)
    lb = [layer_b] * len(b.lags) if isinstance(layer_b, int) else list(layer_b)
    ea, eb = a[metric], b[metric]
    out = []
    for k, lag in enumerate(a.lags):
        both = paired(ea.samples[:, la[k], k], eb.samples[:, lb[k], k], level)
        out.append(
            {
                "lag": lag,
                "a": jsonable(float(ea.value[la[k], k])),
                "b": jsonable(float(eb.value[lb[k], k])),
                "diff": jsonable(float(ea.value[la[k], k] - eb.value[lb[k], k])),
                "low": jsonable(both.low),
                "high": jsonable(both.high),
                "share_a_higher": jsonable(both.share_a_higher),
                "beats": both.a_higher,
            }
        )
    return out


@dataclass
class LagProbeResult:
    """One fit of a grid of lag probes (see :func:`~.fit.fit_lag_probes`)."""

    layers: list[Hashable]
    lags: list[int]
    split: ChainSplit
    probes: LagProbes
    val: LagScores
    test: LagScores
    best_epoch: torch.Tensor  # [F, K]
    epochs: int
    history: list[dict]
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def best_layers(self, metric: str = "auc") -> list[int]:
        """Per lag, the feature set with the best *validation* ``metric`` (never chosen on the
        test chains that are scored)."""
        v = torch.nan_to_num(self.val[metric].value, nan=-math.inf)
        return v.argmax(0).tolist()

    def best_per_lag(self, metric: str = "auc") -> list[dict[str, Any]]:
        """Per lag: the layer chosen on validation, and its test value with the interval."""
        out = []
        for k, (lag, f) in enumerate(zip(self.lags, self.best_layers(metric), strict=True)):
            out.append({"lag": lag, "layer": self.layers[f], **self.test[metric].at(f, k)})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": jsonable(self.layers),
            "lags": self.lags,
            "config": jsonable(self.config),
            "split": {k: len(v) for k, v in self.split.to_dict().items()},
            "epochs": self.epochs,
            "seconds": self.seconds,
            "history": jsonable(self.history),
            "best_epoch": self.best_epoch.tolist(),
            "val_f1": jsonable(self.probes.val_f1),
            "val_auc": jsonable(self.val["auc"].value),
            "best_per_lag": {m: self.best_per_lag(m) for m in ("auc", "f1")},
            "test": self.test.to_dict(),
        }

    def per_example(self) -> dict[str, torch.Tensor]:
        """Per test chain: the confusion counts ``[C, F, K]`` and AUC pair counts
        ``[F, K, C, C]``: any resample of chains re-scores every metric from these."""
        out = {name: v.contiguous() for name, v in self.test.counts.items()}
        out["auc_pairs"] = self.test.pairs.contiguous()
        out["chain"] = torch.tensor(self.test.chains, dtype=torch.long)
        return out

    def plot(self, path: str | Path, metric: str = "auc", title: str | None = None) -> Path:
        """PNG: test ``metric`` against lag, one line per layer with its interval; chance
        (0.5 for AUC, the chance F1 for F1) dashed."""
        from matplotlib import colormaps

        from reasonlens.plots import new_figure, save_figure

        est = self.test[metric]
        fig = new_figure(figsize=(7.5, 4.2), dpi=120)
        ax = fig.subplots()
        colours = colormaps["viridis"]
        for f, layer in enumerate(self.layers):
            c = colours(f / max(1, len(self.layers) - 1))
            ax.plot(self.lags, est.value[f].tolist(), color=c, marker="o", ms=3, label=str(layer))
            ax.fill_between(self.lags, est.low[f].tolist(), est.high[f].tolist(), color=c,
                            alpha=0.12, lw=0)  # fmt: skip
        if metric == "auc":
            ax.axhline(0.5, color="grey", ls="--", lw=0.9)
        elif metric == "f1":
            ax.plot(self.lags, self.test["chance_f1"].value[0].tolist(), color="grey", ls="--",
                    lw=0.9)  # fmt: skip
        ax.set_xlabel("lag (tokens ahead)")
        ax.set_ylabel(f"{metric} (test chains)")
        ax.set_title((title + "\n" if title else "") + "dashed: chance", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="layer", title_fontsize=7, loc="center left",
                  bbox_to_anchor=(1.0, 0.5), frameon=False)  # fmt: skip
        fig.tight_layout()
        return save_figure(fig, path)

    def heatmap(self, path: str | Path, metric: str = "auc", title: str | None = None) -> Path:
        """PNG: test ``metric`` as a layer x lag grid."""
        from reasonlens.plots import new_figure, save_figure

        value = self.test[metric].value
        fig = new_figure(figsize=(1.2 + 0.45 * len(self.lags), 1.2 + 0.4 * len(self.layers)))
        ax = fig.subplots()
        im = ax.imshow(value.numpy(), aspect="auto", cmap="viridis", origin="lower")
        ax.set_xticks(range(len(self.lags)), [str(k) for k in self.lags], fontsize=7)
        ax.set_yticks(range(len(self.layers)), [str(x) for x in self.layers], fontsize=7)
        for (f, k), v in zip(
            [(f, k) for f in range(len(self.layers)) for k in range(len(self.lags))],
            value.flatten().tolist(),
            strict=True,
        ):
            ax.text(k, f, "" if math.isnan(v) else f"{v:.2f}", ha="center", va="center",
                    fontsize=6, color="white")  # fmt: skip
        ax.set_xlabel("lag (tokens ahead)")
        ax.set_ylabel("layer")
        ax.set_title(title or f"{metric} (test chains)", fontsize=9)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        return save_figure(fig, path)
