"""Verdicts that carry their uncertainty.

A claim ("MHSA extracts more than MLP") is a yes/no function of the analysed problems. Its
verdict is re-checked on bootstrap resamples of those problems: "agrees" with the paper only
when it holds in at least 95% of them, "differs" when it fails in at least 95%, and "unclear"
otherwise; below `MIN_PROBLEMS` no verdict is given at all. A resample is a vector of
multiplicities (how often each problem is drawn), so each claim is computed by one weighted
function for the observed data (all weights 1) and every resample alike.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Below this many problems a verdict would be noise: the report says so instead.
MIN_PROBLEMS = 30
RESAMPLES = 1000
LEVEL = 0.95

Claims = dict[str, bool | None]  # claim -> holds? (None: not measurable on these problems)


def resample_weights(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Bootstrap multiplicities [resamples, n]: each row sums to n."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def support(claims: Callable[[np.ndarray], Claims], n: int, seed: int = 0) -> dict[str, float]:
    """For each claim, the share of bootstrap resamples in which it holds (resamples where it
    is not measurable are left out)."""
    held: dict[str, list[bool]] = {}
    for weights in resample_weights(n, seed=seed):
        for name, value in claims(weights).items():
            if value is not None:
                held.setdefault(name, []).append(bool(value))
    return {name: float(np.mean(values)) for name, values in held.items()}


def verdicts(
    n: int,
    observed: Claims,
    per_problem: dict | None,
    claims: Callable[[dict, np.ndarray], Claims],
) -> dict[str, str]:
    """Claim -> verdict: `observed` on all problems, re-checked on bootstrap resamples of the
    per-problem values (`claims(per_problem, weights)`) where they are kept."""
    shares = {}
    if per_problem is not None and n >= MIN_PROBLEMS:
        shares = support(lambda w: claims(per_problem, w), n)
    return {name: verdict(n, value, shares.get(name)) for name, value in observed.items()}


def verdict(n: int, observed: bool | None, share: float | None, paper: bool = True) -> str:
    """The verdict on one claim: `observed` on all problems, `share` of resamples where it
    holds (None when there are no per-problem values to resample)."""
    if observed is None:
        return "not measurable here"
    if n < MIN_PROBLEMS:
        return f"inconclusive (n={n})"
    if share is None:
        return ("agrees" if observed == paper else "differs") + " (point estimate)"
    agree = share if paper else 1.0 - share
    if agree >= LEVEL:
        return f"agrees ({agree:.0%} of resamples)"
    if agree <= 1.0 - LEVEL:
        return f"differs ({1.0 - agree:.0%} of resamples)"
    return f"unclear (agrees in {agree:.0%} of resamples)"


EXPLANATION = (
    f"Verdicts: each claim is re-checked on {RESAMPLES:,} bootstrap resamples of the analysed "
    f"problems; *agrees* when it holds in at least {LEVEL:.0%} of them, *differs* when it fails "
    f"in at least {LEVEL:.0%}, *unclear* otherwise. Below {MIN_PROBLEMS} problems no verdict is "
    "given."
)


def weighted_nanmean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over axis 0 with multiplicities `weights`, ignoring NaN; NaN where nothing is left."""
    present = ~np.isnan(values)
    w = weights.reshape((-1,) + (1,) * (values.ndim - 1)) * present
    total = (np.nan_to_num(values) * w).sum(0)
    count = w.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
