"""Self-report accuracy: do a model's reports of its weights match the weights it acts on?

Reports are averaged per scenario x attribute (bad reports dropped and counted), then
correlated over the pooled pairs with the *learned* weights (the original's comparison,
`effects.R`: what the model does, not what it was trained toward) and, labelled apart, with the
targets. The original fits brms ``standardized_b ~ standardized_reports``, whose slope is close
to Pearson r; here r itself, with a bootstrap CI over scenarios.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasonlens.studies.preferences.weights.metrics import N_BOOT, Correlation, pooled_correlation
from reasonlens.tasks.preferences.release import Report, Weights


def mean_reports(reports: Iterable[Report]) -> Weights:
    """The mean reported weight per scenario and attribute, over the good reports (a scenario
    with none is absent), in the order scenarios first occur."""
    sums: dict[str, list[np.ndarray]] = {}
    for r in reports:
        if r.weights is not None:
            sums.setdefault(r.scenario, []).append(np.asarray(r.weights, dtype=float))
    return {n: tuple(float(v) for v in np.mean(rows, axis=0)) for n, rows in sums.items()}


@dataclass(frozen=True)
class SelfReport:
    """Report accuracy for one set of reports (one model and version)."""

    n_reports: int
    n_bad: int | None  # None: the file kept only parseable reports (the release's layout)
    mean: Weights
    vs_learned: Correlation
    vs_target: Correlation | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_reports": self.n_reports,
            "n_bad": self.n_bad,
            "n_scenarios_reported": len(self.mean),
            "r_report_learned": self.vs_learned.r,
            "vs_learned": self.vs_learned.to_dict(),
            "r_report_target": self.vs_target.r if self.vs_target else None,
            "vs_target": self.vs_target.to_dict() if self.vs_target else None,
        }


def self_report(
    reports: Iterable[Report],
    learned: Mapping[str, Sequence[float]],
    targets: Mapping[str, Sequence[float]] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> SelfReport:
    """Mean reports against `learned` weights (and `targets`, if given), over the scenarios
    that have both. Bad reports are counted when the replies were parsed here (raw layout);
    a file in the release's layout holds only the parseable ones, so its count is None."""
    reports = list(reports)
    mean = mean_reports(reports)
    parsed_here = any(r.reply is not None for r in reports)
    bad = sum(r.weights is None for r in reports) if parsed_here else None
    vs_learned = pooled_correlation(mean, learned, n_boot, seed)
    vs_target = pooled_correlation(mean, targets, n_boot, seed) if targets is not None else None
    return SelfReport(len(reports), bad, mean, vs_learned, vs_target)
