"""One verdict vocabulary for every study, and the rules that give it.

Every claim a report makes has the same shape: an estimate (with its interval, or the share of
bootstrap resamples in which it holds), the same estimate on a control that cannot have the
mechanism, and a rule. Whatever the study, the verdict is one of five words:

- **agrees**: the claim holds with 95% confidence and its control does not reach it;
- **differs**: the claim fails with 95% confidence;
- **unclear**: neither (the interval straddles the threshold, or the control comes close);
- **holds for the control too**: the claim holds, but so does the control, so it is no
  evidence of what the study asks about;
- **not measurable**: the measurement cannot decide the claim on this model (no data, too few
  units, a degenerate read-out, controls at the ceiling), with the reason.

A study may keep its own words for the reader ("beyond the text") as a label on one of these,
so that its words and every other study's follow the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVEL = 0.95
#: Below this many units (problems, chains, scenarios) a verdict would be noise.
MIN_UNITS = 30
AGREES = "agrees"
DIFFERS = "differs"
UNCLEAR = "unclear"
CONTROL_TOO = "holds for the control too"
NOT_MEASURABLE = "not measurable"
WORDS = (AGREES, DIFFERS, UNCLEAR, CONTROL_TOO, NOT_MEASURABLE)


@dataclass(frozen=True)
class Verdict:
    """One of `WORDS`, why (the figure it rests on), and the study's own label, if any."""

    word: str
    why: str = ""
    label: str | None = None

    def __post_init__(self) -> None:
        if self.word not in WORDS:
            raise ValueError(f"verdict {self.word!r} is not one of {WORDS}")

    def __str__(self) -> str:
        """The word (after the study's label, where it has one) and why."""
        head = f"{self.label}: {self.word}" if self.label else self.word
        return f"{head} ({self.why})" if self.why else head

    @property
    def decided(self) -> bool:
        """Whether a claim was tested (counts towards the multiplicity note)."""
        return self.word != NOT_MEASURABLE

    def labelled(self, label: str) -> Verdict:
        return Verdict(self.word, self.why, label)


def not_measurable(reason: str) -> Verdict:
    return Verdict(NOT_MEASURABLE, reason)


def too_few(n: int, what: str = "problems", minimum: int = MIN_UNITS) -> str:
    """The sample-size rule, in words."""
    return f"{n} {what}: a verdict needs at least {minimum}"


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95% interval (None where there is none)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, entry: dict | None, key: str = "value") -> Estimate:
        """From a result's ``{"value"|key, "low", "high"}`` (or ``ci_low``/``ci_high``)."""
        if not entry:
            return cls(None)
        low = entry.get("low", entry.get("ci_low"))
        high = entry.get("high", entry.get("ci_high"))
        return cls(entry.get(key), low, high)

    @property
    def has_interval(self) -> bool:
        return self.value is not None and self.low is not None and self.high is not None

    def show(self, digits: int = 3) -> str:
        if self.value is None:
            return "–"
        if not self.has_interval:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def by_support(
    share: float | None,
    control_share: float | None = None,
    control_name: str = "the control",
) -> Verdict:
    """A yes/no claim re-checked on bootstrap resamples: `share` is the share in which it
    holds (the control's on the same resamples beside it)."""
    if share is None:
        return not_measurable("no per-unit values to resample")
    if share <= 1.0 - LEVEL:
        return Verdict(DIFFERS, f"holds in {share:.0%} of resamples")
    if share < LEVEL:
        return Verdict(UNCLEAR, f"holds in {share:.0%} of resamples")
    if control_share is None:
        return Verdict(AGREES, f"{share:.0%} of resamples")
    if control_share >= 0.5:
        return Verdict(CONTROL_TOO, f"{control_name}: {control_share:.0%} of resamples")
    if control_share > 1.0 - LEVEL:
        return Verdict(UNCLEAR, f"{control_name} holds in {control_share:.0%} of resamples")
    return Verdict(AGREES, f"{share:.0%} of resamples; {control_name} {control_share:.0%}")


def by_interval(
    estimate: Estimate,
    threshold: float = 0.0,
    min_effect: float = 0.0,
    control: Estimate | None = None,
    versus_control: Estimate | None = None,
    control_name: str = "the control",
) -> Verdict:
    """A claim that an estimate exceeds `threshold` (by at least `min_effect`): it holds when
    its 95% interval lies above that, fails when the interval lies below the threshold.

    With a control, a claim that holds must also beat it: `versus_control` is the paired
    difference (estimate - control, on the same resamples); its interval must lie above
    `min_effect`. When it does not, the verdict reads *holds for the control too* if the
    control's own interval clears the threshold as well, *unclear* otherwise."""
    if estimate.value is None:
        return not_measurable("no estimate")
    if not estimate.has_interval:
        return not_measurable("no interval")
    bar = threshold + min_effect
    shown = estimate.show()
    if estimate.high < threshold:
        return Verdict(DIFFERS, f"{shown}, below {threshold:g}")
    if estimate.low <= bar:
        return Verdict(UNCLEAR, f"{shown} includes {bar:g}")
    if control is None and versus_control is None:
        return Verdict(AGREES, f"{shown}, above {bar:g}")
    if versus_control is not None and versus_control.has_interval:
        if versus_control.low > min_effect:
            return Verdict(AGREES, f"beats {control_name} by {versus_control.show()}")
    elif control is not None and control.has_interval and control.high < estimate.low:
        return Verdict(AGREES, f"{shown} against {control_name}'s {control.show()}")
    if control is not None and control.has_interval and control.low > bar:
        return Verdict(CONTROL_TOO, f"{control_name}: {control.show()}")
    return Verdict(UNCLEAR, f"not clearly above {control_name}")


@dataclass(frozen=True)
class Floor:
    """A level a claim's estimate must clear outright, not pairwise: chance, or a permutation
    null's upper percentile (the level a measure with no association reaches in 95% of
    draws). `label`: the study's word for a claim that does not clear it."""

    name: str
    value: float | None
    label: str | None = None


@dataclass(frozen=True)
class Versus:
    """A control a claim must beat pairwise: the control's own estimate and the paired
    difference (estimate minus control, on the same resamples). `label`: the study's word for
    a claim this control explains as well."""

    name: str
    control: Estimate
    difference: Estimate
    label: str | None = None


def beyond_controls(
    estimate: Estimate,
    floors: list[Floor],
    controls: list[Versus],
    min_effect: float = 0.0,
    ceiling: float | None = None,
    label: str | None = None,
) -> Verdict:
    """A claim that an estimate exceeds every floor and beats every control by at least
    `min_effect`, in this order:

    - *not measurable* when a floor or a control reaches `ceiling` (the controls already
      predict what the estimate is asked to: nothing about the estimate can be concluded),
      naming the highest;
    - against the highest floor: *differs* when the estimate's interval lies below it plus
      `min_effect`, *unclear* when it includes that; so nothing beats a control that sits
      below chance without clearing chance itself;
    - against each control in turn: beaten when the paired difference's interval lies above
      `min_effect`; the first not beaten gives *holds for the control too* when the control's
      own interval clears the floors as well, *unclear* otherwise (with that control's label);
    - *agrees* otherwise (with `label`), naming the closest control."""
    if estimate.value is None:
        return not_measurable("no estimate")
    if not estimate.has_interval:
        return not_measurable("no interval")
    levels = [(f.name, f.value) for f in floors if f.value is not None]
    levels += [(c.name, c.control.value) for c in controls if c.control.value is not None]
    if ceiling is not None:
        top = max(levels, key=lambda x: x[1], default=None)
        if top is not None and top[1] >= ceiling:
            return not_measurable(
                f"{top[0]} reaches {top[1]:.3f}, at or above the ceiling {ceiling:g}: the "
                "controls already predict the labels"
            )
    shown = estimate.show()
    known = [f for f in floors if f.value is not None]
    floor = max(known, key=lambda f: f.value, default=None)
    bar = (floor.value if floor else -float("inf")) + min_effect
    if floor is not None:
        need = f"{floor.name} {floor.value:.3f}" + (f" + {min_effect:g}" if min_effect else "")
        if estimate.high < bar:
            return Verdict(DIFFERS, f"{shown}, below {need}", floor.label)
        if estimate.low <= bar:
            return Verdict(UNCLEAR, f"{shown} includes {need}", floor.label)
    for c in controls:
        d = c.difference
        if d.has_interval and d.low > min_effect:
            continue
        what = f"not above {c.name} by {min_effect:g}: {d.show()}"
        clears = c.control.has_interval and c.control.low > bar
        return Verdict(CONTROL_TOO if clears else UNCLEAR, what, c.label)
    why = f"{shown}, above every floor" + (f" (highest: {floor.name})" if floor else "")
    if controls:
        closest = min(controls, key=lambda c: c.difference.low)
        why = f"beats every control by more than {min_effect:g}; closest, {closest.name}: "
        why += closest.difference.show()
    return Verdict(AGREES, why, label)


RULES = {
    "support": (
        "re-checked on bootstrap resamples of the analysed units: *agrees* when it holds in at "
        f"least {LEVEL:.0%} of them and its control (on the same resamples) holds in at most "
        f"{1 - LEVEL:.0%}; *differs* when it fails in at least {LEVEL:.0%}; *holds for the "
        "control too* when the control holds in at least half"
    ),
    "interval": (
        f"judged on {LEVEL:.0%} bootstrap intervals: *agrees* when the interval lies above the "
        "claim's threshold (plus its minimum effect) and, where there is a control, the paired "
        "difference from the control does too; *differs* when it lies below the threshold; "
        "*holds for the control too* when the control clears the threshold as well"
    ),
    "controls": (
        f"judged on {LEVEL:.0%} bootstrap intervals against floors (chance, a permutation "
        "null's upper percentile) and controls, each by a declared minimum effect: *not "
        "measurable* when a floor or control reaches the ceiling (the controls already predict "
        "the labels); *differs* when the interval lies below the highest floor plus the "
        "minimum effect; *agrees* when it lies above it and the paired difference from every "
        "control lies above the minimum effect; *holds for the control too* when a control is "
        "not beaten so and clears the floors itself"
    ),
}


def explanation(rules: set[str]) -> str:
    """What the verdicts mean, for the rules a report used."""
    parts = [RULES[r] for r in sorted(rules) if r in RULES]
    return (
        "Verdicts, in one vocabulary for every study: each claim is "
        + "; or ".join(parts)
        + ". *unclear* is anything in between; *not measurable* means the measurement cannot "
        "decide the claim on this model, with the reason."
    )


def multiplicity(n_claims: int) -> str:
    """What testing many claims at once means for reading them."""
    return (
        f"{n_claims} claims are tested, each at the {LEVEL:.0%} level and with no correction "
        f"for multiplicity: about {n_claims * (1 - LEVEL):.1f} of them could pass by chance if "
        "none held."
    )
