"""Recovering weights from the decision's logits instead of the letter (beyond the original).

A model's decision is also read as d = logit(A) - logit(B) at the answer position (the
decisions layout's ``logit_diff``). Two recoveries use it, each labelled in reports:

- ``"logit-sign"``: the decision is "A" when d > 0, else "B", and the usual logistic
  regression (:func:`~reasonlens.studies.preferences.weights.recovery.recover_weights`) runs on it.
  Every trial has a decision, even when the reply was not a valid letter.
- ``"logit-linear"``: per scenario, least squares of d on the five range-normalised differences
  (A_i - B_i) / (max_i - min_i) with an intercept. The slopes are the weights the model's
  log-odds put on each attribute (if choices follow a logistic rule, d is its linear
  predictor, so the slopes estimate the same weights as the letter's regression, without the
  loss of information that thresholding into a letter causes); rescaled to max |b| = 100.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from reasonlens.analyses.stats import generator, permutations
from reasonlens.studies.preferences.weights.recovery import (
    Recovery,
    ScenarioFit,
    differences,
    recover_weights,
    rescale,
)
from reasonlens.tasks.preferences.release import Decision
from reasonlens.tasks.preferences.scenarios import Scenario

LOGIT_REGRESSIONS = ("logit-sign", "logit-linear")


def sign_decisions(decisions: Iterable[Decision]) -> list[Decision]:
    """Each decision with its reply replaced by the sign of its logit difference ("A" when
    > 0); decisions without one are left out."""
    return [
        Decision(d.scenario, "A" if d.logit_diff > 0 else "B", d.a, d.b, d.logit_diff, d.model)
        for d in decisions
        if d.logit_diff is not None
    ]


def recover_from_sign(
    scenarios: Mapping[str, Scenario], decisions: Iterable[Decision], regression: str = "l2"
) -> Recovery:
    """The letter's regression on the sign of the logit difference."""
    recovery = recover_weights(scenarios, sign_decisions(decisions), regression)  # type: ignore[arg-type]
    recovery.regression = f"logit-sign ({recovery.regression})"
    return recovery


def fit_linear(scenario: Scenario, decisions: Iterable[Decision]) -> ScenarioFit:
    """Least squares of the logit difference on the normalised differences (see the module
    docstring); a scenario with fewer trials than parameters + 1 is excluded."""
    rows, values, n = [], [], 0
    for d in decisions:
        n += 1
        if d.logit_diff is None:
            continue
        rows.append(differences(scenario, d.a, d.b))
        values.append(d.logit_diff)
    base = {
        "scenario": scenario.short_name,
        "n_trials": n,
        "n_invalid": n - len(values),
        "n_a": sum(v > 0 for v in values),
    }
    k = len(scenario.attributes)
    if len(values) < k + 2:
        return ScenarioFit(**base, excluded=f"{len(values)} trials with logits: too few for a fit")
    if np.ptp(values) == 0:
        # least squares would return slopes of float noise (~1e-17), which rescaling to
        # max |b| = 100 would turn into weights
        return ScenarioFit(
            **base, excluded="the logit difference is the same on every trial: no weights"
        )
    x = np.column_stack([np.ones(len(rows)), np.asarray(rows, dtype=float)])
    if np.linalg.matrix_rank(x) < k + 1:
        return ScenarioFit(**base, excluded="collinear predictors: slopes not identified")
    coef, *_ = np.linalg.lstsq(x, np.asarray(values, dtype=float), rcond=None)
    slopes = tuple(float(v) for v in coef[1:])
    weights = rescale(slopes)
    return ScenarioFit(
        **base,
        slopes=slopes,
        intercept=float(coef[0]),
        weights=weights,
        excluded=None if weights is not None else "every slope is 0: nothing to rescale",
    )


def recover_from_logits(
    scenarios: Mapping[str, Scenario], decisions: Iterable[Decision]
) -> Recovery:
    """One :func:`fit_linear` per scenario that has decisions."""
    grouped: dict[str, list[Decision]] = {}
    for d in decisions:
        grouped.setdefault(d.scenario, []).append(d)
    recovery = Recovery("logit-linear")
    for name, group in grouped.items():
        recovery.fits[name] = fit_linear(scenarios[name], group)
    return recovery


def value_sensitivity(
    scenarios: Mapping[str, Scenario],
    decisions: Iterable[Decision],
    n_perm: int = 200,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """How much the logit difference depends on the options' values at all: the mean over
    scenarios of R^2 of its least-squares fit on the five normalised differences, beside the
    mean R^2 of the same fit to the scenario's logit differences randomly permuted (what a
    model ignoring the values gets, from 5 slopes fitted to noise), and the typical spread
    of the logit difference within a scenario. A model whose R^2 is at the permuted level
    decides the same whatever the options are: no weights can be read from it."""
    grouped: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.logit_diff is not None:
            grouped.setdefault(d.scenario, []).append(d)
    rng = generator(seed)  # one stream over the scenarios in turn
    r2s, nulls, spreads = [], [], []
    for name, group in grouped.items():
        scenario = scenarios[name]
        if len(group) < len(scenario.attributes) + 2:
            continue
        x = np.column_stack([np.ones(len(group)), [differences(scenario, d.a, d.b) for d in group]])
        y = np.asarray([d.logit_diff for d in group], dtype=float)
        if np.ptp(y) == 0:
            continue
        r2s.append(_r2(x, y))
        nulls.append(float(np.mean([_r2(x, p) for p in permutations(y, n_perm, rng)])))
        spreads.append(float(np.std(y)))
    if not r2s:
        return {"n_scenarios": 0, "mean_r2": None, "permuted_r2": None, "within_sd": None}
    return {
        "n_scenarios": len(r2s),
        "mean_r2": float(np.mean(r2s)),
        "permuted_r2": float(np.mean(nulls)),
        "within_sd": float(np.median(spreads)),
    }


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    total = y - y.mean()
    return float(1 - (residual @ residual) / (total @ total))
