"""How well learned weights match targets (or reports match learned weights), and how often
decisions match the target choice.

- **Pooled r**: Pearson r over every (scenario, attribute) pair, as in the original's
  `effects.R` (it z-scores within a model first, which leaves r unchanged). The p-value is
  scipy's, which treats the pairs as independent; the five weights of one scenario are not
  (they share its rescaling), so the bootstrap CI resamples *scenarios* with replacement
  (seeded) and is the honest interval.
- **Per-attribute r**: the same over scenarios at one attribute position (attr1..attr5).
- **Target choice**: "A" iff U_A > U_B with U = sum_i w_i (x_i - min_i) / (max_i - min_i),
  ties to "B" (the rule that labelled the training data, `api.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reasonlens.analyses.stats import percentile_interval, resample_indices
from reasonlens.tasks.preferences.release import Decision
from reasonlens.tasks.preferences.scenarios import N_ATTRIBUTES, Scenario, target_choice

#: Bootstrap resamples by default.
N_BOOT = 1000


@dataclass(frozen=True)
class Correlation:
    """Pearson r of paired values, its p-value, and a bootstrap CI over scenarios (None when
    there are too few scenarios or no variance)."""

    r: float | None
    p: float | None
    ci_low: float | None
    ci_high: float | None
    n_scenarios: int
    n_pairs: int
    level: float = 0.95
    n_boot: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """(r, p), or (None, None) with fewer than 3 pairs or a constant side."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    from scipy.stats import pearsonr

    result = pearsonr(x, y)
    return float(result.statistic), float(result.pvalue)


def _rows_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of `x` and `y` (resamples x values) by numpy, without
    scipy's p-value (~1 ms each, times 1000 resamples); rows where a side is constant are
    left out."""
    dx = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt(np.einsum("ij,ij->i", dx, dx) * np.einsum("ij,ij->i", dy, dy))
    keep = denom > 0
    return np.einsum("ij,ij->i", dx[keep], dy[keep]) / denom[keep]


def _paired(
    x: Mapping[str, Sequence[float]], y: Mapping[str, Sequence[float]]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The scenarios in both (in x's order) and their values as (scenarios x attributes)."""
    names = [n for n in x if n in y]
    a = np.array([list(x[n]) for n in names], dtype=float).reshape(len(names), N_ATTRIBUTES)
    b = np.array([list(y[n]) for n in names], dtype=float).reshape(len(names), N_ATTRIBUTES)
    return names, a, b


def pooled_correlation(
    x: Mapping[str, Sequence[float]],
    y: Mapping[str, Sequence[float]],
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> Correlation:
    """Pearson r over the (scenario, attribute) pairs of the scenarios in both `x` and `y`,
    with a percentile bootstrap CI resampling those scenarios."""
    names, a, b = _paired(x, y)
    r, p = _pearson(a.ravel(), b.ravel())
    low = high = None
    if r is not None and n_boot > 0 and len(names) >= 2:
        picks = resample_indices(len(names), n_boot, seed)  # whole scenarios
        rs = _rows_r(a[picks].reshape(n_boot, -1), b[picks].reshape(n_boot, -1))
        if rs.size:
            low, high = (float(v) for v in percentile_interval(rs, level))
    return Correlation(r, p, low, high, len(names), a.size, level, n_boot, seed)


def per_attribute_correlation(
    x: Mapping[str, Sequence[float]], y: Mapping[str, Sequence[float]]
) -> list[dict[str, Any]]:
    """Pearson r (and p) at each attribute position, over the scenarios in both."""
    names, a, b = _paired(x, y)
    out = []
    for k in range(N_ATTRIBUTES):
        r, p = _pearson(a[:, k], b[:, k])
        out.append({"attribute": f"attr{k + 1}", "r": r, "p": p, "n_scenarios": len(names)})
    return out


@dataclass(frozen=True)
class Agreement:
    """Decisions against the target choice. Rates are over valid decisions (an invalid reply
    agrees with nothing and is counted apart); `target_share_a` is over the same trials."""

    n_trials: int
    n_invalid: int
    n_agree: int
    n_a: int
    n_target_a: int
    n_scenarios: int

    @property
    def n_valid(self) -> int:
        return self.n_trials - self.n_invalid

    def _rate(self, count: int) -> float | None:
        return count / self.n_valid if self.n_valid else None

    @property
    def agreement(self) -> float | None:
        return self._rate(self.n_agree)

    @property
    def share_a(self) -> float | None:
        return self._rate(self.n_a)

    @property
    def target_share_a(self) -> float | None:
        return self._rate(self.n_target_a)

    @property
    def invalid_rate(self) -> float | None:
        return self.n_invalid / self.n_trials if self.n_trials else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "n_valid": self.n_valid,
            "agreement": self.agreement,
            "share_a": self.share_a,
            "target_share_a": self.target_share_a,
            "invalid_rate": self.invalid_rate,
        }


def choice_agreement(
    scenarios: Mapping[str, Scenario],
    targets: Mapping[str, Sequence[float]],
    decisions: Iterable[Decision],
) -> Agreement:
    """How often valid decisions are the target choice, and the shares of "A" beside the
    target's (every decision's scenario must have targets)."""
    n = invalid = agree = n_a = target_a = 0
    seen: set[str] = set()
    for d in decisions:
        n += 1
        seen.add(d.scenario)
        choice = d.choice
        if choice is None:
            invalid += 1
            continue
        target = target_choice(scenarios[d.scenario], targets[d.scenario], d.a, d.b)
        agree += choice == target
        n_a += choice == "A"
        target_a += target == "A"
    return Agreement(n, invalid, agree, n_a, target_a, len(seen))
