"""A permutation null for lag probes: what the same probes score when the pairing of
activations with labels is broken, as a distribution, not one draw.

Each draw permutes the chains' labels among chains, aligned from each chain's first scored
token (:func:`~.controls.permuted_chain_labels`: where in a chain spans fall survives), and fits
the probe of each lag again on the same split, at the layer the real probe chose on validation
chains. The draws are batched: every draw's probes are columns of one fit per layer (the fit
treats each column alone, see ``fit``), so P draws cost one fit with P times the columns, not P
fits. Each draw is scored on the same test chains as the probe it judges; the null's upper
percentile (95th by default) is then a threshold like chance: the probe beats the null when its
whole bootstrap interval lies above it (a permutation test at that level, made no easier by
the probe's own sampling noise).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reasonlens.analyses.lag_probes.controls import permuted_chain_labels
from reasonlens.analyses.lag_probes.fit import ChainSplit, LagProbeConfig, _Fitter
from reasonlens.analyses.lag_probes.result import LagScores
from reasonlens.analyses.lag_probes.sources import ChainSource, FeatureSubset
from reasonlens.analyses.stats import generator, null_quantile, permutation_p
from reasonlens.analyses.stats import permutations as draw_permutations
from reasonlens.errors import UserError
from reasonlens.progress import Progress
from reasonlens.runs.files import jsonable
from reasonlens.threads import torch_threads


@dataclass
class PermutationNull:
    """Test AUC of every draw ``auc [P, K]`` (per lag, at ``layers[k]``) and the null's upper
    percentile (``quantile``): the AUC a probe with no association reaches on these test
    chains in all but ``1 - quantile`` of draws, which a probe must clear to beat the null."""

    lags: list[int]
    layers: list[Hashable]
    auc: torch.Tensor
    quantile: float
    chains: list[int]
    epochs: dict[str, int]
    seconds: float

    @property
    def permutations(self) -> int:
        return int(self.auc.shape[0])

    def upper(self) -> torch.Tensor:
        """``[K]``: the null's ``quantile`` over the draws, per lag."""
        return null_quantile(self.auc, self.quantile, axis=0)

    def compare(self, scores: LagScores, layers: Sequence[int]) -> list[dict]:
        """Lag by lag, the probe's AUC (``scores``, feature set ``layers[k]``) and its interval
        beside the null's upper percentile, their difference (the interval shifted by it) and
        the permutation p-value; ``beats``: the whole interval lies above the percentile."""
        if scores.chains != self.chains:
            raise UserError("the null and the scores must be of the same test chains")
        if scores.lags != self.lags:
            raise UserError(f"the null's lags {self.lags} are not the scores' {scores.lags}")
        upper = self.upper()
        est = scores["auc"]
        out = []
        for k, lag in enumerate(self.lags):
            f = layers[k]
            a, low, high = (float(x[f, k]) for x in (est.value, est.low, est.high))
            b = float(upper[k])
            out.append(
                {
                    "lag": lag,
                    "a": jsonable(a),
                    "b": jsonable(b),
                    "diff": jsonable(a - b),
                    "low": jsonable(low - b),
                    "high": jsonable(high - b),
                    "beats": bool(low - b > 0),
                    "p_value": permutation_p(a, self.auc[:, k]),
                }
            )
        return out

    def to_dict(self) -> dict:
        upper = self.upper()
        median = null_quantile(self.auc, 0.5, axis=0)
        return {
            "permutations": self.permutations,
            "quantile": self.quantile,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "per_lag": [
                {
                    "lag": lag,
                    "layer": jsonable(self.layers[k]),
                    "median": jsonable(float(median[k])),
                    "upper": jsonable(float(upper[k])),
                    "min": jsonable(float(np.nanmin(self.auc[:, k].numpy()))),
                    "max": jsonable(float(np.nanmax(self.auc[:, k].numpy()))),
                    "draws": [jsonable(round(float(x), 5)) for x in self.auc[:, k]],
                }
                for k, lag in enumerate(self.lags)
            ],
        }


def permutation_null(
    source: ChainSource,
    config: LagProbeConfig,
    split: ChainSplit,
    layers: Sequence[int],
    permutations: int = 100,
    *,
    seed: int | None = None,
    quantile: float = 0.95,
    max_epochs: int | None = None,
    progress: bool = False,
) -> PermutationNull:
    """``permutations`` draws of the null of the probes ``config`` fits on ``source``: per
    lag of ``config.lags``, at feature set ``layers[k]`` (the real probe's choice), on
    ``split``; the permutations come from ``seed`` (default: ``config.seed``). Scored on the
    test chains, as the real probes are. ``max_epochs`` caps the draws' fits (default: the
    probes' own)."""
    if permutations < 1:
        raise UserError(f"a permutation null needs at least one permutation, got {permutations}")
    if len(layers) != len(config.lags):
        raise UserError(f"{len(layers)} layers for {len(config.lags)} lags")
    started = time.perf_counter()
    n = len(source.ids)
    rng = generator(config.seed if seed is None else seed)
    label_sets = [
        permuted_chain_labels(source.labels, perm)
        for perm in draw_permutations(np.arange(n), permutations, rng)
    ]
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    auc = torch.full((permutations, len(config.lags)), torch.nan)
    epochs: dict[str, int] = {}
    groups: dict[int, list[int]] = {}
    for k, f in enumerate(layers):
        groups.setdefault(int(f), []).append(k)
    overrides = {"max_epochs": max_epochs} if max_epochs else {}
    with torch_threads(config.threads), Progress(progress, len(groups), "null fits") as bar:
        for f, ks in groups.items():
            sub = FeatureSubset(source, [f])
            cfg = LagProbeConfig(
                **{**config.to_dict(), "lags": tuple(config.lags[k] for k in ks), **overrides}
            )
            fitter = _Fitter(sub, cfg, split, device, label_sets)
            probes, history, _ = fitter.train()
            scores = probes.evaluate(
                sub, split.test, bootstrap=0, batch_tokens=config.batch_tokens, reader=fitter.rows
            )
            auc[:, ks] = scores["auc"].value[0].view(permutations, len(ks))
            epochs[str(source.layers[f])] = len(history)
            bar.advance()
    return PermutationNull(
        lags=list(config.lags),
        layers=[source.layers[f] for f in layers],
        auc=auc,
        quantile=quantile,
        chains=list(split.test),
        epochs=epochs,
        seconds=time.perf_counter() - started,
    )
