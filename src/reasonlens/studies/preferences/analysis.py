"""The preferences study's analyses, from the decisions and reports its stages wrote.

    analysis/
      analysis.json             every figure below (what results.json and the report read)
      instilled/, base/         experiment 1 on the instilled scenarios' test trials, for the
                                instilled model and for the untrained one (its control): the
                                letter's recovery (`reasonlens preferences analyse`'s files:
                                results.json, learned_weights.csv, fits.csv, plots, summary.md)
                                and the logit-based recoveries (learned_weights_logit_*.csv,
                                learned_vs_target_logit_linear.png)
      native/, native_base/     the native scenarios' trials: the instilled model's own
                                preferences (the truth of experiment 3's native test) and the
                                untrained model's
      learning_curves.png       training loss by step, instillation and introspection, and
                                the held-out validation curve of instillation (see .curve)
      decision_curves.png       logit(A) - logit(B) against the target's utility difference

Experiment 2 correlates the instilled model's self-reports with the weights it acts on
(learned, and, labelled, the targets); its control asks the untrained model the same questions
and scores its reports against the same learned weights. Experiment 3 scores reports after
introspection training on the held-out half of the instilled scenarios (truth: the instilled
model's learned weights) and on the native scenarios (truth: the instilled model's learned
weights there, measured before introspection training), each beside the same reports before
that training. Both run twice: on the replies, parsed strictly (``reports``, ``introspection``),
and on the scored read-out of the same questions, read from the logits of constrained choices
(``reports_scored``, ``introspection_scored``; see .readout.score_reports), which a model that
never writes the JSON still answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonlens.runs import write_json
from reasonlens.studies.preferences.curve import CURVE_FILE, commoner_letter_rate, read_curve
from reasonlens.studies.preferences.data import StudyData
from reasonlens.studies.preferences.presets import PreferencesPreset
from reasonlens.studies.preferences.readout import SCORED
from reasonlens.studies.preferences.weights import (
    Inputs,
    PreferenceAnalysis,
    analyse_preferences,
    choice_agreement,
    paired_correlation,
    per_attribute_correlation,
    pooled_correlation,
    self_report,
    sign_agreement,
)
from reasonlens.studies.preferences.weights.analysis import plot_learned_vs_target, write_analysis
from reasonlens.studies.preferences.weights.logits import (
    recover_from_logits,
    recover_from_sign,
    value_sensitivity,
)
from reasonlens.studies.preferences.weights.metrics import Correlation
from reasonlens.tasks.preferences.release import Decision, Report, Weights, write_weights
from reasonlens.tasks.preferences.scenarios import utility

LEARNING_CURVES = "learning_curves.png"
DECISION_CURVES = "decision_curves.png"


def _corr(c: Correlation | None) -> dict[str, Any] | None:
    return None if c is None else c.to_dict()


def _decisions_summary(analysis: PreferenceAnalysis) -> dict[str, Any]:
    """The letter-based headline of one analysis."""
    d = analysis.to_dict()
    keep = (
        "r_learned_target",
        "agreement",
        "share_a",
        "target_share_a",
        "invalid_rate",
        "n_invalid",
        "n_trials",
        "n_scenarios",
        "n_scenarios_excluded",
        "excluded",
        "separable",
        "regression",
        "recovery",
        "per_attribute",
        "logit_diff",
    )
    return {k: d[k] for k in keep if k in d}


def _logit_recoveries(
    scenarios,
    targets,
    decisions: list[Decision],
    p: PreferencesPreset,
    seed: int,
    out: Path,
    learned_by: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """The two logit-based recoveries (see weights.logits), with their files; each read-out's
    learned weights go into `learned_by` (for the paired comparison with the control)."""
    results: dict[str, Any] = {
        "sensitivity": value_sensitivity(scenarios, decisions, seed=seed),
        "sign_agreement": sign_agreement(scenarios, targets, decisions, p.n_boot, seed),
    }
    for label, recovery in (
        ("logit_linear", recover_from_logits(scenarios, decisions)),
        ("logit_sign", recover_from_sign(scenarios, decisions, p.regression)),
    ):
        learned = recovery.learned
        if learned_by is not None:
            learned_by[label] = learned
        used = {n: targets[n] for n in learned}
        r = pooled_correlation(learned, used, p.n_boot, seed)
        per_attribute = per_attribute_correlation(learned, used)
        write_weights(out / f"learned_weights_{label}.csv", learned)
        if label == "logit_linear" and learned:
            view = PreferenceAnalysis(
                recovery=recovery,
                targets=used,
                recovery_r=r,
                per_attribute=per_attribute,
                agreement=choice_agreement(scenarios, targets, decisions),
            )
            plot_learned_vs_target(view, out / "learned_vs_target_logit_linear.png")
        results[label] = {
            "r_learned_target": r.r,
            "recovery": r.to_dict(),
            "per_attribute": per_attribute,
            "n_scenarios": r.n_scenarios,
            "excluded": recovery.excluded,
            "regression": recovery.regression,
        }
    return results


#: The read-outs whose recovery is compared with the control's, pairwise (see `paired`).
READOUTS = ("letter", "logit_linear", "logit_sign")


def _experiment1(
    data: StudyData, decisions: list[Decision], reports: list[Report], label: str, p, seed, out
) -> tuple[PreferenceAnalysis, dict[str, Any], dict[str, dict]]:
    """One model's experiment 1, and its learned weights by read-out."""
    scenarios = data.subset(data.instilled)
    inputs = Inputs(scenarios, data.targets, decisions, {label: reports} if reports else {})
    analysis = analyse_preferences(inputs, p.regression, p.n_boot, seed)
    write_analysis(analysis, out)
    summary = _decisions_summary(analysis)
    learned_by = {"letter": analysis.learned}
    summary |= _logit_recoveries(scenarios, data.targets, decisions, p, seed, out, learned_by)
    return analysis, summary, learned_by


def primary_readout(summary: dict[str, Any]) -> str:
    """The read-out a model's instillation verdict rests on: the letter, unless the model's
    valid letters are one-sided (every one "A" or every one "B", or no scenario with both),
    when the letter's regression has nothing to fit and the logit difference's linear fit
    (which every trial feeds) is the measure."""
    share = summary.get("share_a")
    one_sided = share is None or share in (0.0, 1.0) or not summary.get("n_scenarios")
    return "logit_linear" if one_sided else "letter"


def _report_figures(report) -> dict[str, Any]:
    out = report.to_dict()
    out.pop("mean", None)
    return out


def _subset(reports: list[Report], names) -> list[Report]:
    names = set(names)
    return [r for r in reports if r.scenario in names]


def _self_reports(
    data: StudyData,
    reports: dict[str, dict[str, list[Report]]],
    learned: Weights,
    base_learned: Weights,
    native_learned: Weights | None,
    n_boot: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Experiment 2 (self-reports against the weights the model acts on, the untrained model
    as control) and experiment 3 (before and after introspection training) on one kind of
    report: the parsed replies or the scored read-out."""
    targets = data.targets

    def figures(rows: list[Report], truth: Weights) -> dict[str, Any]:
        return _report_figures(self_report(rows, truth, targets, n_boot, seed))

    e2 = {
        "instilled": figures(reports["instilled"]["instilled"], learned),
        # control: the untrained model asked the same questions, scored against the same
        # learned weights (and, labelled, against its own)
        "base": figures(reports["base"]["instilled"], learned),
        "base_vs_own_learned": figures(reports["base"]["instilled"], base_learned),
    }
    held, trained = data.held_out, data.manifest["introspect_train"]
    held_learned = {n: learned[n] for n in held if n in learned}
    trained_learned = {n: learned[n] for n in trained if n in learned}
    e3: dict[str, Any] = {
        "trained_on": trained,
        "held_out": held,
        "held_out_before": figures(_subset(reports["instilled"]["instilled"], held), held_learned),
        "held_out_after": figures(
            _subset(reports["introspected"]["instilled"], held), held_learned
        ),
        # the scenarios it was trained on (truth in training: the targets), a check that the
        # training took at all
        "trained_after": figures(
            _subset(reports["introspected"]["instilled"], trained), trained_learned
        ),
    }
    if native_learned is not None:
        e3["native_before"] = figures(reports["instilled"]["native"], native_learned)
        e3["native_after"] = figures(reports["introspected"]["native"], native_learned)
    return e2, e3


def analyse_study(
    p: PreferencesPreset, seed: int, upstream: dict[str, Any], directory: Path
) -> dict[str, Any]:
    """Every analysis (see the module docstring); writes analysis.json and returns it."""
    data: StudyData = upstream["data"]
    decide = {"base": upstream["decide_base"], "instilled": upstream["decide_instilled"]}
    reports = {
        "base": upstream["reports_base"],
        "instilled": upstream["reports_instilled"],
        "introspected": upstream["reports_introspected"],
    }
    directory.mkdir(parents=True, exist_ok=True)
    n_boot = p.n_boot
    out: dict[str, Any] = {}

    # experiment 1: recovery on fresh trials, instilled model and its untrained control
    fitted, learned_by = {}, {}
    for which in ("instilled", "base"):
        fitted[which], out[which], learned_by[which] = _experiment1(
            data,
            decide[which]["test"],
            reports[which]["instilled"],
            which,
            p,
            seed,
            directory / which,
        )
    inst, base = fitted["instilled"], fitted["base"]
    # instilled against untrained on the same scenarios and the same bootstrap resamples
    out["paired"] = {
        key: paired_correlation(
            learned_by["instilled"][key], learned_by["base"][key], data.targets, n_boot, seed
        )
        for key in READOUTS
    }
    out["primary_readout"] = primary_readout(out["instilled"])
    instilled = data.subset(data.instilled)
    val = decide["instilled"].get("val", [])
    if val:
        out["validation"] = choice_agreement(instilled, data.targets, val).to_dict()
    # the untrained model's weights against the instilled model's: what it would "reach" anyway
    out["base_vs_instilled_learned"] = _corr(
        pooled_correlation(base.learned, inst.learned, n_boot, seed)
    )

    # native preferences: the instilled model's (truth for experiment 3) and the untrained one's
    natives = data.subset(data.native)
    native = None
    if data.native:
        native_inputs = Inputs(
            natives,
            data.targets,
            decide["instilled"]["native"],
            {"before": reports["instilled"]["native"], "after": reports["introspected"]["native"]},
        )
        native = analyse_preferences(native_inputs, p.regression, n_boot, seed)
        write_analysis(native, directory / "native")
        out["native"] = _decisions_summary(native)
        if decide["base"].get("native"):
            native_base = analyse_preferences(
                Inputs(natives, data.targets, decide["base"]["native"]), p.regression, n_boot, seed
            )
            write_analysis(native_base, directory / "native_base")
            out["native_base"] = _decisions_summary(native_base)
            out["native_base_vs_instilled"] = _corr(
                pooled_correlation(native_base.learned, native.learned, n_boot, seed)
            )

    # experiments 2 and 3 on the replies (parsed strictly) and on the scored read-out; their
    # truth is the weights the model acts on, by the primary read-out (the letter's regression
    # has nothing to fit when the letters are one-sided)
    primary = out["primary_readout"]
    learned, base_learned = learned_by["instilled"][primary], learned_by["base"][primary]
    native_learned = None
    if native is not None:
        native_primary = primary_readout(out["native"])
        native_learned = (
            native.learned
            if native_primary == "letter"
            else recover_from_logits(natives, decide["instilled"]["native"]).learned
        )
        out["truth_readout"] = {"instilled": primary, "native": native_primary}
    else:
        out["truth_readout"] = {"instilled": primary}
    scored = all(f"instilled{SCORED}" in r for r in reports.values())
    for suffix in ("", SCORED) if scored else ("",):
        by_model = {
            which: {part: r[part + suffix] for part in r if not part.endswith(SCORED)}
            for which, r in reports.items()
        }
        e2, e3 = _self_reports(data, by_model, learned, base_learned, native_learned, n_boot, seed)
        out["reports" + suffix], out["introspection" + suffix] = e2, e3

    out["validation_curve"] = read_curve(Path(upstream["instil"]["directory"]) / CURVE_FILE)
    plot_learning_curves(upstream, out["validation_curve"], directory / LEARNING_CURVES)
    plot_decision_curves(data, decide, directory / DECISION_CURVES)
    write_json(directory / "analysis.json", out)
    return out


def plot_learning_curves(
    upstream: dict[str, Any], curve: list[dict[str, Any]], path: Path
) -> Path | None:
    """Training loss (letter + end token; JSON + end token) by optimizer step."""
    from reasonlens.plots import new_figure, save_figure
    from reasonlens.train.callbacks import read_log

    logs = {
        "instillation (decisions)": read_log(
            Path(upstream["instil"]["directory"]) / "train_log.jsonl"
        ),
        "introspection (reports)": read_log(
            Path(upstream["introspect"]["directory"]) / "train_log.jsonl"
        ),
    }
    if not any(logs.values()):
        return None
    fig = new_figure(figsize=(16 if curve else 11, 3.6), dpi=100)
    axes = fig.subplots(1, 3 if curve else 2)
    if curve:
        _plot_curve(axes[2], curve)
    for ax, (title, records) in zip(axes, logs.items(), strict=False):
        points = [(r["step"], r["loss"]) for r in records if "loss" in r]
        if points:
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, marker="." if len(steps) < 60 else None, linewidth=1)
        acc = [(r["step"], r["mean_token_accuracy"]) for r in records if "mean_token_accuracy" in r]
        if acc:
            twin = ax.twinx()
            twin.plot(*zip(*acc, strict=True), color="tab:orange", linewidth=0.8, alpha=0.7)
            twin.set_ylabel("token accuracy (labelled tokens)", fontsize=8, color="tab:orange")
            twin.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_curve(ax, curve: list[dict[str, Any]]) -> None:
    """Held-out agreement and r by step, with the targets' base rate (what a model that
    always answers the commoner letter agrees)."""
    steps = [p["step"] for p in curve]
    ax.plot(steps, [p["agreement"] for p in curve], marker=".", label="agreement (logit sign)")
    r = [(p["step"], p["r_logit"]) for p in curve if p["r_logit"] is not None]
    if r:
        ax.plot(*zip(*r, strict=True), marker=".", label="r learned vs target (logit fit)")
    ax.axhline(
        commoner_letter_rate(curve[0]),
        color="grey",
        linestyle="--",
        linewidth=0.8,
        label="commoner letter",
    )
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(f"validation trials ({curve[0]['n_trials']}), step 0 = untrained", fontsize=9)
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)


def plot_decision_curves(data: StudyData, decide: dict[str, dict], path: Path) -> Path | None:
    """logit(A) - logit(B) on the test trials against the target's U_A - U_B, untrained vs
    instilled: a model that acts on the targets draws a rising cloud."""
    from reasonlens.plots import new_figure, save_figure

    fig = new_figure(figsize=(10, 4), dpi=100)
    axes = fig.subplots(1, 2, sharey=False)
    drawn = False
    for ax, which in zip(axes, ("base", "instilled"), strict=True):
        points = []
        for d in decide[which].get("test", []):
            if d.logit_diff is None:
                continue
            s, w = data.scenarios[d.scenario], data.targets[d.scenario]
            points.append((utility(s, w, d.a) - utility(s, w, d.b), d.logit_diff))
        if not points:
            continue
        drawn = True
        x, y = zip(*points, strict=True)
        ax.scatter(x, y, s=6, alpha=0.5)
        ax.axhline(0, color="grey", linewidth=0.7)
        ax.axvline(0, color="grey", linewidth=0.7)
        label = "untrained" if which == "base" else which
        ax.set_title(f"{label} model, test trials", fontsize=9)
        ax.set_xlabel("target utility difference U_A - U_B", fontsize=8)
        ax.set_ylabel("logit(A) - logit(B)", fontsize=8)
    if not drawn:
        return None
    fig.tight_layout()
    return save_figure(fig, path)
