"""Verdicts that carry their uncertainty, and survive their control.

A claim ("MHSA extracts more than MLP") is a yes/no function of the analysed problems. Its
verdict is re-checked on bootstrap resamples of those problems: "agrees" with the paper only
when it holds in at least 95% of them, "differs" when it fails in at least 95%, and "unclear"
otherwise; below `MIN_PROBLEMS` no verdict is given at all. A resample is a vector of
multiplicities (how often each problem is drawn), so each claim is computed by one weighted
function for the observed data (all weights 1) and every resample alike.

A claim about something fine-tuning is meant to have created is also computed on a *control*
that cannot have it (the base model before fine-tuning, on the same problems, resampled with
the same weights). It agrees only when the control clearly fails it (in at most 5% of the
resamples); a claim the control satisfies too is no evidence and reads "holds for the control
too" (:mod:`reasonlens.report.verdicts`: one vocabulary for every study). A measurement that
is degenerate on a model (both rates near 0, no spread to compare) is not a claim at all: its
function returns :class:`Degenerate` with the reason, and the verdict says "not measurable".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reasonlens.analyses.stats import resample_weights
from reasonlens.report.verdicts import (
    AGREES,
    DIFFERS,
    Verdict,
    by_support,
    not_measurable,
    too_few,
)
from reasonlens.report.verdicts import MIN_UNITS as MIN_PROBLEMS

RESAMPLES = 1000


@dataclass(frozen=True)
class Degenerate:
    """A measurement that cannot decide the claim on this model, and why."""

    reason: str


Claims = dict[str, "bool | None | Degenerate"]  # claim -> holds? (None: no data for it)


@dataclass(frozen=True)
class Control:
    """The same claims on a control: its observed values, its per-problem data, and what it
    is (for the verdict: "holds for the untrained model too")."""

    observed: Claims
    per_problem: dict | None
    name: str = "the untrained model"


def support(claims: Callable[[np.ndarray], Claims], n: int, seed: int = 0) -> dict[str, float]:
    """For each claim, the share of bootstrap resamples in which it holds. A resample where
    the measurement is degenerate does not support the claim (it counts as not holding);
    one with no data for it at all (None) is left out."""
    held: dict[str, list[bool]] = {}
    # the multinomial draw: the stream these verdicts were first recorded with
    for weights in resample_weights(n, RESAMPLES, seed, draw="multinomial"):
        for name, value in claims(weights).items():
            if value is not None:
                held.setdefault(name, []).append(not isinstance(value, Degenerate) and bool(value))
    return {name: float(np.mean(values)) for name, values in held.items()}


def verdicts(
    n: int,
    observed: Claims,
    per_problem: dict | None,
    claims: Callable[[dict, np.ndarray], Claims],
    control: Control | None = None,
    learned: frozenset[str] | None = None,
) -> dict[str, Verdict]:
    """Claim -> verdict: `observed` on all problems, re-checked on bootstrap resamples of the
    per-problem values (`claims(per_problem, weights)`) where they are kept, and, for the
    claims in `learned` (default: all), against the same resamples of the `control`."""
    shares: dict[str, float] = {}
    if per_problem is not None and n >= MIN_PROBLEMS:
        shares = support(lambda w: claims(per_problem, w), n)
    controls: dict[str, float] = {}
    if control is not None and control.per_problem is not None and n >= MIN_PROBLEMS:
        controls = support(lambda w: claims(control.per_problem, w), n)
    out = {}
    for name, value in observed.items():
        checked = control is not None and (learned is None or name in learned)
        out[name] = verdict(
            n,
            value,
            shares.get(name),
            control=(control.observed.get(name), controls.get(name)) if checked else None,
            control_name=control.name if control is not None else "the untrained model",
        )
    return out


def verdict(
    n: int,
    observed: bool | None | Degenerate,
    share: float | None,
    paper: bool = True,
    control: tuple[bool | None | Degenerate, float | None] | None = None,
    control_name: str = "the untrained model",
) -> Verdict:
    """The verdict on one claim: `observed` on all problems, `share` of resamples where it
    holds (None when there are no per-problem values to resample), and the control's
    (observed, share) for a claim about something learned."""
    if isinstance(observed, Degenerate):
        return not_measurable(observed.reason)
    if observed is None:
        return not_measurable("no data for it here")
    if n < MIN_PROBLEMS:
        return not_measurable(too_few(n))
    if share is None:  # a run written before per-problem values were kept
        word = AGREES if observed == paper else DIFFERS
        return Verdict(word, "point estimate: no per-problem values to resample")
    c_agree = None
    if control is not None:
        c_observed, c_share = control
        if c_share is None:  # no control values to resample: its observed value decides
            c_share = 1.0 if c_observed is paper else 0.0
        c_agree = c_share if paper else 1.0 - c_share
    return by_support(share if paper else 1.0 - share, c_agree, control_name)


def weighted_nanmean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over axis 0 with multiplicities `weights`, ignoring NaN; NaN where nothing is left."""
    present = ~np.isnan(values)
    w = weights.reshape((-1,) + (1,) * (values.ndim - 1)) * present
    total = (np.nan_to_num(values) * w).sum(0)
    count = w.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
