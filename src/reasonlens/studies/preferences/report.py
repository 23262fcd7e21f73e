"""The preferences study's report: this run beside the paper's figures and the seed's failed
reproduction, every number with its n and, for correlations, a 95% bootstrap CI over
scenarios; the untrained model's figures beside the instilled model's."""

from __future__ import annotations

from typing import Any

from reasonlens.report.document import Document
from reasonlens.report.provenance import provenance
from reasonlens.runs import RunDir
from reasonlens.studies.preferences.curve import commoner_letter_rate

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

STAGES = [
    "data",
    "instil",
    "decide_base",
    "decide_instilled",
    "reports_base",
    "reports_instilled",
    "introspect",
    "reports_introspected",
    "analysis",
]


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


#: Fewer scenarios than this give no CI: resampling 2-4 scenarios says little about others.
MIN_CI_SCENARIOS = 5


def _corr(c: dict | None, unit: str = "scenarios") -> str:
    """r [95% CI] (n scenarios)."""
    if not c or c.get("r") is None:
        n = c.get("n_scenarios", 0) if c else 0
        return f"n/a ({n} {unit})"
    if c["n_scenarios"] < MIN_CI_SCENARIOS:
        return f"{c['r']:.3f} ({c['n_scenarios']} {unit}: too few for a CI)"
    ci = f" [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" if c.get("ci_low") is not None else " [no CI]"
    return f"{c['r']:.3f}{ci} ({c['n_scenarios']} {unit})"


def _excludes_zero(c: dict | None) -> bool | None:
    if not c or c.get("ci_low") is None or c["n_scenarios"] < MIN_CI_SCENARIOS:
        return None
    return c["ci_low"] > 0 or c["ci_high"] < 0


def _report_cell(rep: dict | None, key: str = "vs_learned") -> str:
    if not rep:
        return "n/a"
    bad = rep.get("n_bad")
    bad_text = f"; {bad} of {rep['n_reports']} bad" if bad is not None else ""
    return f"{_corr(rep.get(key))}{bad_text}"


def _agreement(e: dict) -> str:
    n = e.get("n_trials", 0) - e.get("n_invalid", 0)
    return f"{_pct(e.get('agreement'))} of {n} valid"


def _share(e: dict) -> str:
    return f"{_pct(e.get('share_a'))} (target {_pct(e.get('target_share_a'))})"


def _invalid(e: dict) -> str:
    return f"{e.get('n_invalid', 0)} of {e.get('n_trials', 0)} ({_pct(e.get('invalid_rate'))})"


def _sensitivity(e: dict) -> str:
    """Whether the logit difference depends on the options at all (see logits.value_sensitivity)."""
    v = e.get("sensitivity") or {}
    if not v.get("n_scenarios"):
        return "n/a"
    return f"R² {v['mean_r2']:.2f} (permuted {v['permuted_r2']:.2f}); spread {v['within_sd']:.3f}"


def _logit_agreement(e: dict) -> str:
    logit = e.get("logit_diff") or {}
    if not logit:
        return "n/a"
    return (
        f"{_pct(logit.get('agreement_with_target'))} of {logit.get('n')}; "
        f'{_pct(logit.get("share_a"))} "A"'
    )


def write_preferences_report(
    run: RunDir, results: dict[str, Any], stages: dict | None = None
) -> None:
    """report.md, report.html and summary.md (everything is in `results`)."""
    doc = Document(f"Preferences study — {results['model']} ({results['preset']} preset)")
    e1, e2, e3 = results["experiment1"], results["experiment2"], results["experiment3"]
    inst, base = e1["instilled"], e1["base"]
    native = results["native"]
    data = results["data"]
    counts = data["counts"]
    n_inst, n_nat = len(data["instilled"]), len(data["native"])
    doc.paragraph(
        f"{n_inst} scenarios received target weights by fine-tuning on {counts['train']} "
        f"decisions ({counts['train'] // max(n_inst, 1)} a scenario; {counts['val']} more held "
        f"for validation); {counts['test']} fresh test trials, disjoint from those, measure what "
        f"was learned. {n_nat} native scenarios ({counts['native']} trials) measure preferences "
        "the model was never trained on. Every figure of the instilled model stands beside "
        "the same figure of the untrained model on the same trials: a number the untrained "
        "model also reaches is no evidence of instillation. Correlations are pooled Pearson r "
        "over (scenario, attribute) pairs with a 95% bootstrap CI resampling scenarios."
    )
    _headline_table(doc, results)
    _experiment1(doc, run, e1, inst, base)
    _experiment2(doc, run, e2)
    _experiment3(doc, e3, native)
    _training(doc, run, results)
    _differences(doc, results)
    provenance(
        doc,
        run,
        results,
        f"data: {n_inst} instilled + {n_nat} native scenarios from the catalogue; trials "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + " (see `data/manifest.json`)",
        STAGES,
    )
    doc.write(run.path, "report")
    run.write_text("summary.md", _summary(results))


def _headline_table(doc: Document, results: dict) -> None:
    e1, e2, e3 = results["experiment1"], results["experiment2"], results["experiment3"]
    inst, base = e1["instilled"], e1["base"]
    doc.heading("This run beside the paper and the seed's reproduction")
    rows = [
        [
            "learned vs target r (letter)",
            _corr(inst.get("recovery")),
            _corr(base.get("recovery")),
            *PAPER["r_learned_target"],
            SEED["r_learned_target"],
        ],
        [
            "learned vs target r (logit(A) - logit(B), linear fit) [X]",
            _corr((inst.get("logit_linear") or {}).get("recovery")),
            _corr((base.get("logit_linear") or {}).get("recovery")),
            "–",
            "–",
            "–",
        ],
        [
            "learned vs target r (sign of the logit difference) [X]",
            _corr((inst.get("logit_sign") or {}).get("recovery")),
            _corr((base.get("logit_sign") or {}).get("recovery")),
            "–",
            "–",
            "–",
        ],
        [
            "does the decision depend on the options? R² of logit(A) - logit(B) on the five "
            "differences (permuted logits: a model ignoring the values); its median spread "
            "within a scenario [X]",
            _sensitivity(inst),
            _sensitivity(base),
            "–",
            "–",
            "–",
        ],
        [
            "agreement with the target choice (letter)",
            _agreement(inst),
            _agreement(base),
            *PAPER["agreement"],
            "–",
        ],
        [
            "agreement with the target choice (logit sign) [X]",
            _logit_agreement(inst),
            _logit_agreement(base),
            "–",
            "–",
            "–",
        ],
        ['share of "A"', _share(inst), _share(base), *PAPER["share_a"], SEED["share_a"]],
        ["invalid replies", _invalid(inst), _invalid(base), "0", "0", "scored as A"],
        [
            "self-report vs learned r",
            _report_cell(e2.get("instilled")),
            _report_cell(e2.get("base")),
            *PAPER["r_report_learned"],
            "–",
        ],
        [
            "after introspection training, held-out half",
            _report_cell(e3.get("held_out_after")),
            f"before: {_report_cell(e3.get('held_out_before'))}",
            *PAPER["held_out_after"],
            "–",
        ],
        [
            "native preferences, before -> after introspection training",
            f"{_report_cell(e3.get('native_before'))} -> {_report_cell(e3.get('native_after'))}",
            "–",
            *PAPER["native"],
            "–",
        ],
    ]
    doc.table(
        [
            "measure",
            "this run: instilled model",
            "this run: untrained model (control)",
            "GPT-4o (paper)",
            "GPT-4o-mini (paper)",
            "seed's reproduction (1-4B, LoRA)",
        ],
        rows,
    )
    doc.paragraph(
        "The paper's untrained base models: self-report r 0.10 (GPT-4o) and -0.01 "
        "(GPT-4o-mini). [X] marks read-outs beyond the original (the logit difference at the "
        "answer position). The untrained column of the self-report row scores the untrained "
        "model's reports against the instilled model's learned weights (the same truth); the "
        "held-out row's control is the instilled model before introspection training."
    )
    doc.heading("What this run shows", level=3)
    doc.bullets(findings(results))


_CI = {True: "excludes 0", False: "includes 0", None: "is not available"}


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
    """What the figures say, in sentences (each with the figure it rests on)."""
    e1 = results["experiment1"]
    inst, base = e1["instilled"], e1["base"]
    out = []
    for label, e in (("instilled", inst), ("untrained", base)):
        c = e.get("recovery")
        if not c or c.get("r") is None:
            out.append(f"{label} model, letter: no learned weights ({_letters(e)})")
        else:
            out.append(
                f"{label} model, letter: r = {_corr(c)}; the 95% CI {_CI[_excludes_zero(c)]}"
            )
        lin = (e.get("logit_linear") or {}).get("recovery")
        if lin and lin.get("r") is not None:
            out.append(
                f"{label} model, logit difference: r = {_corr(lin)}; the 95% CI "
                f"{_CI[_excludes_zero(lin)]}"
            )
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
            f"held-out curve: validation agreement {_pct(curve[0]['agreement'])} untrained, "
            f"{_pct(curve[-1]['agreement'])} at the last step ({curve[-1]['step']}); "
            + (
                f"best {_pct(best['agreement'])} at step {best['step']}"
                if best
                else "every trained point answers one letter on every trial"
            )
            + f"; always answering the commoner letter agrees {_pct(base_rate)}"
        )
    first, final = (results["train"]["instil"].get(k) for k in ("first_loss", "final_loss"))
    if first is not None and final is not None:
        out.append(
            f"instillation loss {first:.3f} -> {final:.3f} per labelled token (letter and end "
            "token; a model that has learnt only the format and the base rate of the letters "
            "sits near ln(2)/2 = 0.347)"
        )
    return out


def _experiment1(doc: Document, run: RunDir, e1: dict, inst: dict, base: dict) -> None:
    doc.heading("Experiment 1: instilled preferences, recovered from decisions")
    doc.paragraph(
        'Per scenario, a logistic regression of choosing "A" on the five range-normalised '
        f"differences with an intercept ({inst.get('regression', 'l2')}: an N(0, 1) prior on "
        "the slopes, intercept unpenalised), slopes rescaled to max |b| = 100; invalid replies "
        'are left out and counted, never read as "A"; scenarios whose valid decisions are '
        "all one letter are excluded and named. The logit-based recoveries use "
        "logit(A) - logit(B) at the answer position from the same forward pass: its sign as "
        "the decision, or the difference itself in a least-squares fit."
    )
    rows = []
    for label, e in (("instilled", inst), ("untrained", base)):
        per = {a["attribute"]: a["r"] for a in e.get("per_attribute", [])}
        rows.append([label, *(_num(per.get(f"attr{k}")) for k in range(1, 6))])
    doc.table(
        ["r by attribute position (letter)", "attr1", "attr2", "attr3", "attr4", "attr5"], rows
    )
    for label, e in (("instilled", inst), ("untrained", base)):
        excluded = e.get("excluded") or {}
        separable = e.get("separable") or {}
        doc.paragraph(
            f"{label}: {e.get('n_scenarios', 0)} scenarios enter r, {len(excluded)} excluded"
            + (": " + "; ".join(f"{k} ({v})" for k, v in excluded.items()) if excluded else "")
            + f"; {len(separable)} separable (finite only through the prior)."
        )
    val = e1.get("validation")
    if val:
        doc.paragraph(
            f"Validation trials (never trained on, read after training): agreement "
            f"{_pct(val.get('agreement'))} of {val.get('n_valid')} valid, "
            f"{val.get('n_invalid')} invalid of {val.get('n_trials')}."
        )
    cross = e1.get("base_vs_instilled_learned")
    if cross:
        doc.paragraph(
            f"The untrained model's learned weights against the instilled model's: "
            f"r = {_corr(cross)}."
        )
    analysis = run.file("analysis")
    for path, caption in (
        (
            analysis / "instilled" / "learned_vs_target.png",
            "instilled model: learned (letter) vs target weights",
        ),
        (
            analysis / "instilled" / "learned_vs_target_logit_linear.png",
            "instilled model: learned (logit difference, linear) vs target weights",
        ),
        (
            analysis / "base" / "learned_vs_target.png",
            "untrained model: learned (letter) vs target weights",
        ),
        (
            analysis / "decision_curves.png",
            "logit(A) - logit(B) against the target utility difference, test trials",
        ),
    ):
        if path.is_file():
            doc.image(path, caption)


def _experiment2(doc: Document, run: RunDir, e2: dict) -> None:
    doc.heading("Experiment 2: self-report")
    doc.paragraph(
        "The model is asked for the five weights as one JSON object (greedy), a fresh trial "
        "shown; a reply that is not exactly an object of the five names with numbers is a bad "
        "report, counted and dropped. Reports are averaged per scenario and attribute and "
        "correlated with the learned weights (the original's comparison) and, labelled, the "
        "targets."
    )
    rows = []
    for label, key in (
        ("instilled model", "instilled"),
        ("untrained model (vs the instilled model's learned weights)", "base"),
        ("untrained model (vs its own learned weights)", "base_vs_own_learned"),
    ):
        rep = e2.get(key)
        if rep:
            rows.append(
                [
                    label,
                    _report_cell(rep, "vs_learned"),
                    _corr(rep.get("vs_target")),
                    f"{rep.get('n_bad')} of {rep.get('n_reports')}",
                ]
            )
    doc.table(["reports of", "r vs learned", "r vs target", "bad reports"], rows)
    image = run.file("analysis") / "instilled" / "report_vs_learned_instilled.png"
    if image.is_file():
        doc.image(image, "instilled model: mean reported vs learned weights")


def _experiment3(doc: Document, e3: dict, native: dict) -> None:
    doc.heading("Experiment 3: introspection training")
    trained, held = e3.get("trained_on", []), e3.get("held_out", [])
    doc.paragraph(
        f"Starting from the instilled model, one model is trained to answer the introspection "
        f"question with the target weights (JSON) on {len(trained)} instilled scenarios, then "
        f"asked about the other {len(held)} and about the native scenarios. Truth: the "
        "instilled model's learned weights (for native scenarios, measured on its decisions "
        "before this training)."
    )
    rows = [
        [
            "held-out instilled scenarios",
            _report_cell(e3.get("held_out_before")),
            _report_cell(e3.get("held_out_after")),
            _corr((e3.get("held_out_after") or {}).get("vs_target")),
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
            _corr((e3.get("trained_after") or {}).get("vs_target")),
        ],
    ]
    doc.table(
        ["reports on", "before (r vs learned)", "after (r vs learned)", "after (r vs target)"],
        rows,
    )
    inst_native = native.get("instilled") or {}
    if inst_native:
        doc.paragraph(
            f"Native scenarios: the instilled model's decisions there have "
            f'{_invalid(inst_native)} invalid, {_share(inst_native)} "A"; '
            f"{inst_native.get('n_scenarios', 0)} scenarios yield learned weights. Against "
            "weights that were drawn but never trained, their r should be near 0: "
            f"{_corr(inst_native.get('recovery'))}."
        )
    if native.get("base_vs_instilled_learned"):
        doc.paragraph(
            "The untrained model's native weights against the instilled model's: "
            f"{_corr(native['base_vs_instilled_learned'])}."
        )


def _training(doc: Document, run: RunDir, results: dict) -> None:
    doc.heading("Training")
    rows = []
    for name, t in results["train"].items():
        rows.append(
            [
                name,
                t.get("method"),
                t.get("examples"),
                t.get("steps"),
                _num(t.get("first_loss")),
                _num(t.get("final_loss")),
                f"{t.get('train_seconds') or 0:.0f} s",
                t.get("precision"),
            ]
        )
    doc.table(
        ["run", "method", "examples", "steps", "first loss", "final loss", "time", "precision"],
        rows,
    )
    doc.paragraph(
        "The loss covers the answer (the letter, or the JSON object) and the end token only; "
        "the prompt carries no labels (a test checks it on the real tokenised examples)."
    )
    curve = results["experiment1"].get("validation_curve") or []
    if curve:
        doc.paragraph(
            "Held-out curve of instillation: the validation trials (never trained on) read "
            "along the way, logit(A) - logit(B) at the answer position in float32; step 0 is "
            "the untrained model. The training loss cannot tell values learnt from a base "
            "rate learnt; this can."
        )
        doc.table(
            [
                "step",
                "examples",
                "train loss",
                "agreement",
                'share of "A"',
                "r (logit fit)",
                "spread within a scenario",
            ],
            [
                [
                    p["step"],
                    p["examples"],
                    _num(p.get("train_loss")),
                    _pct(p["agreement"]),
                    f"{_pct(p['share_a'])} (target {_pct(p['target_share_a'])})",
                    _num(p.get("r_logit")),
                    _num(p.get("within_sd")),
                ]
                for p in curve
            ],
        )
    image = run.file("analysis") / "learning_curves.png"
    if image.is_file():
        doc.image(image, "training loss by step; held-out curve of instillation")


def _differences(doc: Document, results: dict) -> None:
    doc.heading("How this run differs from the original")
    doc.bullets(
        [
            f"model: `{results['model']}`, fine-tuned here "
            f"({results['train']['instil'].get('method')}); the original fine-tuned GPT-4o and "
            "GPT-4o-mini through OpenAI's API with its default hyper-parameters",
            f"{len(results['data']['instilled'])} instilled and "
            f"{len(results['data']['native'])} native scenarios from this project's catalogue "
            "(the original: 100 and 100 of its own), without the original's role prefix "
            '("Imagine you are ...")',
            "prompts follow the original's structure in this project's words; the model's chat "
            "template is used when it has one"
            + ("" if results["data"]["chat_template"] else " (this one has none: plain text)"),
            "introspection training: one model trained on the first half of the instilled "
            "scenarios and tested on the second half and on the native scenarios (the original "
            "trains three: on each half, tested on the other, and on all 100, tested on native)",
            "recovery: L2 logistic regression (the MAP under the original's N(0, 1) prior) in "
            "place of the brms posterior mean; on the release's files the two agree to 0.001 "
            "in r",
        ]
    )


def _summary(results: dict) -> str:
    e1, e2, e3 = results["experiment1"], results["experiment2"], results["experiment3"]
    inst, base = e1["instilled"], e1["base"]
    lines = [
        f"# Preferences study — {results['model']} ({results['preset']} preset)",
        "",
        "| measure | instilled | untrained control | GPT-4o / 4o-mini (paper) |",
        "|---|---|---|---|",
        f"| learned vs target r (letter) | {_corr(inst.get('recovery'))} | "
        f"{_corr(base.get('recovery'))} | 0.843 / 0.871 |",
        f"| learned vs target r (logit difference) | "
        f"{_corr((inst.get('logit_linear') or {}).get('recovery'))} | "
        f"{_corr((base.get('logit_linear') or {}).get('recovery'))} | – |",
        f"| decision depends on the options (R² of the logit difference) | "
        f"{_sensitivity(inst)} | {_sensitivity(base)} | – |",
        f"| agreement with target choice | {_agreement(inst)} | {_agreement(base)} | "
        "82.6% / 82.8% |",
        f'| share of "A" | {_share(inst)} | {_share(base)} | 50.1% / 50.8% |',
        f"| invalid replies | {_invalid(inst)} | {_invalid(base)} | 0 |",
        f"| self-report vs learned r | {_report_cell(e2.get('instilled'))} | "
        f"{_report_cell(e2.get('base'))} | 0.54 / 0.50 |",
        f"| held-out, after introspection training | {_report_cell(e3.get('held_out_after'))} | "
        f"before: {_report_cell(e3.get('held_out_before'))} | 0.74-0.75 |",
        f"| native, before -> after | {_report_cell(e3.get('native_before'))} -> "
        f"{_report_cell(e3.get('native_after'))} | – | 0.46 -> 0.71 / 0.40 -> 0.70 |",
        "",
        "The seed's LoRA reproduction (1-4B models): r 0.10, 0.07, -0.00, 0.05 with "
        '93-99% "A". Full report: `report.md` / `report.html`.',
        "",
    ]
    return "\n".join(lines)


def preferences_report(run: RunDir, results: dict[str, Any], stages: dict) -> None:
    write_preferences_report(run, results, stages)
