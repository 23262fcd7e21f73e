"""Instillation's learning curve on held-out trials.

The training loss cannot tell a model that acts on the options' values from one that learnt
the letters' base rate: on balanced data both sit near ln(2) / 2 per labelled token. So before
the first optimizer step and every `every` steps after, the model being trained reads the
validation trials (never trained on): logit(A) - logit(B) at the answer position, one forward
pass per batch. Each point is the agreement of its sign with the target choice, the share of
"A", the spread of the logit difference within a scenario, and the pooled r of the
logit-linear recovery against the targets. The point at step 0 is the untrained model: every
curve starts at its own control.

The points are written during training by .curve_callback; this module reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reasonlens.jsonl import read_jsonl
from reasonlens.studies.preferences.weights.logits import recover_from_logits
from reasonlens.studies.preferences.weights.metrics import pooled_correlation
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.release import Decision
from reasonlens.tasks.preferences.scenarios import Scenario

#: The curve's file in the instillation stage's directory (written by .curve_callback)
CURVE_FILE = "validation_curve.jsonl"


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
    return {
        "agreement": float(np.mean(agree)),
        "share_a": float(np.mean(logit_diff > 0)),
        "target_share_a": float(np.mean([t.target == "A" for t in trials])),
        "r_logit": r,
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
