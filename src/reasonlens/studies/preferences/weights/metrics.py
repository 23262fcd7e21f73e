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

from reasonlens.analyses.stats import (
    paired,
    percentile_interval,
    resample_indices,
    resample_weights,
)
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


def _rows_r_nan(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair, NaN where a side is constant (rows stay aligned)."""
    dx = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt(np.einsum("ij,ij->i", dx, dx) * np.einsum("ij,ij->i", dy, dy))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, np.einsum("ij,ij->i", dx, dy) / denom, np.nan)


def paired_correlation(
    x: Mapping[str, Sequence[float]],
    control: Mapping[str, Sequence[float]],
    y: Mapping[str, Sequence[float]],
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """r(x, y) against r(control, y) on the *same* scenarios (those in all three) and the same
    bootstrap resamples of them (analyses.stats.paired): the interval of the difference and the
    share of resamples in which x's r is higher. Each r's own interval comes from the same
    resamples. Pairing removes the resampling noise the two share; two separate intervals, each
    on the scenarios its own model kept, would count it twice."""
    names = [n for n in x if n in control and n in y]
    base: dict[str, Any] = {"n_scenarios": len(names), "n_boot": n_boot, "seed": seed}
    empty = {"r": None, "control_r": None, "difference": None, "low": None, "high": None}
    if len(names) < 2:
        return {**base, **empty, "share_higher": None, "n_resamples": 0}
    a = np.array([list(x[n]) for n in names], dtype=float)
    b = np.array([list(control[n]) for n in names], dtype=float)
    t = np.array([list(y[n]) for n in names], dtype=float)
    r_a, _ = _pearson(a.ravel(), t.ravel())
    r_b, _ = _pearson(b.ravel(), t.ravel())
    if r_a is None or r_b is None or n_boot <= 0:
        return {**base, **empty, "r": r_a, "control_r": r_b, "share_higher": None, "n_resamples": 0}
    picks = resample_indices(len(names), n_boot, seed)  # whole scenarios, both models at once
    rs_a = _rows_r_nan(a[picks].reshape(n_boot, -1), t[picks].reshape(n_boot, -1))
    rs_b = _rows_r_nan(b[picks].reshape(n_boot, -1), t[picks].reshape(n_boot, -1))
    diff = paired(rs_a, rs_b, level)
    intervals = {}
    for key, rs in (("r", rs_a), ("control_r", rs_b)):
        low, high = percentile_interval(rs, level)
        intervals[f"{key}_low"], intervals[f"{key}_high"] = float(low), float(high)
    return {
        **base,
        "r": r_a,
        "control_r": r_b,
        **intervals,
        "difference": r_a - r_b,
        "low": diff.low,
        "high": diff.high,
        "share_higher": diff.share_a_higher,
        "n_resamples": diff.n,
    }


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


def sign_agreement(
    scenarios: Mapping[str, Scenario],
    targets: Mapping[str, Sequence[float]],
    decisions: Iterable[Decision],
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """How often the sign of logit(A) - logit(B) is the target choice (every trial with a logit
    difference has one, valid letter or not), beside the commoner letter's share on the same
    trials (what always answering it agrees), each with a bootstrap interval over scenarios,
    and their paired difference on the same resamples: a sign that follows the targets beats
    the commoner letter in the difference's interval, a base rate does not."""
    counts: dict[str, list[int]] = {}  # scenario -> [trials, agree, target A]
    for d in decisions:
        if d.logit_diff is None:
            continue
        target = target_choice(scenarios[d.scenario], targets[d.scenario], d.a, d.b)
        row = counts.setdefault(d.scenario, [0, 0, 0])
        row[0] += 1
        row[1] += ("A" if d.logit_diff > 0 else "B") == target
        row[2] += target == "A"
    out: dict[str, Any] = {"n_scenarios": len(counts), "n_boot": n_boot, "seed": seed}
    if not counts:
        return {**out, "n": 0, "agreement": None, "commoner": None}
    c = np.array(list(counts.values()), dtype=float)  # [scenarios, 3]
    n, agree, share_a = c[:, 0].sum(), c[:, 1].sum() / c[:, 0].sum(), c[:, 2].sum() / c[:, 0].sum()
    out |= {"n": int(n), "agreement": float(agree), "commoner": float(max(share_a, 1 - share_a))}
    if n_boot <= 0 or len(counts) < 2:
        return out
    w = resample_weights(len(counts), n_boot, seed)  # [resamples, scenarios]
    total = w @ c[:, 0]
    agree_b = (w @ c[:, 1]) / total
    share_b = (w @ c[:, 2]) / total
    commoner_b = np.maximum(share_b, 1 - share_b)
    diff = paired(agree_b, commoner_b, level)
    for key, samples in (("agreement", agree_b), ("commoner", commoner_b)):
        low, high = percentile_interval(samples, level)
        out[f"{key}_low"], out[f"{key}_high"] = float(low), float(high)
    return out | {
        "versus_commoner": float(agree - max(share_a, 1 - share_a)),
        "versus_commoner_low": diff.low,
        "versus_commoner_high": diff.high,
        "share_above_commoner": diff.share_a_higher,
    }
