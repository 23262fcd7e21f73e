"""The preferences analysis end to end: read the files, recover the learned weights, score them
against the targets, score the choices and the self-reports, and write the run's files.

What a run directory gets (:func:`write_analysis`):

- ``results.json``: headline keys ``r_learned_target``, ``agreement``, ``share_a``,
  ``n_scenarios`` (scenarios whose learned weights enter r) and, given reports,
  ``r_report_learned`` (of the first reports file); then the details (CI, p, per-attribute r,
  target share of "A", invalid counts, excluded and separable scenarios, every reports file);
- ``learned_weights.csv``: ``scenario,b_attr1..b_attr5``, the rescaled weights (floats);
- ``fits.csv``: every scenario's counts, raw slopes, intercept, separation and exclusion;
- ``learned_vs_target.png`` (pooled and per attribute) and ``report_vs_learned_<label>.png``;
- ``summary.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError, one_of
from reasonlens.studies.preferences.weights.metrics import (
    N_BOOT,
    Agreement,
    Correlation,
    choice_agreement,
    per_attribute_correlation,
    pooled_correlation,
)
from reasonlens.studies.preferences.weights.recovery import REGRESSIONS, Recovery, recover_weights
from reasonlens.studies.preferences.weights.reports import SelfReport, self_report
from reasonlens.tasks.preferences.release import (
    Decision,
    Report,
    Weights,
    read_decisions,
    read_regression_results,
    read_reports,
    read_weights,
    write_weights,
)
from reasonlens.tasks.preferences.scenarios import Scenario, load_scenarios


@dataclass
class Inputs:
    """Everything an analysis reads, checked against each other."""

    scenarios: dict[str, Scenario]
    targets: Weights
    decisions: list[Decision]
    reports: dict[str, list[Report]] = field(default_factory=dict)
    learned: Weights | None = None


def report_labels(paths: Sequence[Path]) -> list[str]:
    """A short distinct label per reports file (its stem; repeated stems get -2, -3...)."""
    labels: list[str] = []
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem) or "reports"
        label, k = stem, 2
        while label in labels:
            label, k = f"{stem}-{k}", k + 1
        labels.append(label)
    return labels


def load_inputs(
    scenarios: str | Path,
    targets: str | Path,
    decisions: str | Path,
    reports: Sequence[str | Path] = (),
    units: str | Path | None = None,
    learned: str | Path | None = None,
) -> Inputs:
    """Read and cross-check the files (one UserError naming the file, row and column for the
    first problem): every scenario named anywhere must be in the scenarios file, and every
    scenario with decisions must have target weights."""
    scenario_set = load_scenarios(scenarios, units)
    source = f"scenarios file {scenarios}"
    target_weights = read_weights(targets, scenario_set, source=source)
    trials = read_decisions(decisions, scenario_set, source=source)
    if not trials:
        raise UserError(f"{decisions}: no decisions (the file has a header but no rows)")
    for row, d in enumerate(trials, start=1):
        if d.scenario not in target_weights:
            raise UserError(
                f"{decisions} row {row}: column scenario {d.scenario!r} has no target "
                f"weights in {targets}"
            )
    paths = [Path(p) for p in reports]
    by_label = {
        label: read_reports(path, scenario_set, source=source)
        for label, path in zip(report_labels(paths), paths, strict=True)
    }
    given = read_regression_results(learned, scenario_set, source) if learned else None
    return Inputs(scenario_set, target_weights, trials, by_label, given)


@dataclass
class PreferenceAnalysis:
    """The results of one analysis (see the module docstring for the files they become)."""

    recovery: Recovery
    targets: Weights
    recovery_r: Correlation
    per_attribute: list[dict[str, Any]]
    agreement: Agreement
    self_reports: dict[str, SelfReport] = field(default_factory=dict)
    reports_vs_given: dict[str, Correlation] = field(default_factory=dict)
    logit_diff: dict[str, Any] | None = None

    @property
    def learned(self) -> Weights:
        return self.recovery.learned

    def to_dict(self) -> dict[str, Any]:
        """What results.json holds."""
        recovery = self.recovery.to_dict()
        out: dict[str, Any] = {
            "r_learned_target": self.recovery_r.r,
            "agreement": self.agreement.agreement,
            "share_a": self.agreement.share_a,
            "n_scenarios": self.recovery_r.n_scenarios,
        }
        if self.self_reports:
            first = next(iter(self.self_reports.values()))
            out["r_report_learned"] = first.vs_learned.r
        out |= {
            "target_share_a": self.agreement.target_share_a,
            "invalid_rate": self.agreement.invalid_rate,
            "n_invalid": self.agreement.n_invalid,
            "n_trials": self.agreement.n_trials,
            "n_scenarios_excluded": recovery["n_excluded"],
            "excluded": recovery["excluded"],
            "regression": self.recovery.regression,
            "separable": recovery["separable"],
            "weights_note": "learned weights rescaled to max |b| = 100 per scenario, kept as "
            "floats (the release rounds them to integers)",
            "recovery": self.recovery_r.to_dict(),
            "per_attribute": self.per_attribute,
            "choices": self.agreement.to_dict(),
            "self_report": {
                label: {
                    **report.to_dict(),
                    **(
                        {"vs_given_learned": self.reports_vs_given[label].to_dict()}
                        if label in self.reports_vs_given
                        else {}
                    ),
                }
                for label, report in self.self_reports.items()
            },
        }
        if self.logit_diff is not None:
            out["logit_diff"] = self.logit_diff
        return out


def _logit_summary(
    scenarios: Mapping[str, Scenario], targets: Weights, decisions: Iterable[Decision]
) -> dict[str, Any] | None:
    """For decisions that carry logit(A) - logit(B): how often its sign (> 0 reads as "A")
    agrees with the reply and with the target choice."""
    from reasonlens.tasks.preferences.scenarios import target_choice

    with_logit = [d for d in decisions if d.logit_diff is not None]
    if not with_logit:
        return None
    reads = ["A" if d.logit_diff > 0 else "B" for d in with_logit]  # type: ignore[operator]
    valid = [(r, d.choice) for r, d in zip(reads, with_logit, strict=True) if d.choice]
    target = [
        target_choice(scenarios[d.scenario], targets[d.scenario], d.a, d.b) for d in with_logit
    ]
    return {
        "n": len(with_logit),
        "share_a": sum(r == "A" for r in reads) / len(reads),
        "agreement_with_reply": (sum(r == c for r, c in valid) / len(valid)) if valid else None,
        "agreement_with_target": sum(r == t for r, t in zip(reads, target, strict=True))
        / len(reads),
    }


def analyse_preferences(
    inputs: Inputs, regression: str = "l2", n_boot: int = N_BOOT, seed: int = 0
) -> PreferenceAnalysis:
    """Recover weights from `inputs.decisions` and score everything (see the module docstring)."""
    if regression not in REGRESSIONS:
        raise one_of("regression", regression, REGRESSIONS)
    recovery = recover_weights(inputs.scenarios, inputs.decisions, regression)  # type: ignore[arg-type]
    learned = recovery.learned
    used_targets = {n: inputs.targets[n] for n in recovery.fits}
    analysis = PreferenceAnalysis(
        recovery=recovery,
        targets=used_targets,
        recovery_r=pooled_correlation(learned, used_targets, n_boot, seed),
        per_attribute=per_attribute_correlation(learned, used_targets),
        agreement=choice_agreement(inputs.scenarios, inputs.targets, inputs.decisions),
        logit_diff=_logit_summary(inputs.scenarios, inputs.targets, inputs.decisions),
    )
    for label, reports in inputs.reports.items():
        analysis.self_reports[label] = self_report(reports, learned, inputs.targets, n_boot, seed)
        if inputs.learned is not None:
            mean = analysis.self_reports[label].mean
            analysis.reports_vs_given[label] = pooled_correlation(
                mean, inputs.learned, n_boot, seed
            )
    return analysis


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def _bad(s: SelfReport) -> str:
    if s.n_bad is None:
        return f"{s.n_reports} parsed reports; bad ones not in the file"
    return f"{s.n_bad} bad of {s.n_reports}"


def _ci(c: Correlation) -> str:
    if c.ci_low is None:
        return "n/a"
    return f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"


def summary_markdown(analysis: PreferenceAnalysis, title: str = "Preferences analysis") -> str:
    """A short human-readable summary of the run."""
    r, a, rec = analysis.recovery_r, analysis.agreement, analysis.recovery
    lines = [
        f"# {title}",
        "",
        f"Regression: {rec.regression} (per scenario; weights rescaled to max |b| = 100).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| r(learned, target), pooled | {_fmt(r.r)} (95% CI {_ci(r)}, p = {_p(r.p)}) |",
        f"| scenarios used / excluded | {r.n_scenarios} / {len(rec.excluded)} |",
        f"| agreement with target choice | {_pct(a.agreement)} of {a.n_valid} valid |",
        f'| share of "A" (target\'s) | {_pct(a.share_a)} ({_pct(a.target_share_a)}) |',
        f"| invalid replies | {a.n_invalid} of {a.n_trials} ({_pct(a.invalid_rate)}) |",
        f"| separable scenarios | {len(rec.separable)} |",
    ]
    for k in analysis.per_attribute:
        lines.append(f"| r at {k['attribute']} | {_fmt(k['r'])} |")
    for label, s in analysis.self_reports.items():
        lines.append(
            f"| self-report r vs learned, {label} | {_fmt(s.vs_learned.r)} "
            f"(CI {_ci(s.vs_learned)}; {s.vs_learned.n_scenarios} scenarios, "
            f"{_bad(s)}) |"
        )
        if s.vs_target is not None:
            lines.append(f"| self-report r vs target, {label} | {_fmt(s.vs_target.r)} |")
        if label in analysis.reports_vs_given:
            lines.append(
                f"| self-report r vs given learned weights, {label} | "
                f"{_fmt(analysis.reports_vs_given[label].r)} |"
            )
    if rec.excluded:
        lines += ["", "Excluded scenarios:", ""]
        lines += [f"- {name}: {why}" for name, why in rec.excluded.items()]
    return "\n".join(lines) + "\n"


def _scatter(ax, x: list[float], y: list[float], title: str, xlabel: str, ylabel: str, r) -> None:
    ax.scatter(x, y, s=8, alpha=0.5)
    ax.plot([-100, 100], [-100, 100], color="grey", linewidth=0.8, linestyle="--")
    ax.set_title(f"{title} (r = {_fmt(r)})", fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def plot_learned_vs_target(analysis: PreferenceAnalysis, path: str | Path) -> Path:
    """Learned against target weights: every pair, then one panel per attribute position."""
    from reasonlens.plots import new_figure, save_figure

    learned, targets = analysis.learned, analysis.targets
    names = [n for n in learned if n in targets]
    fig = new_figure(figsize=(13, 8), dpi=100)
    axes = fig.subplots(2, 3).ravel()
    x = [t for n in names for t in targets[n]]
    y = [v for n in names for v in learned[n]]
    _scatter(
        axes[0], x, y, "all attributes", "target weight", "learned weight", analysis.recovery_r.r
    )
    for k, item in enumerate(analysis.per_attribute):
        xs = [targets[n][k] for n in names]
        ys = [learned[n][k] for n in names]
        _scatter(
            axes[k + 1], xs, ys, item["attribute"], "target weight", "learned weight", item["r"]
        )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_reports(report: SelfReport, learned: Weights, path: str | Path, label: str) -> Path:
    """Mean reported against learned weights, every (scenario, attribute) pair."""
    from reasonlens.plots import new_figure, save_figure

    names = [n for n in report.mean if n in learned]
    fig = new_figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    x = [v for n in names for v in learned[n]]
    y = [v for n in names for v in report.mean[n]]
    _scatter(ax, x, y, label, "learned weight", "mean reported weight", report.vs_learned.r)
    fig.tight_layout()
    return save_figure(fig, path)


def write_fits(path: str | Path, recovery: Recovery) -> Path:
    """Every scenario's fit as CSV: counts, raw slopes, intercept, separation, exclusion."""
    import csv
    import io

    from reasonlens.runs.files import atomic_write

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    slopes = [f"slope_attr{i}" for i in range(1, 6)]
    writer.writerow(
        ["scenario", "n_trials", "n_invalid", "n_a", *slopes, "intercept"]
        + ["separation", "excluded"]
    )
    for f in recovery.fits.values():
        raw = [repr(v) for v in f.slopes] if f.slopes else [""] * 5
        intercept = "" if f.intercept is None else repr(f.intercept)
        writer.writerow(
            [
                f.scenario,
                f.n_trials,
                f.n_invalid,
                f.n_a,
                *raw,
                intercept,
                f.separation or "",
                f.excluded or "",
            ]
        )
    atomic_write(path, buffer.getvalue())
    return Path(path)


def write_analysis(
    analysis: PreferenceAnalysis, directory: str | Path, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write the run's files into `directory` (see the module docstring); returns the results
    (with `extra`, e.g. the inputs, added under their own keys)."""
    from reasonlens.runs.files import atomic_write, write_json

    directory = Path(directory)
    write_weights(directory / "learned_weights.csv", analysis.learned)
    write_fits(directory / "fits.csv", analysis.recovery)
    plot_learned_vs_target(analysis, directory / "learned_vs_target.png")
    for label, report in analysis.self_reports.items():
        plot_reports(report, analysis.learned, directory / f"report_vs_learned_{label}.png", label)
    atomic_write(directory / "summary.md", summary_markdown(analysis))
    results = analysis.to_dict() | dict(extra or {})
    write_json(directory / "results.json", results)
    return results
