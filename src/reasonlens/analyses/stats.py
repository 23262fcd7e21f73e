"""One bootstrap for every study: resamples of groups, percentile intervals, paired comparisons.

**What is resampled.** The unit a study's conclusions generalise over is a *group*: a problem,
a chain, a scenario. Rows inside one group (the tokens of a chain, the five attribute weights
of a scenario) are not independent, so a resample draws whole groups with replacement. It is
given either as indices ``[resamples, n]`` (which groups each resample takes, for statistics
computed on the resampled data) or as multiplicities ``[resamples, n]`` (how often each group
is taken, for statistics that are weighted sums: every resample at once in a matrix product).
:func:`row_weights` spreads group multiplicities onto the rows of each group.

**Reproducible draws.** A resample is fixed by ``(n, resamples, seed, draw)``. ``draw`` names
the random stream, because the studies' recorded numbers were made with three of them and
must not move: ``"integers"`` (numpy ``default_rng(seed).integers``, the default),
``"multinomial"`` (numpy ``default_rng(seed).multinomial``: the counts directly) and
``"torch"`` (``torch.randint`` with ``torch.Generator().manual_seed(seed)``). Each is a
correct bootstrap; they differ only in which resamples a seed gives. Indices and
multiplicities of one draw describe the same resamples.

**Intervals and comparisons.** :func:`percentile_interval` is the percentile interval over the
resamples, leaving out resamples where the statistic is undefined (NaN). :func:`paired`
compares two estimates computed on the *same* resamples: the interval of their difference and
the share of resamples in which the first is higher. Pairing removes the resampling noise the
two share, which two separate intervals would count twice.

**Permutation nulls.** A control fitted once on shuffled labels is one draw from a null
distribution, and can sit anywhere in it (below chance, too). :func:`null_quantile` gives the
null's upper percentile (per bootstrap resample too, so an estimate can be compared with it
pairwise) and :func:`permutation_p` the permutation p-value of an observed statistic.

Nothing here imports torch unless a torch draw or a torch tensor is asked for, so the report
(which only needs numpy) stays light.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "DRAWS",
    "Draw",
    "Paired",
    "generator",
    "null_quantile",
    "paired",
    "percentile_interval",
    "permutation_p",
    "permutations",
    "resample_indices",
    "resample_weights",
    "row_weights",
]

Draw = Literal["integers", "multinomial", "torch"]
#: The random streams a resample can come from (see the module doc).
DRAWS: tuple[str, ...] = ("integers", "multinomial", "torch")


def generator(seed: int) -> np.random.Generator:
    """The numpy generator every numpy draw here starts from (PCG64, seeded by ``seed``), for
    callers that make their own draws in sequence (e.g. one permutation after another)."""
    return np.random.default_rng(seed)


def _check(n: int, resamples: int, draw: str) -> None:
    if n < 1:
        raise ValueError(f"need at least one group to resample, got n={n}")
    if resamples < 0:
        raise ValueError(f"resamples must be >= 0, got {resamples}")
    if draw not in DRAWS:
        raise ValueError(f"unknown draw {draw!r}; one of {', '.join(DRAWS)}")


def _torch_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(n, (resamples, n), generator=gen).numpy()


def _multinomial(n: int, resamples: int, seed: int) -> np.ndarray:
    return generator(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)


def resample_indices(n: int, resamples: int, seed: int, draw: Draw = "integers") -> np.ndarray:
    """``[resamples, n]`` int64: the groups (0..n-1) each bootstrap resample takes, drawn with
    replacement. A ``"multinomial"`` draw has no order, so its indices come sorted."""
    _check(n, resamples, draw)
    if draw == "integers":
        return generator(seed).integers(0, n, (resamples, n))
    if draw == "torch":
        return _torch_indices(n, resamples, seed)
    counts = _multinomial(n, resamples, seed)
    return np.repeat(np.tile(np.arange(n), resamples), counts.ravel()).reshape(resamples, n)


def resample_weights(n: int, resamples: int, seed: int, draw: Draw = "integers") -> np.ndarray:
    """``[resamples, n]`` float64 multiplicities: how often each group is taken in each
    bootstrap resample (each row sums to n; the same resamples as :func:`resample_indices`).
    A weighted statistic with these weights is the statistic of the resampled data."""
    _check(n, resamples, draw)
    if draw == "multinomial":
        return _multinomial(n, resamples, seed).astype(np.float64)
    idx = resample_indices(n, resamples, seed, draw)
    flat = (idx + np.arange(resamples)[:, None] * n).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def row_weights(weights: np.ndarray, group: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[resamples, rows]`` row multiplicities from group multiplicities ``[resamples, n]``
    and the group of each row: a row counts as often as its group was drawn, so the rows of
    one group are always taken together."""
    return weights[:, np.asarray(group, dtype=np.int64)]


def permutations(values: Any, times: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``times`` random orderings of ``values`` from ``rng`` (for a permutation null: what a
    statistic gives when the pairing it measures is broken). Drawn one after the other, so a
    generator shared across calls gives each call the next draws."""
    return [rng.permutation(values) for _ in range(times)]


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    return torch is not None and isinstance(x, torch.Tensor)


def percentile_interval(samples: Any, level: float = 0.95, axis: int = 0) -> tuple[Any, Any]:
    """``(low, high)``: the ``(1 - level) / 2`` and ``1 - (1 - level) / 2`` quantiles of the
    bootstrap ``samples`` along ``axis`` (the resamples), linearly interpolated, NaN samples
    (resamples where the statistic is undefined) left out; NaN where none is left.

    A numpy array gives numpy bounds (0-d for 1-d samples); a torch tensor gives tensors of
    its dtype, computed by torch (a float32 statistic keeps its float32 interval)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if _is_tensor(samples):
        import torch

        tail = (1 - level) / 2
        q = torch.tensor([tail, 1 - tail], dtype=samples.dtype, device=samples.device)
        bounds = torch.nanquantile(samples, q, dim=axis)
        return bounds[0], bounds[1]
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():  # an all-NaN column is NaN, as documented
        warnings.simplefilter("ignore", RuntimeWarning)
        bounds = np.nanpercentile(np.asarray(samples), [tail, 100 - tail], axis=axis)
    return bounds[0], bounds[1]


def null_quantile(null: Any, q: float = 0.95, axis: int = -1) -> Any:
    """The ``q`` quantile of a permutation null along ``axis`` (the permutations), linearly
    interpolated, NaN draws left out (NaN where none is left): the value an estimate must
    exceed to beat the null at level ``q``. Numpy in, numpy out; a torch tensor stays one."""
    if not 0 < q < 1:
        raise ValueError(f"q must be between 0 and 1, got {q}")
    if _is_tensor(null):
        import torch

        return torch.nanquantile(null, q, dim=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(np.asarray(null), q, axis=axis)


def permutation_p(observed: float, null: Any) -> float | None:
    """One-sided permutation p-value of ``observed`` against the draws of its null ``[P]``:
    ``(1 + #{null >= observed}) / (1 + P)`` over the draws that are not NaN (None: none)."""
    draws = np.asarray(null.tolist() if _is_tensor(null) else null, dtype=np.float64).ravel()
    draws = draws[~np.isnan(draws)]
    if not draws.size or observed is None or np.isnan(observed):
        return None
    return float((1 + np.sum(draws >= observed)) / (1 + draws.size))


@dataclass(frozen=True)
class Paired:
    """Estimate A minus estimate B over the same resamples: the percentile interval of the
    difference, the share of resamples in which A is higher (None when no resample has both),
    and how many resamples had both."""

    low: float
    high: float
    share_a_higher: float | None
    n: int

    @property
    def a_higher(self) -> bool:
        """A beats B: the whole interval of the difference lies above 0."""
        return self.low > 0


def paired(a: Any, b: Any, level: float = 0.95) -> Paired:
    """Compare two statistics ``a`` and ``b`` ``[resamples]`` computed on the same bootstrap
    resamples (numpy arrays or torch tensors). A resample where either is NaN is left out."""
    if a.shape != b.shape or len(a.shape) != 1:
        raise ValueError(f"need two [resamples] vectors of one length, got {a.shape}, {b.shape}")
    diff = a - b
    low, high = percentile_interval(diff, level)
    if _is_tensor(diff):
        finite = diff[~diff.isnan()]
        share = float((finite > 0).double().mean()) if finite.numel() else None
    else:
        finite = diff[~np.isnan(diff)]
        share = float((finite > 0).mean()) if finite.size else None
    return Paired(float(low), float(high), share, int(len(finite)))
