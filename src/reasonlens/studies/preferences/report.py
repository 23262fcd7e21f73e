"""The preferences study's report, declared: this run beside the paper's figures and the seed's
failed reproduction, every number with its n and, for correlations, a 95% bootstrap CI over
scenarios; the untrained model's figures beside the instilled model's. Each claim (a
correlation above 0, agreement above the commoner letter) is judged by its interval
(`report.verdicts.by_interval`); the builder adds the verdicts at a glance, the training
section and provenance."""

from __future__ import annotations

from typing import Any

from reasonlens.report.builder import Bullets, Claim, Claims, Figure, Report, Section, Table
from reasonlens.report.document import num, pct
from reasonlens.report.verdicts import Estimate, Verdict, by_interval, not_measurable, too_few
from reasonlens.runs import RunDir
from reasonlens.studies.preferences.curve import commoner_letter_rate
from reasonlens.studies.preferences.presets import BUDGET_NOTES, MIN_CI_SCENARIOS

#: The paper's figures, recomputed from the original release (issue 12, spec A1-A3).
PAPER = {
    "r_learned_target": ("0.843", "0.871"),
    "agreement": ("82.6%", "82.8%"),
    "share_a": ("50.1% (target 49.6%)", "50.8% (target 50.3%)"),
    "r_report_learned": ("0.54", "0.50"),
    "r_report_base": ("0.10", "-0.01"),
    "held_out_after": ("0.74-0.75", "0.74-0.75"),
    "native": ("0.46 -> 0.71", "0.40 -> 0.70"),
}
#: The seed's LoRA reproduction on Llama-3.2-1B/3B and Gemma-3-1B/4B (spec A4).
SEED = {
    "r_learned_target": "0.10, 0.07, -0.00, 0.05",
    "share_a": '93-99% "A" (target 51%)',
}
CONTROL = "untrained model"
BEFORE = "before introspection training"


def preferences_report(run: RunDir, results: dict[str, Any], stages: dict) -> Report:
    """The report's declaration (everything is in `results`)."""
    e1, e2, e3 = results["experiment1"], results["experiment2"], results["experiment3"]
    data = results["data"]
    counts = data["counts"]
    n_inst, n_nat = len(data["instilled"]), len(data["native"])
    intro = (
        f"{n_inst} scenarios received target weights by fine-tuning on {counts['train']} "
        f"decisions ({counts['train'] // max(n_inst, 1)} a scenario; {counts['val']} more held "
        f"for validation); {counts['test']} fresh test trials, disjoint from those, measure what "
        f"was learned. {n_nat} native scenarios ({counts['native']} trials) measure preferences "
        "the model was never trained on. Every figure of the instilled model stands beside "
        "the same figure of the untrained model on the same trials: a number the untrained "
        "model also reaches is no evidence of instillation. Correlations are pooled Pearson r "
        "over (scenario, attribute) pairs with a 95% bootstrap CI resampling scenarios."
    )
    note = (
        f"Each claim's control is the {CONTROL} on the same trials, except after introspection "
        f"training, where it is the instilled model {BEFORE}. In experiment 1 the instilled "
        "and untrained models' r are compared pairwise: on the scenarios both have weights "
        "for and the same bootstrap resamples of them, a claim beats its control when the "
        "interval of the difference lies above 0 (the share of resamples in which it is "
        "higher is shown beside it). Elsewhere no paired difference is recorded, so a claim "
        "beats its control when the control's interval lies below its own; a control with no "
        f"r at all does not reach the claim. Fewer than {MIN_CI_SCENARIOS} scenarios give no "
        "CI and no verdict."
    )
    return Report(
        title=f"Preferences study — {results['model']} ({results['preset']} preset)",
        intro=[
            intro,
            *([BUDGET_NOTES[results["preset"]]] if results["preset"] in BUDGET_NOTES else []),
        ],
        headline=[_headline(results)],
        sections=[
            _experiment1(e1),
            _experiment2(e2),
            _experiment3(e3, results["native"]),
            _differences(results),
        ],
        data=f"data: {n_inst} instilled + {n_nat} native scenarios from the catalogue; trials "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + " (see `data/manifest.json`)",
        summary=[_headline_table(results)],
        control_name=CONTROL,
        notes=[note],
    )


# Cells ----------------------------------------------------------------------------------------


def _r(c: dict | None) -> str:
    """r [95% CI] (n scenarios); the CI only from `MIN_CI_SCENARIOS` scenarios."""
    n = c.get("n_scenarios", 0) if c else 0
    if not c or c.get("r") is None:
        return f"– ({n} scenarios)"
    if n < MIN_CI_SCENARIOS:
        return f"{num(c['r'])} ({n} scenarios: too few for a CI)"
    ci = f" [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" if c.get("ci_low") is not None else " [no CI]"
    return f"{num(c['r'])}{ci} ({n} scenarios)"


def _report_cell(rep: dict | None, key: str = "vs_learned") -> str:
    if not rep:
        return "–"
    bad = rep.get("n_bad")
    bad_text = f"; {bad} of {rep['n_reports']} bad" if bad is not None else ""
    return f"{_r(rep.get(key))}{bad_text}"


def _agreement(e: dict) -> str:
    n = e.get("n_trials", 0) - e.get("n_invalid", 0)
    return f"{pct(e.get('agreement'))} of {n} valid"


def _share(e: dict) -> str:
    return f"{pct(e.get('share_a'))} (target {pct(e.get('target_share_a'))})"


def _invalid(e: dict) -> str:
    return f"{e.get('n_invalid', 0)} of {e.get('n_trials', 0)} ({pct(e.get('invalid_rate'))})"


def _sensitivity(e: dict) -> str:
    """Whether the logit difference depends on the options at all (see logits.value_sensitivity)."""
    v = e.get("sensitivity") or {}
    if not v.get("n_scenarios"):
        return "–"
    return (
        f"R² {num(v['mean_r2'], 2)} (permuted {num(v['permuted_r2'], 2)}); "
        f"spread {num(v['within_sd'])}"
    )


def _logit_agreement(e: dict) -> str:
    logit = e.get("logit_diff") or {}
    if not logit:
        return "–"
    return (
        f"{pct(logit.get('agreement_with_target'))} of {logit.get('n')}; "
        f'{pct(logit.get("share_a"))} "A"'
    )


# Claims ---------------------------------------------------------------------------------------


def _verdict(
    n: int,
    estimate: Estimate,
    control: Estimate | None,
    threshold: float = 0.0,
    control_name: str = CONTROL,
    no_interval: str | None = None,
    versus_control: Estimate | None = None,
) -> Verdict:
    """`estimate` above `threshold` by its 95% interval, beside `control` (and, where there is
    one, the paired difference from it): the sample-size rule first, then `by_interval`."""
    if n < MIN_CI_SCENARIOS:
        return not_measurable(too_few(n, "scenarios", MIN_CI_SCENARIOS))
    if no_interval and estimate.value is not None and not estimate.has_interval:
        return not_measurable(no_interval)
    return by_interval(
        estimate,
        threshold,
        control=control,
        versus_control=versus_control,
        control_name=control_name,
    )


def _versus(paired: dict | None) -> Estimate | None:
    """The paired difference (instilled minus untrained r on the same resamples), where the
    pairing had the scenarios for an interval."""
    if not paired or paired.get("low") is None:
        return None
    if paired.get("n_scenarios", 0) < MIN_CI_SCENARIOS:
        return None
    return Estimate(paired["difference"], paired["low"], paired["high"])


def _paired_cell(paired: dict | None) -> str:
    """The paired difference, its interval and the share of resamples in which it is > 0."""
    v = _versus(paired)
    if v is None:
        return "–"
    return (
        f"{v.show(3)}; higher in {pct(paired.get('share_higher'))} of "
        f"{paired.get('n_resamples')} resamples ({paired['n_scenarios']} scenarios)"
    )


def _control(c: dict | None) -> Estimate | None:
    """The control's r, with its CI where it has the scenarios for one; None where it has no r
    at all (a control with no learned weights does not reach the claim)."""
    if not c or c.get("r") is None:
        return None
    if c.get("n_scenarios", 0) < MIN_CI_SCENARIOS:
        return Estimate(c["r"])
    return Estimate.of(c, "r")


def _r_claim(
    text: str,
    c: dict | None,
    control: dict | None,
    reference: str = "–",
    value: str | None = None,
    shown_control: str | None = None,
    control_name: str = CONTROL,
    paired: dict | None = None,
) -> Claim:
    """The claim that r > 0 (its 95% CI over scenarios excludes 0), beside its control (and
    the paired difference from it, where there is one: then that decides)."""
    n = c.get("n_scenarios", 0) if c else 0
    said = _verdict(
        n,
        Estimate.of(c, "r"),
        _control(control),
        control_name=control_name,
        versus_control=_versus(paired),
    )
    if paired is not None and shown_control is None:
        shown_control = f"{_r(control)}; paired difference {_paired_cell(paired)}"
    return Claim(
        text,
        value if value is not None else _r(c),
        said,
        shown_control if shown_control is not None else _r(control),
        reference,
    )


def _agreement_claim(inst: dict, base: dict) -> Claim:
    """Agreement with the target choice above always answering the commoner letter."""
    target = inst.get("target_share_a")
    bar = None if target is None else commoner_letter_rate(inst)
    n = inst.get("n_scenarios", 0) + inst.get("n_scenarios_excluded", 0)
    control = base.get("agreement")
    said = (
        not_measurable("no valid decision to score")
        if bar is None
        else _verdict(
            n,
            Estimate(inst.get("agreement")),
            None if control is None else Estimate(control),
            threshold=bar,
            no_interval="agreement is counted over trials: the analysis records no interval "
            "over scenarios",
        )
    )
    return Claim(
        "decisions (letter) agree with the target choice more often than always answering the "
        f"commoner letter ({pct(bar)})",
        _agreement(inst),
        said,
        _agreement(base),
        " / ".join(PAPER["agreement"]),
    )


# The headline ---------------------------------------------------------------------------------


NONE = ("–", "–", "–")  # no figure from the paper or the seed


def _recovery(key: str | None = None):
    """The cell of a recovery's r: the letter's (no key) or a logit read-out's."""
    return lambda e: _r(((e.get(key) or {}) if key else e).get("recovery"))


def _headline_table(results: dict) -> Table:
    e1, e2, e3 = results["experiment1"], results["experiment2"], results["experiment3"]
    inst, base = e1["instilled"], e1["base"]
    per_model = (  # measure, its cell for one model, the paper's two figures and the seed's
        (
            "learned vs target r (letter)",
            _recovery(),
            (*PAPER["r_learned_target"], SEED["r_learned_target"]),
        ),
        (
            "learned vs target r (logit(A) - logit(B), linear fit) [X]",
            _recovery("logit_linear"),
            NONE,
        ),
        ("learned vs target r (sign of the logit difference) [X]", _recovery("logit_sign"), NONE),
        (
            "does the decision depend on the options? R² of logit(A) - logit(B) on the five "
            "differences (permuted logits: a model ignoring the values); its median spread "
            "within a scenario [X]",
            _sensitivity,
            NONE,
        ),
        ("agreement with the target choice (letter)", _agreement, (*PAPER["agreement"], "–")),
        ("agreement with the target choice (logit sign) [X]", _logit_agreement, NONE),
        ('share of "A"', _share, (*PAPER["share_a"], SEED["share_a"])),
        ("invalid replies", _invalid, ("0", "0", "scored as A")),
    )
    rows = [[measure, cell(inst), cell(base), *ref] for measure, cell, ref in per_model]
    after, before = (_report_cell(e3.get(k)) for k in ("held_out_after", "held_out_before"))
    native = " -> ".join(_report_cell(e3.get(k)) for k in ("native_before", "native_after"))
    rows += [
        [
            "self-report vs learned r",
            *(_report_cell(e2.get(k)) for k in ("instilled", "base")),
            *PAPER["r_report_learned"],
            "–",
        ],
        [
            "after introspection training, held-out half",
            after,
            f"before: {before}",
            *PAPER["held_out_after"],
            "–",
        ],
        [
            "native preferences, before -> after introspection training",
            native,
            "–",
            *PAPER["native"],
            "–",
        ],
    ]
    if e2.get("scored"):
        rows.insert(
            -2,
            [
                f"self-report vs learned r, {SCORED_NAME} [X]",
                *(_report_cell(e2["scored"].get(k)) for k in ("instilled", "base")),
                *NONE,
            ],
        )
    header = [
        "measure",
        "this run: instilled model",
        "this run: untrained model (control)",
        "GPT-4o (paper)",
        "GPT-4o-mini (paper)",
        "seed's reproduction (1-4B, LoRA)",
    ]
    return Table(header, rows)


def _headline(results: dict) -> Section:
    return Section(
        "This run beside the paper and the seed's reproduction",
        [
            _headline_table(results),
            "The paper's untrained base models: self-report r 0.10 (GPT-4o) and -0.01 "
            "(GPT-4o-mini). [X] marks read-outs beyond the original (the logit difference at "
            "the answer position). The untrained column of the self-report row scores the "
            "untrained model's reports against the instilled model's learned weights (the same "
            "truth); the held-out row's control is the instilled model before introspection "
            "training.",
            Section("What this run shows", [Bullets(findings(results))], level=3),
        ],
    )


def _letters(e: dict) -> str:
    """Why a letter-based r is missing: what the valid decisions were."""
    n_valid = e.get("n_trials", 0) - e.get("n_invalid", 0)
    if not n_valid:
        return f"none of its {e.get('n_trials', 0)} replies is a valid letter"
    share = e.get("share_a")
    letter = "A" if share == 1 else "B" if share == 0 else None
    if letter:
        return f'it answers "{letter}" to every one of its {n_valid} valid trials'
    return f"{e.get('n_scenarios_excluded', 0)} scenarios have one outcome class"


def findings(results: dict) -> list[str]:
    """What the figures say, in sentences (each with the figure it rests on; the verdicts on
    them are the claims')."""
    e1 = results["experiment1"]
    inst, base = e1["instilled"], e1["base"]
    out = []
    for label, e in (("instilled", inst), ("untrained", base)):
        c = e.get("recovery")
        if not c or c.get("r") is None:
            out.append(f"{label} model, letter: no learned weights ({_letters(e)})")
        else:
            out.append(f"{label} model, letter: r = {_r(c)}")
        lin = (e.get("logit_linear") or {}).get("recovery")
        if lin and lin.get("r") is not None:
            out.append(f"{label} model, logit difference: r = {_r(lin)}")
    v = inst.get("sensitivity") or {}
    if v.get("n_scenarios"):
        reads = v["mean_r2"] - v["permuted_r2"]
        out.append(
            f"the instilled model's logit difference is explained by the options' values with "
            f"R² {v['mean_r2']:.2f} against {v['permuted_r2']:.2f} for the same logits "
            f"shuffled within each scenario ({v['n_scenarios']} scenarios); it varies by "
            f"{v['within_sd']:.3f} within a scenario (median SD)"
            + (
                ": its decisions barely depend on the options, so any read-out has almost "
                "nothing to read"
                if reads < 0.1 or v["within_sd"] < 0.1
                else ""
            )
        )
    curve = e1.get("validation_curve") or []
    if len(curve) > 1:
        base_rate = commoner_letter_rate(curve[0])
        # a point where every decision is one letter agrees at that letter's base rate:
        # no evidence of reading the values, so it cannot be the best point
        mixed = [p for p in curve[1:] if 0 < p["share_a"] < 1]
        best = max(mixed, key=lambda p: p["agreement"]) if mixed else None
        out.append(
            f"held-out curve: validation agreement {pct(curve[0]['agreement'])} untrained, "
            f"{pct(curve[-1]['agreement'])} at the last step ({curve[-1]['step']}); "
            + (
                f"best {pct(best['agreement'])} at step {best['step']}"
                if best
                else "every trained point answers one letter on every trial"
            )
            + f"; always answering the commoner letter agrees {pct(base_rate)}"
        )
    first, final = (results["train"]["instil"].get(k) for k in ("first_loss", "final_loss"))
    if first is not None and final is not None:
        out.append(
            f"instillation loss {first:.3f} -> {final:.3f} per labelled token (letter and end "
            "token; a model that has learnt only the format and the base rate of the letters "
            "sits near ln(2)/2 = 0.347)"
        )
    return out


# The experiments ------------------------------------------------------------------------------

PAPER_COLUMN = "paper (GPT-4o / GPT-4o-mini)"


#: Each read-out's name in the report.
READOUT_NAMES = {
    "letter": "the letter",
    "logit_linear": "logit(A) - logit(B), linear fit",
    "logit_sign": "the sign of logit(A) - logit(B)",
}


def _primary(e1: dict) -> str:
    return e1.get("primary_readout") or "letter"


def _primary_note(e1: dict) -> str:
    """Which read-out the instillation verdict rests on, and why."""
    primary = _primary(e1)
    if primary == "letter":
        return (
            "Primary read-out: the letter (the original's), whose valid decisions include both "
            "letters; the logit read-outs [X] are shown beside it."
        )
    return (
        "Primary read-out: logit(A) - logit(B) at the answer position, linear fit [X]. The "
        "instilled model's letters are one-sided (" + _letters(e1["instilled"]) + "), so the "
        "letter's regression has nothing to fit; the logit difference is read on every trial "
        "and still says how the options move the decision. The letter's claim is kept beside "
        "it, labelled."
    )


def _sign_claim(inst: dict, base: dict) -> Claim:
    """The sign of the logit difference agrees with the target choice more often than the
    commoner letter's share, by the paired interval over scenarios."""
    s, b = inst.get("sign_agreement") or {}, base.get("sign_agreement") or {}

    def cell(x: dict) -> str:
        if x.get("agreement") is None:
            return "–"
        agree = Estimate(x["agreement"], x.get("agreement_low"), x.get("agreement_high"))
        common = Estimate(x["commoner"], x.get("commoner_low"), x.get("commoner_high"))
        return (
            f"{agree.show(3)} of {x['n']} trials vs the commoner letter's share "
            f"{common.show(3)} ({x['n_scenarios']} scenarios)"
        )

    def diff(x: dict) -> Estimate:
        return Estimate(
            x.get("versus_commoner"), x.get("versus_commoner_low"), x.get("versus_commoner_high")
        )

    n = s.get("n_scenarios", 0)
    said = _verdict(n, diff(s), diff(b) if b.get("agreement") is not None else None)
    share = s.get("share_above_commoner")
    value = cell(s) + (f"; above it in {pct(share)} of resamples" if share is not None else "")
    return Claim(
        "[X] the sign of logit(A) - logit(B) agrees with the target choice more often than the "
        "commoner letter's share of the same trials (paired interval of the difference over "
        "scenarios)",
        value,
        said,
        cell(b),
        " / ".join(PAPER["agreement"]),
    )


def _experiment1(e1: dict) -> Section:
    inst, base = e1["instilled"], e1["base"]
    linear = (inst.get("logit_linear") or {}).get("recovery")
    paired = e1.get("paired") or {}
    primary = _primary(e1)

    def tag(key: str) -> str:
        return " (primary read-out)" if key == primary else ""

    claims = Claims(
        [
            _r_claim(
                "the instilled model's learned weights (letter) track the targets: r > 0"
                + tag("letter"),
                inst.get("recovery"),
                base.get("recovery"),
                " / ".join(PAPER["r_learned_target"]),
                paired=paired.get("letter"),
            ),
            _r_claim(
                "[X] the same, learned from logit(A) - logit(B) (linear fit): r > 0"
                + tag("logit_linear"),
                linear,
                (base.get("logit_linear") or {}).get("recovery"),
                paired=paired.get("logit_linear"),
            ),
            _agreement_claim(inst, base),
            _sign_claim(inst, base),
        ],
        reference=PAPER_COLUMN,
        control=CONTROL,
        rule="interval",
    )
    blocks: list[Any] = [
        'Per scenario, a logistic regression of choosing "A" on the five range-normalised '
        f"differences with an intercept ({inst.get('regression', 'l2')}: an N(0, 1) prior on "
        "the slopes, intercept unpenalised), slopes rescaled to max |b| = 100; invalid replies "
        'are left out and counted, never read as "A"; scenarios whose valid decisions are '
        "all one letter are excluded and named. The logit-based recoveries use "
        "logit(A) - logit(B) at the answer position from the same forward pass: its sign as "
        "the decision, or the difference itself in a least-squares fit.",
        _primary_note(e1),
        claims,
    ]
    rows = []
    for label, e in (("instilled", inst), ("untrained", base)):
        per = {a["attribute"]: a["r"] for a in e.get("per_attribute", [])}
        rows.append([label, *(num(per.get(f"attr{k}")) for k in range(1, 6))])
    header = ["r by attribute position (letter)", *(f"attr{k}" for k in range(1, 6))]
    blocks.append(Table(header, rows))
    for label, e in (("instilled", inst), ("untrained", base)):
        excluded = e.get("excluded") or {}
        separable = e.get("separable") or {}
        blocks.append(
            f"{label}: {e.get('n_scenarios', 0)} scenarios enter r, {len(excluded)} excluded"
            + (": " + "; ".join(f"{k} ({v})" for k, v in excluded.items()) if excluded else "")
            + f"; {len(separable)} separable (finite only through the prior)."
        )
    val = e1.get("validation")
    if val:
        blocks.append(
            f"Validation trials (never trained on, read after training): agreement "
            f"{pct(val.get('agreement'))} of {val.get('n_valid')} valid, "
            f"{val.get('n_invalid')} invalid of {val.get('n_trials')}."
        )
    cross = e1.get("base_vs_instilled_learned")
    if cross:
        blocks.append(
            f"The untrained model's learned weights against the instilled model's: r = {_r(cross)}."
        )
    blocks += [
        Figure(
            "analysis/instilled/learned_vs_target.png",
            "instilled model: learned (letter) vs target weights",
        ),
        Figure(
            "analysis/instilled/learned_vs_target_logit_linear.png",
            "instilled model: learned (logit difference, linear) vs target weights",
        ),
        Figure(
            "analysis/base/learned_vs_target.png",
            "untrained model: learned (letter) vs target weights",
        ),
        Figure(
            "analysis/decision_curves.png",
            "logit(A) - logit(B) against the target utility difference, test trials",
        ),
    ]
    curve = _curve(e1.get("validation_curve") or [])
    return Section(
        "Experiment 1: instilled preferences, recovered from decisions",
        [*blocks, *([curve] if curve else [])],
    )


def _curve(curve: list[dict]) -> Section | None:
    """The held-out curve of instillation (the builder's Training section has the stages)."""
    if not curve:
        return None
    header = [
        "step",
        "examples",
        "train loss",
        "agreement",
        'share of "A"',
        "r (logit fit)",
        "null r: SD, 95th percentile",
        "spread within a scenario",
    ]
    rows = [
        [
            p["step"],
            p["examples"],
            num(p.get("train_loss")),
            pct(p["agreement"]),
            f"{pct(p['share_a'])} (target {pct(p['target_share_a'])})",
            num(p.get("r_logit")),
            (
                f"{num(p['r_null_sd'])}, {num(p['r_null_q95'])}"
                if p.get("r_null_sd") is not None
                else "–"
            ),
            num(p.get("within_sd")),
        ]
        for p in curve
    ]
    precision = curve[-1].get("precision", "float32 from the last hidden state (bf16 forward)")
    return Section(
        "Held-out curve of instillation",
        [
            "The validation trials (never trained on) read along the way, logit(A) - logit(B) "
            f"at the answer position (whole forward in {precision}); step 0 is the untrained "
            "model. The training loss cannot tell values learnt from a base rate learnt; this "
            "can. The loss covers the answer (the letter, or the JSON object) and the end "
            "token only; the prompt carries no labels (a test checks it on the real tokenised "
            "examples). The null r is the same fit with each scenario's logit differences "
            "shuffled among its trials: its spread is set by the number of (scenario, "
            "attribute) pairs (about 1/sqrt(5 x scenarios - 1)), so an r is read as an effect "
            "only above its 95th percentile, and a single step's r is one draw.",
            Table(header, rows),
            Figure(
                "analysis/learning_curves.png",
                "training loss by step; held-out curve of instillation",
            ),
        ],
        level=3,
    )


#: How the scored read-out is named wherever a claim or a row uses it.
SCORED_NAME = "scored from the logits (constrained choice)"


#: How each read-out that can give the learned weights is named.
READOUT_NAMES = {
    "letter": "the letter's logistic regression",
    "logit_linear": "the linear fit of logit(A) - logit(B) (the letters are one-sided)",
}


def _truth(readouts: dict[str, str]) -> str:
    """Which learned weights experiments 2 and 3 score the reports against."""
    said = "; ".join(
        f"on the {part} scenarios, {READOUT_NAMES.get(key, key)}" for part, key in readouts.items()
    )
    return f"The learned weights (the truth here and in experiment 3) come from: {said}."


def _experiment2(e2: dict) -> Section:
    scored = e2.get("scored") or {}
    claims = [
        _r_claim(
            "the instilled model's self-reports track its learned weights: r > 0",
            (e2.get("instilled") or {}).get("vs_learned"),
            (e2.get("base") or {}).get("vs_learned"),
            " / ".join(PAPER["r_report_learned"]),
            value=_report_cell(e2.get("instilled")),
            shown_control=_report_cell(e2.get("base")),
        )
    ]
    if scored:
        claims.append(
            _r_claim(
                f"the same, {SCORED_NAME}: r > 0",
                (scored.get("instilled") or {}).get("vs_learned"),
                (scored.get("base") or {}).get("vs_learned"),
            )
        )
    rows = []
    for source, label in ((e2, "replies"), (scored, SCORED_NAME)):
        for who, key in (
            ("instilled model", "instilled"),
            ("untrained model (vs the instilled model's learned weights)", "base"),
            ("untrained model (vs its own learned weights)", "base_vs_own_learned"),
        ):
            rep = source.get(key)
            if rep:
                bad = "–" if source is scored else f"{rep.get('n_bad')} of {rep.get('n_reports')}"
                rows.append([f"{who}: {label}", _report_cell(rep), _r(rep.get("vs_target")), bad])
    return Section(
        "Experiment 2: self-report",
        [
            "The model is asked for the five weights as one JSON object (greedy), a fresh trial "
            "shown; a reply that is not exactly an object of the five names with numbers is a "
            "bad report, counted and dropped. Reports are averaged per scenario and attribute "
            "and correlated with the learned weights (the original's comparison) and, labelled, "
            "the targets. A model this small may never write the JSON, so the same questions "
            f'are also read {SCORED_NAME}: the reply is started as `{{"name": ` for each '
            "attribute, every value from -100 to 100 in steps of 10 is scored as its "
            "continuation, and the reported weight is the expected value under those scores. "
            "Each verdict names the read-out it uses; the strict parser's count of bad replies "
            f"stays beside them. {_truth(e2.get('truth_readout') or {})}",
            Claims(claims, reference=PAPER_COLUMN, control=CONTROL, rule="interval"),
            Table(["reports of", "r vs learned", "r vs target", "bad reports"], rows),
            Figure(
                "analysis/instilled/report_vs_learned_instilled.png",
                "instilled model: mean reported vs learned weights",
            ),
        ],
    )


def _introspection_claim(text: str, after: dict | None, before: dict | None, paper: str) -> Claim:
    return _r_claim(
        text,
        (after or {}).get("vs_learned"),
        (before or {}).get("vs_learned"),
        paper,
        value=_report_cell(after),
        shown_control=f"before: {_report_cell(before)}",
        control_name="the model " + BEFORE,
    )


def _experiment3(e3: dict, native: dict) -> Section:
    trained, held = e3.get("trained_on", []), e3.get("held_out", [])
    scored = e3.get("scored") or {}
    claims = [
        _introspection_claim(
            f"{prefix}after introspection training, reports on the {what} scenarios track the "
            "learned weights: r > 0, above before",
            source.get(f"{key}_after"),
            source.get(f"{key}_before"),
            paper if source is e3 else "–",
        )
        for source, prefix in ((e3, ""), (scored, f"{SCORED_NAME}: "))
        for what, key, paper in (
            ("held-out", "held_out", "0.74-0.75"),
            ("native", "native", "0.71 / 0.70 (before: 0.46 / 0.40)"),
        )
        if source is e3 or source.get(f"{key}_after")
    ]
    rows = [
        [
            "held-out instilled scenarios",
            _report_cell(e3.get("held_out_before")),
            _report_cell(e3.get("held_out_after")),
            _r((e3.get("held_out_after") or {}).get("vs_target")),
        ],
        [
            "native scenarios",
            _report_cell(e3.get("native_before")),
            _report_cell(e3.get("native_after")),
            "– (never trained: no target to learn)",
        ],
        [
            "trained scenarios (check that the training took)",
            "–",
            _report_cell(e3.get("trained_after")),
            _r((e3.get("trained_after") or {}).get("vs_target")),
        ],
    ]
    if scored:
        rows += [
            [
                f"{what}, {SCORED_NAME}",
                _report_cell(scored.get(f"{key}_before")) if key != "trained" else "–",
                _report_cell(scored.get(f"{key}_after")),
                _r((scored.get(f"{key}_after") or {}).get("vs_target")),
            ]
            for what, key in (
                ("held-out instilled scenarios", "held_out"),
                ("native scenarios", "native"),
                ("trained scenarios", "trained"),
            )
        ]
    blocks: list[Any] = [
        f"Starting from the instilled model, one model is trained to answer the introspection "
        f"question with the target weights (JSON) on {len(trained)} instilled scenarios, then "
        f"asked about the other {len(held)} and about the native scenarios. Truth: the "
        "instilled model's learned weights (for native scenarios, measured on its decisions "
        "before this training).",
        Claims(claims, reference=PAPER_COLUMN, control=BEFORE, rule="interval"),
        Table(
            ["reports on", "before (r vs learned)", "after (r vs learned)", "after (r vs target)"],
            rows,
        ),
    ]
    inst_native = native.get("instilled") or {}
    if inst_native:
        blocks.append(
            f"Native scenarios: the instilled model's decisions there have "
            f'{_invalid(inst_native)} invalid, {_share(inst_native)} "A"; '
            f"{inst_native.get('n_scenarios', 0)} scenarios yield learned weights. Against "
            "weights that were drawn but never trained, their r should be near 0: "
            f"{_r(inst_native.get('recovery'))}."
        )
    if native.get("base_vs_instilled_learned"):
        blocks.append(
            "The untrained model's native weights against the instilled model's: "
            f"{_r(native['base_vs_instilled_learned'])}."
        )
    return Section("Experiment 3: introspection training", blocks)


def _differences(results: dict) -> Section:
    return Section(
        "How this run differs from the original",
        [
            Bullets(
                [
                    f"model: `{results['model']}`, fine-tuned here "
                    f"({results['train']['instil'].get('method')}); the original fine-tuned "
                    "GPT-4o and GPT-4o-mini through OpenAI's API with its default "
                    "hyper-parameters",
                    f"{len(results['data']['instilled'])} instilled and "
                    f"{len(results['data']['native'])} native scenarios from this project's "
                    "catalogue (the original: 100 and 100 of its own), without the original's "
                    'role prefix ("Imagine you are ...")',
                    "prompts follow the original's structure in this project's words; the "
                    "model's chat template is used when it has one"
                    + (
                        ""
                        if results["data"]["chat_template"]
                        else " (this one has none: plain text)"
                    ),
                    "introspection training: one model trained on the first half of the "
                    "instilled scenarios and tested on the second half and on the native "
                    "scenarios (the original trains three: on each half, tested on the other, "
                    "and on all 100, tested on native)",
                    "recovery: L2 logistic regression (the MAP under the original's N(0, 1) "
                    "prior) in place of the brms posterior mean; on the release's files the "
                    "two agree to 0.001 in r",
                ]
            )
        ],
    )
