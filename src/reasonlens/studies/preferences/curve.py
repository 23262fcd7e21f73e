"""Instillation's learning curve on held-out trials.

The training loss cannot tell a model that acts on the options' values from one that learnt
the letters' base rate: on balanced data both sit near ln(2) / 2 per labelled token. So before
the first optimizer step and every `every` steps after, the model being trained reads the
validation trials (never trained on): logit(A) - logit(B) at the answer position, one forward
pass per batch. Each point is the agreement of its sign with the target choice, the share of
"A", the spread of the logit difference within a scenario, and the pooled r of the
logit-linear recovery against the targets. The point at step 0 is the untrained model: every
curve starts at its own control.

**The null.** A 6-parameter least-squares fit per scenario reads weights from any logit
difference, even one that ignores the options: its slopes then point in a random direction, and
the pooled r over (scenario, attribute) pairs has a spread set by how many pairs there are
(about 1/sqrt(5 x scenarios - 1): 0.33 with 2 scenarios, 0.2 with 5, 0.14 with 10), not by the
trials a scenario. So each point also records the r of the same fit with each scenario's logit
differences shuffled among its trials (:data:`NULL_PERMUTATIONS` times, seeded): its SD and 95th
percentile are what an r at that point must clear before it is read as an effect. More trials a
scenario shrink the noise of a real effect's estimate, not this spread.

The points are written during training by .curve_callback; this module reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reasonlens.analyses.stats import generator
from reasonlens.jsonl import read_jsonl
from reasonlens.studies.preferences.weights.logits import recover_from_logits
from reasonlens.studies.preferences.weights.metrics import pooled_correlation
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.release import Decision
from reasonlens.tasks.preferences.scenarios import Scenario

#: The curve's file in the instillation stage's directory (written by .curve_callback)
CURVE_FILE = "validation_curve.jsonl"
#: Shuffles of the logit differences within each scenario behind a point's null.
NULL_PERMUTATIONS = 200


def null_r(
    scenarios: Mapping[str, Scenario],
    targets: Mapping[str, Sequence[float]],
    trials: Sequence[T.Trial],
    logit_diff: np.ndarray,
    n_perm: int = NULL_PERMUTATIONS,
    seed: int = 0,
) -> np.ndarray:
    """[n_perm] pooled r of the logit-linear recovery (the fit of .weights.logits.fit_linear,
    rescaled to max |b| = 100) against the targets when each scenario's logit differences are
    shuffled among its trials; NaN where no scenario has a fit. Scenarios that have no fit
    (too few trials, a constant logit difference) are left out, as the recovery leaves them."""
    from reasonlens.studies.preferences.weights.recovery import differences

    rng = generator(seed)
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(trials):
        groups.setdefault(t.scenario, []).append(i)
    weights, truth = [], []
    for name, index in groups.items():
        scenario, y = scenarios[name], np.asarray(logit_diff, dtype=float)[index]
        k = len(scenario.attributes)
        if len(index) < k + 2 or np.ptp(y) == 0:
            continue
        x = np.column_stack(
            [np.ones(len(index)), [differences(scenario, trials[i].a, trials[i].b) for i in index]]
        )
        if np.linalg.matrix_rank(x) < k + 1:
            continue
        shuffled = np.stack([rng.permutation(y) for _ in range(n_perm)], axis=1)  # [n, P]
        slopes = np.linalg.lstsq(x, shuffled, rcond=None)[0][1:]  # [k, P]
        biggest = np.abs(slopes).max(axis=0, keepdims=True)
        weights.append(100 * slopes / np.where(biggest > 0, biggest, np.nan))
        truth.append(np.asarray(targets[name], dtype=float))
    if not weights:
        return np.full(n_perm, np.nan)
    w = np.concatenate(weights)  # [pairs, P]
    t = np.concatenate(truth)[:, None]
    dw, dt = w - w.mean(axis=0), t - t.mean()
    denom = np.sqrt((dw * dw).sum(axis=0) * (dt * dt).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (dw * dt).sum(axis=0) / denom, np.nan)


def curve_point(
    scenarios: Mapping[str, Scenario],
    targets: Mapping[str, Sequence[float]],
    trials: Sequence[T.Trial],
    logit_diff: np.ndarray,
) -> dict[str, Any]:
    """One point of the curve from the validation trials' logit differences."""
    decisions = [
        Decision(t.scenario, "", t.a, t.b, float(d))
        for t, d in zip(trials, logit_diff, strict=True)
    ]
    learned = recover_from_logits(scenarios, decisions).learned
    r = pooled_correlation(learned, targets, n_boot=0).r
    by_scenario: dict[str, list[float]] = {}
    for t, d in zip(trials, logit_diff, strict=True):
        by_scenario.setdefault(t.scenario, []).append(float(d))
    agree = [(d > 0) == (t.target == "A") for t, d in zip(trials, logit_diff, strict=True)]
    null = null_r(scenarios, targets, trials, logit_diff)
    finite = null[~np.isnan(null)]
    return {
        "agreement": float(np.mean(agree)),
        "share_a": float(np.mean(logit_diff > 0)),
        "target_share_a": float(np.mean([t.target == "A" for t in trials])),
        "r_logit": r,
        # the same r with each scenario's logit differences shuffled (see the module doc)
        "r_null_sd": float(np.std(finite)) if finite.size else None,
        "r_null_q95": float(np.quantile(finite, 0.95)) if finite.size else None,
        "n_scenarios": len(by_scenario),
        "within_sd": float(np.median([np.std(v) for v in by_scenario.values()])),
        "n_trials": len(trials),
    }


def commoner_letter_rate(point: Mapping[str, Any]) -> float:
    """The agreement of a model that always answers the letter the targets choose more often:
    what agreement alone does not beat."""
    return max(point["target_share_a"], 1 - point["target_share_a"])


def read_curve(path: Path) -> list[dict[str, Any]]:
    """The curve's points; [] when there is none (a run made before curves existed)."""
    path = Path(path)
    if not path.exists():
        return []
    return read_jsonl(path)
