"""Recovering the weights a model acts on from its decisions: one logistic regression per
scenario of choosing "A" on the five range-normalised differences (A_i - B_i) / (max_i - min_i),
with an intercept.

Why each choice (the original is a brms regression with a normal(0, 1) prior on the slopes,
read as its posterior mean; `measure_preferences.R`):

- ``"l2"`` (default): the objective of scikit-learn's ``LogisticRegression(C=1,
  solver="lbfgs")``, the MAP estimate under the same N(0, 1) prior on the slopes
  (``C * sum(log-loss) + ||w||^2 / 2``, the intercept *not* penalised: with lbfgs the L2 term
  is computed on the coefficients only, ``LinearModelLoss.l2_penalty``; only liblinear
  penalises a synthetic intercept feature; checked in the installed scikit-learn 1.9.1,
  uv.lock). It is minimised here by Newton's method, which reaches the same optimum (a test
  compares the two) about 100 times faster for six parameters. The prior keeps the estimate
  finite when a scenario's decisions are separable, which happens often with 50 trials (28 of
  100 per model in the release).
- ``"unregularised"``: maximum likelihood (``C=inf``, i.e. no penalty). It has no finite
  estimate when the two classes are separable by a hyperplane in the five differences
  (complete separation) or separable up to points on it (quasi-complete): such scenarios are
  found by a linear program, named, and excluded with the reason instead of reporting
  coefficients that only grow with the optimiser's iterations.
- A scenario whose valid decisions are all one letter has no slopes to estimate: it is
  flagged and excluded, never given weights of 0 (a public reproduction set them to 0 and
  pooled the zeros into its correlation).
- Invalid replies are dropped from the regression and counted per scenario.
- Each scenario's slopes are rescaled to max |b| = 100 with their signs kept, the scale of the
  targets, so that no scenario with large coefficients dominates a pooled correlation. The
  floats are kept; the release rounds them to integers (on its files that moves r by
  about 0.0001).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from reasonlens.errors import one_of
from reasonlens.tasks.preferences.release import Decision, Weights
from reasonlens.tasks.preferences.scenarios import Scenario

Regression = Literal["l2", "unregularised"]
REGRESSIONS: tuple[str, ...] = ("l2", "unregularised")

#: Each scenario's learned weights are rescaled so that the largest |b| is this.
SCALE = 100.0

#: Margin (in units of the normalised differences) above which a linear program's optimum
#: counts as a separating hyperplane rather than rounding error.
_SEPARATION_TOL = 1e-7


@dataclass(frozen=True)
class ScenarioFit:
    """One scenario's regression: the counts, its raw slopes and intercept, the slopes
    rescaled to max |b| = 100 (`weights`), whether the decisions are separable, and, when it
    yields no weights, why (`excluded`)."""

    scenario: str
    n_trials: int
    n_invalid: int
    n_a: int
    slopes: tuple[float, ...] | None = None
    intercept: float | None = None
    weights: tuple[float, ...] | None = None
    separation: str | None = None
    excluded: str | None = None

    @property
    def n_valid(self) -> int:
        return self.n_trials - self.n_invalid

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "n_trials": self.n_trials,
            "n_invalid": self.n_invalid,
            "n_a": self.n_a,
            "slopes": self.slopes,
            "intercept": self.intercept,
            "weights": self.weights,
            "separation": self.separation,
            "excluded": self.excluded,
        }


@dataclass
class Recovery:
    """Every scenario's fit, in the order the scenarios first occur in the decisions."""

    regression: str
    fits: dict[str, ScenarioFit] = field(default_factory=dict)

    @property
    def learned(self) -> Weights:
        """Rescaled learned weights of the scenarios that have them."""
        return {n: f.weights for n, f in self.fits.items() if f.weights is not None}

    @property
    def excluded(self) -> dict[str, str]:
        """Why each excluded scenario has no weights."""
        return {n: f.excluded for n, f in self.fits.items() if f.excluded is not None}

    @property
    def separable(self) -> dict[str, str]:
        """Scenarios whose valid decisions are separable ("complete"/"quasi-complete")."""
        return {n: f.separation for n, f in self.fits.items() if f.separation is not None}

    @property
    def n_trials(self) -> int:
        return sum(f.n_trials for f in self.fits.values())

    @property
    def n_invalid(self) -> int:
        return sum(f.n_invalid for f in self.fits.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "regression": self.regression,
            "n_scenarios": len(self.fits),
            "n_used": len(self.learned),
            "n_excluded": len(self.excluded),
            "excluded": self.excluded,
            "separable": self.separable,
            "n_trials": self.n_trials,
            "n_invalid": self.n_invalid,
            "invalid_rate": self.n_invalid / self.n_trials if self.n_trials else None,
        }


def differences(scenario: Scenario, a: Sequence[float], b: Sequence[float]) -> list[float]:
    """(A_i - B_i) / (max_i - min_i): the regression's five predictors for one trial."""
    return [(x - y) / attr.span for x, y, attr in zip(a, b, scenario.attributes, strict=True)]


def separation(x: np.ndarray, y: np.ndarray) -> str | None:
    """Whether the outcomes `y` (0/1) are separable by a hyperplane in `x` (n x k) with an
    intercept: "complete" (every point strictly on its side), "quasi-complete" (some on the
    hyperplane), or None (the classes overlap, so the maximum-likelihood estimate is finite;
    Albert & Anderson 1984). Linear programs over a box-bounded direction: one when the classes
    overlap, two when they are separable (to tell which kind)."""
    from scipy.optimize import linprog

    z = np.column_stack([np.ones(len(x)), x])
    m = (2 * y - 1)[:, None] * z  # row i: s_i * [1, x_i], s_i = +1 for "A", -1 for "B"
    k = z.shape[1]
    box = [(-1.0, 1.0)] * k
    # separable at all (complete or quasi-complete): some beta with every s_i * z_i . beta >= 0
    # and their sum > 0. Overlapping classes (the usual case) need only this one program.
    quasi = linprog(c=-m.sum(axis=0), A_ub=-m, b_ub=np.zeros(len(m)), bounds=box, method="highs")
    if not (quasi.status == 0 and -quasi.fun > _SEPARATION_TOL):
        return None
    # complete: max t such that s_i * z_i . beta >= t for every i
    complete = linprog(
        c=np.r_[np.zeros(k), -1.0],
        A_ub=np.column_stack([-m, np.ones(len(m))]),
        b_ub=np.zeros(len(m)),
        bounds=[*box, (None, 1.0)],
        method="highs",
    )
    if complete.status == 0 and -complete.fun > _SEPARATION_TOL:
        return "complete"
    return "quasi-complete"


def rescale(slopes: Sequence[float], scale: float = SCALE) -> tuple[float, ...] | None:
    """`slopes` times scale / max |b| (signs kept), or None when every slope is 0."""
    biggest = max(abs(s) for s in slopes)
    if biggest == 0 or not math.isfinite(biggest):
        return None
    return tuple(scale * s / biggest for s in slopes)


def fit_scenario(
    scenario: Scenario,
    decisions: Iterable[Decision],
    regression: Regression = "l2",
    c: float = 1.0,
) -> ScenarioFit:
    """The regression for one scenario's decisions (see the module docstring). `c` is
    scikit-learn's C for "l2" (1: the N(0, 1) prior)."""
    if regression not in REGRESSIONS:
        raise one_of("regression", regression, REGRESSIONS)
    rows, outcomes, n_trials = [], [], 0
    for d in decisions:
        n_trials += 1
        choice = d.choice
        if choice is None:
            continue
        rows.append(differences(scenario, d.a, d.b))
        outcomes.append(1 if choice == "A" else 0)
    n_valid, n_a = len(outcomes), sum(outcomes)
    base = {"scenario": scenario.short_name, "n_trials": n_trials}
    base |= {"n_invalid": n_trials - n_valid, "n_a": n_a}
    if n_valid == 0:
        return ScenarioFit(**base, excluded="no valid decisions")
    if n_a in (0, n_valid):
        letter = "A" if n_a else "B"
        return ScenarioFit(**base, excluded=f"one outcome class (all {n_valid} valid are {letter})")
    x, y = np.asarray(rows, dtype=float), np.asarray(outcomes, dtype=float)
    separable = separation(x, y)
    if regression == "unregularised":
        if separable is not None:
            return ScenarioFit(
                **base,
                separation=separable,
                excluded=f"{separable} separation: no finite maximum-likelihood estimate",
            )
        if np.linalg.matrix_rank(np.column_stack([np.ones(len(x)), x])) < x.shape[1] + 1:
            return ScenarioFit(**base, excluded="collinear predictors: slopes not identified")
    slopes, intercept, problem = _logistic(x, y, math.inf if regression != "l2" else c)
    if problem is not None:
        return ScenarioFit(**base, separation=separable, excluded=problem)
    weights = rescale(slopes)
    return ScenarioFit(
        **base,
        slopes=slopes,
        intercept=intercept,
        weights=weights,
        separation=separable,
        excluded=None if weights is not None else "every slope is 0: nothing to rescale",
    )


def _logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[tuple[float, ...], float, Any]:
    """(slopes, intercept, problem): the minimum of ``c * sum(log-loss) + ||slopes||^2 / 2``
    (scikit-learn's ``LogisticRegression(C=c)`` objective, intercept unpenalised; ``c = inf``:
    maximum likelihood) by Newton's method with a backtracking line search, which for six
    parameters takes a few milliseconds less than lbfgs per scenario at the same optimum
    (a test checks it against scikit-learn). `problem` says why the fit is not usable (it did
    not converge, or diverged), else None: as in the original, such a fit is dropped."""
    z = np.column_stack([np.ones(len(x)), x])
    k = z.shape[1]
    penalty = np.r_[0.0, np.ones(k - 1)] if math.isfinite(c) else np.zeros(k)
    scale = c if math.isfinite(c) else 1.0

    def objective(theta: np.ndarray) -> float:
        eta = z @ theta
        return float(
            scale * np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * penalty @ (theta * theta)
        )

    theta = np.zeros(k)
    value = objective(theta)
    problem = "the optimiser did not converge"
    for _ in range(200):
        eta = z @ theta
        p = 0.5 * (1.0 + np.tanh(0.5 * eta))  # the logistic function, without overflow
        grad = scale * (z.T @ (p - y)) + penalty * theta
        if np.max(np.abs(grad)) < 1e-9 * max(1.0, scale * len(y)):
            problem = None
            break
        hess = scale * (z.T * (p * (1.0 - p))) @ z + np.diag(penalty)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            problem = "singular Hessian: slopes not identified"
            break
        t = 1.0
        while t > 1e-12:
            trial = theta - t * step
            new = objective(trial)
            if new <= value - 1e-4 * t * float(grad @ step):
                break
            t *= 0.5
        else:  # no decrease along the Newton direction: at the optimum to rounding error
            problem = None if np.max(np.abs(grad)) < 1e-6 * max(1.0, scale * len(y)) else problem
            break
        theta, value = trial, new
    slopes = tuple(float(v) for v in theta[1:])
    if problem is None and not all(math.isfinite(v) for v in theta):
        problem = "non-finite estimate"
    return slopes, float(theta[0]), problem


def recover_weights(
    scenarios: Mapping[str, Scenario],
    decisions: Iterable[Decision],
    regression: Regression = "l2",
    c: float = 1.0,
) -> Recovery:
    """One :func:`fit_scenario` per scenario that has decisions (every decision's scenario
    must be in `scenarios`)."""
    if regression not in REGRESSIONS:
        raise one_of("regression", regression, REGRESSIONS)
    grouped: dict[str, list[Decision]] = {}
    for d in decisions:
        grouped.setdefault(d.scenario, []).append(d)
    import scipy.optimize  # noqa: F401  (loaded first: threadpool_limits sees loaded libraries)
    from threadpoolctl import threadpool_limits

    recovery = Recovery(regression)
    with threadpool_limits(1):  # 6 parameters: extra BLAS threads only wait on each other
        for name, group in grouped.items():
            recovery.fits[name] = fit_scenario(scenarios[name], group, regression, c)
    return recovery
