"""The backtracking study's results.json and report, declared to the report builder.

The headline is **anticipation at onsets**: lag by lag (positive lags), whether the
activations at t predict that a span begins in (t, t+lag], beside every control that sees
what the probe sees (the prefix's surface text, a random-weights model and, on generated
chains, the untrained model, all on the same tokens) and a permutation null; one claim per
lag, judged by :func:`lag_verdict` with the one verdict vocabulary's general rule
(:func:`reasonlens.report.verdicts.beyond_controls`) and labelled with the study's words
(`VOCABULARY`, which the report prints). The seed's measure (every token t+lag a target,
continuation included) stays beside it, for comparison with the seed's table, with no verdict.
"""

from __future__ import annotations

from typing import Any

from reasonlens.report.builder import Bullets, Claim, Claims, Figure, Report, Section, Table
from reasonlens.report.document import interval, num, pct
from reasonlens.report.verdicts import (
    Estimate,
    Floor,
    Verdict,
    Versus,
    beyond_controls,
    not_measurable,
)
from reasonlens.runs import RunDir
from reasonlens.studies.backtracking.analysis import (
    FIT_TITLES,
    SEED_AUC,
    SEED_CHANCE_F1,
    SEED_F1_LAG0,
)
from reasonlens.studies.backtracking.presets import BacktrackingPreset
from reasonlens.studies.base import Settings
from reasonlens.studies.kit import train_summary

BEYOND = "beyond the text"
UNTRAINED_TOO = "beyond the text, untrained model too"
LEXICAL = "lexical"
NO_SIGNAL = "no signal"
CHANCE = 0.5
#: The controls a probe must beat pairwise, in the order the verdict checks them, and the
#: study's word for a lag one of them explains as well.
CONTROLS = ("prefix", "bag", "embed", "random", "untrained")
CONTROL_LABELS = {
    "prefix": LEXICAL,
    "bag": LEXICAL,
    "embed": LEXICAL,
    "random": LEXICAL,
    "untrained": UNTRAINED_TOO,
}
#: The seed measure's table: the controls fitted on all targets too (one shuffle first).
SEED_CONTROLS = ("shuffled", "prefix", "bag", "embed", "random", "untrained")
VOCABULARY = (
    "The study's words, on the one vocabulary: *beyond the text* = agrees (above chance and the "
    "permutation null's upper percentile, and above every control by the minimum effect); "
    "*lexical* = holds for the control too, the control being a lexical baseline or the "
    "random-weights model (the surface text, read linearly or through the same architecture "
    "with random weights, tells as much), unclear where that control's own interval does not "
    "clear the floors either; *beyond the text, untrained model too* = holds for the control "
    "too, the control being the untrained model (nothing fine-tuning taught); *no signal* = "
    "differs where the interval lies below chance or the null's upper percentile plus the "
    "minimum effect, unclear where it includes it; *not measurable*: a control (or the null) "
    "reaches the ceiling, so the labels are predictable without the activations, or no onset "
    "at that lag in the test chains."
)


def lag_verdict(row: dict[str, Any]) -> Verdict:
    """The verdict on one lag's claim (a row of :func:`lag_verdicts`): the probe's onset AUC
    against chance and the permutation null's upper percentile (floors), then against every
    control pairwise, each by the row's minimum effect, not measurable at the ceiling; labelled
    with the study's word (`VOCABULARY`)."""
    if not row["n_positive"]:
        return not_measurable("no onset at this lag in the test chains")
    rule = row["rule"]
    floors = [Floor("chance", rule["chance"], NO_SIGNAL)]
    null = row.get("null")
    if null:
        name = f"the permutation null's {null['quantile']:.0%} percentile"
        floors.append(Floor(name, null["upper"], NO_SIGNAL))
    controls = [
        Versus(
            FIT_TITLES[n],
            Estimate.of(row["controls"][n]["auc"]),
            Estimate(_margin(row, n), *row["controls"][n]["diff"]),
            CONTROL_LABELS[n],
        )
        for n in CONTROLS
        if n in row["controls"]
    ]
    return beyond_controls(
        Estimate.of(row["auc"]), floors, controls, rule["min_effect"], rule["ceiling"], BEYOND
    )


def _margin(row: dict, name: str) -> float | None:
    """The probe's AUC minus the control's (None where either is missing)."""
    control = row["controls"][name]["auc"]["value"]
    mine = row["auc"]["value"]
    return None if control is None or mine is None else mine - control


def lag_verdicts(
    analysis: dict[str, Any], min_effect: float = 0.02, ceiling: float = 0.95
) -> list[dict[str, Any]]:
    """One row per onset lag: the probe's onset AUC and F1 with intervals, the rows kept and
    left out, the null, each control's AUC and paired difference, the all-target AUC beside
    it, the rule, and the verdict's label (:func:`lag_verdict`)."""
    onset = analysis.get("onset")
    if not onset:
        return []
    best = onset["best_per_lag"]
    comp = onset["comparisons"]
    counts = {c["lag"]: c for c in onset.get("counts", [])}
    null = {r["lag"]: r for r in onset["null"]["per_lag"]} if "null" in onset else {}
    versus_null = {r["lag"]: r for r in onset.get("null_comparison", [])}
    every = {r["lag"]: r for r in analysis["best_per_lag"]["probes"]["auc"]}
    rows = []
    for k, lag in enumerate(onset["lags"]):
        auc = best["probes"]["auc"][k]
        cell = _cell(onset["fits"]["probes"], auc["layer"], lag)
        row: dict[str, Any] = {
            "lag": lag,
            "layer": auc["layer"],
            "auc": _est(auc),
            "f1": _est(best["probes"]["f1"][k]),
            "chance_f1": cell["chance_f1"]["value"] if cell else None,
            "n_positive": cell["n_positive"] if cell else 0,
            "counts": counts.get(lag),
            "controls": {
                name: {
                    "auc": _est(best[name]["auc"][k]),
                    "layer": best[name]["auc"][k]["layer"],
                    "diff": [comp[name][k]["low"], comp[name][k]["high"]],
                    "beaten": _beats(comp[name][k]["low"], min_effect),
                }
                for name in CONTROLS
                if name in comp
            },
            "all_targets_auc": _est(every[lag]) if lag in every else None,
            "rule": {"chance": CHANCE, "min_effect": min_effect, "ceiling": ceiling},
        }
        if lag in null:
            n, v = null[lag], versus_null.get(lag, {})
            row["null"] = {
                "permutations": onset["null"]["permutations"],
                "quantile": onset["null"]["quantile"],
                "median": n["median"],
                "upper": n["upper"],
                "layer": n["layer"],
                "diff": [v.get("low"), v.get("high")],
                "p_value": v.get("p_value"),
                "beaten": _beats(v.get("low"), min_effect),
            }
        verdict = lag_verdict(row)
        row["verdict"] = verdict.label or verdict.word
        row["verdict_word"] = verdict.word
        rows.append(row)
    return rows


def _beats(low: float | None, min_effect: float) -> bool:
    return low is not None and low > min_effect


def seed_measure(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed's measure (every token t+lag a target), lag by lag: the probe's AUC and F1
    with intervals, each control's AUC at its own validation-chosen layer, the seed's AUC.
    No verdict: at a positive lag most of its positives are the span t is already in."""
    best = analysis["best_per_lag"]
    rows = []
    for k, lag in enumerate(analysis["lags"]):
        auc = best["probes"]["auc"][k]
        cell = _cell(analysis["fits"]["probes"], auc["layer"], lag)
        rows.append(
            {
                "lag": lag,
                "layer": auc["layer"],
                "auc": _est(auc),
                "f1": _est(best["probes"]["f1"][k]),
                "chance_f1": cell["chance_f1"]["value"] if cell else None,
                "n_positive": cell["n_positive"] if cell else 0,
                "controls": {
                    name: {
                        "auc": _est(best[name]["auc"][k]),
                        "layer": best[name]["auc"][k]["layer"],
                    }
                    for name in SEED_CONTROLS
                    if name in best
                },
                "seed_auc": SEED_AUC.get(lag),
            }
        )
    return rows


def furthest_run(rows: list[dict[str, Any]], labels: tuple[str, ...] = (BEYOND,)) -> int | None:
    """The furthest lag of the contiguous run of positive lags, from the first, whose verdict
    is one of ``labels`` (None when the first positive lag's is not): a lag beyond a gap does
    not extend it."""
    furthest = None
    for row in sorted((r for r in rows if r["lag"] > 0), key=lambda r: r["lag"]):
        if row["verdict"] not in labels:
            break
        furthest = row["lag"]
    return furthest


def _cell(fit: dict, layer, lag: int) -> dict | None:
    for cell in fit["test"]["cells"]:
        if cell["layer"] == layer and cell["lag"] == lag:
            return cell
    return None


def _est(entry: dict) -> dict[str, float | None]:
    return {"value": entry["value"], "low": entry["low"], "high": entry["high"]}


def study_results(p: BacktrackingPreset, settings: Settings, stages: dict[str, Any]) -> dict:
    analysis = stages["analysis"]
    rows = lag_verdicts(analysis, p.min_effect, p.ceiling)
    onset = analysis.get("onset", {})
    out: dict[str, Any] = {
        "source": "file" if "train" not in stages else "generated",
        "chains": stages["chains"]["summary"],
        "layers": analysis["layers"],
        "split": analysis["split"],
        "rule": {
            "chance": CHANCE,
            "min_effect": p.min_effect,
            "ceiling": p.ceiling,
            "null_permutations": onset.get("null", {}).get("permutations"),
            "null_quantile": onset.get("null", {}).get("quantile"),
        },
        "lags": rows,
        # the headline: the contiguous run of onset lags beyond every control
        "furthest_onset_lag": furthest_run(rows),
        # ... not asking the untrained model to be beaten (generated chains)
        "furthest_onset_lag_beyond_text": furthest_run(rows, (BEYOND, UNTRAINED_TOO)),
        "n_lags_tested": len(rows),
        "seed_measure": seed_measure(analysis),
        "sentence_start": analysis["sentence_start"],
        "probe_seconds": {**analysis["seconds"], "onset": onset.get("seconds", {})},
    }
    if "train" in stages:
        out["train"] = train_summary(stages["train"])
        out["gold_traces"] = stages["data"]["manifest"]["gold_train"]
    return out


# the report's declaration --------------------------------------------------------------------


def backtracking_report(run: RunDir, results: dict[str, Any], stages: dict) -> Report:
    """The report's declaration (everything is in `results`; the builder adds the verdicts at
    a glance, the training section and provenance)."""
    generated = results["source"] == "generated"
    chains = results["chains"]
    verdicts = [lag_verdict(r) for r in results["lags"]]
    onset_table = _onset_table(results, verdicts)
    headline = _headline(results, verdicts)
    return Report(
        title=f"Backtracking study — {results['model']} ({results['preset']} preset)",
        intro=[_intro(results, generated)],
        sections=[
            _chains_section(results, generated),
            Section(
                "Anticipation at onsets, lag by lag, beside every control",
                [
                    onset_table,
                    _onset_note(results),
                    _counts_table(results),
                    Figure(
                        "analysis/onset_auc_vs_lag.png",
                        "test AUC at onsets against lag: the probe and every control, with 95% "
                        "intervals, and the permutation null",
                    ),
                ],
            ),
            Section("Lag probes", [_claims(results, verdicts), Bullets(headline)]),
            _seed_section(results),
            Section(
                "Every layer and lag",
                [
                    "Tables (value [low, high] per cell, test chains): "
                    "`analysis/onset_auc_by_lag_layer.csv` (onsets), and the seed's "
                    "`analysis/auc_by_lag_layer.csv` and `analysis/f1_by_lag_layer.csv` (all "
                    "targets).",
                    Figure("analysis/onset_auc_heatmap.png", "test AUC at onsets by layer and lag"),
                    *(
                        Figure(
                            f"analysis/{metric}_heatmap.png",
                            f"test {metric.upper()} by layer and lag, all targets (the seed's "
                            "measure)",
                        )
                        for metric in ("auc", "f1")
                    ),
                ],
            ),
            _sentence_section(results),
            _differences(results, generated),
        ],
        data=f"chains: {chains['used']} labelled chains ({chains.get('chain_tokens')} chain "
        f"tokens, {pct(chains.get('positive_rate'))} positive); split by chain: "
        + ", ".join(f"{k} {v}" for k, v in results["split"].items()),
        summary=[_chains_line(results, generated), onset_table, _sentence(headline)],
        control_name="strongest control (AUC)",
        notes=[_vocabulary(results)],
    )


def _vocabulary(results: dict) -> str:
    rule = results["rule"]
    rows = results["lags"]
    controls = [n for n in CONTROLS if rows and n in rows[0]["controls"]]
    return (
        "Each onset lag's claim is judged at the layer chosen on validation chains: its test "
        f"AUC's 95% interval must lie above chance ({rule['chance']:g}) and the permutation "
        f"null's {_pct0(rule['null_quantile'])} percentile ({rule['null_permutations']} "
        f"shuffles of the labels among chains) by at least {rule['min_effect']:g}, and its "
        "paired-bootstrap difference from every control ("
        + ", ".join(FIT_TITLES[n] for n in controls)
        + f") must lie above {rule['min_effect']:g}; a lag where a control or the null reaches "
        f"AUC {rule['ceiling']:g} is not measurable. The figure after each verdict is the one "
        "that decided it. " + VOCABULARY
    )


def _pct0(q: float | None) -> str:
    return "upper" if q is None else f"{q:.0%}"


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def _claims(results: dict, verdicts: list[Verdict]) -> Claims:
    claims = []
    for r, verdict in zip(results["lags"], verdicts, strict=True):
        aucs = {n: c["auc"]["value"] for n, c in r["controls"].items()}
        strongest = max(aucs, key=lambda n: -1.0 if aucs[n] is None else aucs[n])
        claims.append(
            Claim(
                f"activations at t anticipate a span beginning in (t, t{r['lag']:+d}] beyond "
                "every control",
                interval(r["auc"]),
                verdict,
                control=f"{num(aucs[strongest])}, {FIT_TITLES[strongest]}",
                reference=interval(r["all_targets_auc"]),
            )
        )
    return Claims(
        claims,
        reference="AUC, all targets (the seed's measure)",
        control="strongest control (AUC)",
        rule="controls",
    )


def _headline(results: dict, verdicts: list[Verdict]) -> list[str]:
    """The furthest lag of the contiguous run, and the whole verdict row beside it."""
    far = results["furthest_onset_lag"]
    rows = results["lags"]
    if not rows:
        return ["no positive lag was probed: onset anticipation was not measured"]
    lines = [
        "furthest lag of the contiguous run of onset lags, from the first, at which the "
        "activations anticipate a backtrack beyond every control: "
        + ("none" if far is None else f"+{far} tokens"),
        "verdicts by lag: " + ", ".join(f"{r['lag']:+d} {r['verdict']}" for r in rows),
    ]
    if any("untrained" in r["controls"] for r in rows):
        text = results["furthest_onset_lag_beyond_text"]
        lines.append(
            "not asking to beat the untrained model (beyond the text only): "
            + ("none" if text is None else f"+{text} tokens")
        )
    return lines


def _onset_table(results: dict, verdicts: list[Verdict]) -> Table:
    rows = results["lags"]
    names = [n for n in CONTROLS if rows and n in rows[0]["controls"]]
    body = []
    for r, verdict in zip(rows, verdicts, strict=True):
        said = f"{verdict.label} ({verdict.word})" if verdict.label else verdict.word
        null = r.get("null") or {}
        body.append(
            [
                f"{r['lag']:+d}",
                r["layer"],
                interval(r["auc"]),
                f"{num(null.get('median'))} / {num(null.get('upper'))}",
                *(num(r["controls"][n]["auc"]["value"]) for n in names),
                interval(r["all_targets_auc"]),
                said,
            ]
        )
    q = _pct0(results["rule"]["null_quantile"])
    return Table(
        ["lag", "layer (val)", "AUC at onsets [95% CI]", f"null: median / {q}"]
        + [f"AUC: {FIT_TITLES[n]}" for n in names]
        + ["all targets (seed's measure)", "verdict"],
        body,
    )


def _onset_note(results: dict) -> str:
    return (
        "At lag +k a positive is a token t+k inside a backtracking span that begins in "
        "(t, t+k]; rows where t is already inside a span are left out (their positives would "
        "be the same span going on, readable from the present). Each control's AUC is at its "
        "own validation-chosen layer; the null is the probe refitted on shuffles of the labels "
        "among chains at the probe's layer. The last-but-one column is the same probe measured "
        "the seed's way (every token t+k a target, continuation included), for comparison. "
        "The verdict column gives the study's word and, in brackets, the one vocabulary's."
    )


def _counts_table(results: dict) -> Table:
    rows = []
    for r in results["lags"]:
        c = r.get("counts") or {}
        rows.append(
            [
                f"{r['lag']:+d}",
                c.get("onset_rows", "–"),
                c.get("onset_positives", "–"),
                c.get("excluded", "–"),
                f"{c.get('continuation', '–')} of {c.get('positives', '–')}"
                + (f" ({pct(c['continuation'] / c['positives'])})" if c.get("positives") else ""),
            ]
        )
    return Table(
        [
            "lag",
            "rows kept (test chains)",
            "onset positives",
            "rows left out (t inside a span)",
            "all-target positives that are continuation",
        ],
        rows,
    )


def _seed_section(results: dict) -> Section:
    rows = results["seed_measure"]
    names = [n for n in SEED_CONTROLS if rows and n in rows[0]["controls"]]
    body = [
        [
            f"{r['lag']:+d}",
            r["layer"],
            interval(r["auc"]),
            interval(r["f1"]),
            num(r["chance_f1"]),
            *(num(r["controls"][n]["auc"]["value"]) for n in names),
            num(r["seed_auc"]),
        ]
        for r in rows
    ]
    return Section(
        "The seed's measure: all targets, lag by lag",
        [
            Table(
                ["lag", "layer (val)", "AUC [95% CI]", "F1 [95% CI]", "chance F1"]
                + [f"AUC: {FIT_TITLES[n]}" for n in names]
                + ["seed AUC"],
                body,
            ),
            "Every token t+lag is a target here, as in the seed: at a positive lag most "
            "positives are tokens of a span t is already in (the counts above), so this grid "
            "measures span membership as much as anticipation, and carries no verdict. The "
            f"seed (Llama-3.1-8B, 1,000 chains labelled by an LLM, best layer 12): F1 "
            f"{SEED_F1_LAG0} at lag 0 against a chance F1 of about {SEED_CHANCE_F1}; it had no "
            "control. The one shuffle of the labels is one draw of the null, shown for "
            "comparison only; at lags of 0 and below the prefix baseline reads the target "
            "itself (its span features come from the labels up to t).",
            *(
                Figure(
                    f"analysis/{metric}_vs_lag.png",
                    f"test {metric.upper()} against lag, all targets: the probe and every "
                    "control, with 95% intervals",
                )
                for metric in ("auc", "f1")
            ),
        ],
    )


def _intro(results: dict, generated: bool) -> str:
    what = (
        "The model was fine-tuned on maze-search traces written as thinking text, then wrote "
        "a fresh chain for each of a set of new mazes (sampled at temperature 0.7); the checker "
        "replayed every chain against its maze and labelled, token by token, where the model "
        "itself backtracked. "
        if generated
        else f"The model read the chains of `{results['chains']['source']}` as they are "
        f"(label `{results['chains']['target']}`, prompt template "
        f"`{results['chains'].get('template')}`). "
    )
    return (
        what + "For every (layer, lag) a linear probe predicts the label lag tokens after the "
        "activation it reads (class-weighted BCE, L2, early stopping on validation F1; chains "
        "split into train, validation and test, never tokens). The headline measure is "
        "anticipation at onsets: at lag +k, does the activation at t predict that a "
        "backtracking span begins in (t, t+k]? (Rows already inside a span are left out; the "
        "seed's measure, which counts the span going on as a positive too, stays beside it.) "
        "Each lag's layer is chosen on the validation chains; every figure below is on the "
        "test chains, with a 95% bootstrap interval over chains, and every control is scored "
        "on the same chains and resamples."
    )


def _chains_line(results: dict, generated: bool) -> str:
    c = results["chains"]
    sampled = (
        f"; of {c['chains']} sampled, {c['unlabelable']} unlabelable, "
        f"{num(c['backtracks_per_chain'], 2)} backtracks a chain, {pct(c['share_needed'])} needed"
        if generated
        else ""
    )
    return f"{c['used']} labelled chains ({pct(c.get('positive_rate'))} positive tokens){sampled}."


def _chains_section(results: dict, generated: bool) -> Section:
    c = results["chains"]
    if not generated:
        return Section(
            "Chains",
            [
                Table(
                    ["measure", "this file"],
                    [
                        ["chains", c["chains"]],
                        [f"`{c['target']}` spans", c["spans"]],
                        ["labels in the file", ", ".join(c["labels_seen"])],
                        [
                            "positive tokens",
                            f"{c['positive_tokens']} of {c['chain_tokens']} "
                            f"({pct(c['positive_rate'])})",
                        ],
                    ],
                )
            ],
        )
    gold = results["gold_traces"]
    blocks: list[Any] = [
        Table(
            ["measure", "this run"],
            [
                ["chains sampled", c["chains"]],
                ["labelable by the checker", f"{c['labelable']} ({pct(c['share_labelable'])})"],
                ["unlabelable", c["unlabelable"]],
                ["labelable but shorter than the largest lag", c["too_short"]],
                ["used for probes", c["used"]],
                ["chains that backtrack", c["chains_that_backtrack"]],
                ["backtracks per labelable chain", num(c["backtracks_per_chain"], 2)],
                [
                    "backtracks that were needed (a dead end in fact)",
                    f"{c['needed']} of {c['backtracks']} ({pct(c['share_needed'])})",
                ],
                ["solved (the final path is right)", c["solved"]],
                ["without errors", c["error_free"]],
                [
                    "positive tokens",
                    f"{c['positive_tokens']} of {c['chain_tokens']} "
                    f"({pct(c['positive_rate'])}; the seed: about 2.2%)",
                ],
            ],
        ),
        f"The model was fine-tuned on {gold['chains']} gold traces "
        f"({num(gold['backtracks_per_chain'], 2)} backtracks each, {pct(gold['share_needed'])} "
        "of them needed; the training run: Training, below).",
    ]
    reasons = c.get("unlabelable_reasons") or {}
    if reasons:
        blocks.append(
            "Why chains could not be labelled: "
            + "; ".join(f"{k} ({v})" for k, v in reasons.items())
            + ". They are left out: where such a chain backtracks is undefined."
        )
    return Section("Chains", blocks)


def _sentence_section(results: dict) -> Section:
    s = results["sentence_start"]
    title = "Positives that start a sentence, and the rest (control c)"
    if not all(isinstance(s.get(k, {}).get("auc"), list) for k in ("starting", "inside")):
        return Section(
            title,
            [
                "Not measurable: "
                + ", ".join(
                    f"{k}: {s.get(k, {}).get('n_positive_tokens', 0)} positive tokens"
                    for k in ("starting", "inside")
                )
                + " in the test chains: the control needs positives of both kinds (in the maze "
                "trace language every backtracking sentence starts a sentence)."
            ],
        )
    rows = [
        [f"{a['lag']:+d}", interval(a), interval(b)]
        for a, b in zip(s["starting"]["auc"], s["inside"]["auc"], strict=True)
    ]
    return Section(
        title,
        [
            Table(["lag", "AUC: first token of a sentence", "AUC: inside a sentence"], rows),
            f"Positive tokens in the test chains: {s['starting']['n_positive_tokens']} start a "
            f"sentence, {s['inside']['n_positive_tokens']} do not. A probe that only detects "
            "sentence boundaries scores well on the first and not the second.",
        ],
    )


def _differences(results: dict, generated: bool) -> Section:
    return Section(
        "How this run differs from the seed",
        [
            Bullets(
                [
                    f"model `{results['model']}` (the seed: Llama-3.1-8B on R1-Distill-Llama-8B "
                    "chains)",
                    "labels from the checker, exact to the token, on chains the model wrote itself"
                    if generated
                    else "labels from the file's spans, mapped to tokens through the "
                    "tokenizer's offsets",
                    "maze search in a fixed trace language (generated chains): the backtracking "
                    "sentences are formulaic, so the lexical baselines are strong by design; "
                    "the verdict asks for more than they give",
                    "the headline measures anticipation at onsets, which the seed's all-target "
                    "AUC mixes with continuation of a span already under way (both shown)",
                    f"layers {', '.join(str(x) for x in results['layers'])} (evenly spaced); "
                    f"chains split {results['split']}",
                ]
            )
        ],
    )
