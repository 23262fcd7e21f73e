"""The backtracking study's results.json and report, declared to the report builder: lag by
lag, the residual-stream probe beside every control and the seed's figures, and one claim per
lag, *the activations at t predict the label at t+lag beyond every control*, judged by
:func:`lag_verdict` in the one verdict vocabulary (:mod:`reasonlens.report.verdicts`) with the
study's own words as labels (`VOCABULARY`, which the report prints).
"""

from __future__ import annotations

from typing import Any

from reasonlens.report.builder import Bullets, Claim, Claims, Figure, Report, Section, Table
from reasonlens.report.document import interval, num, pct
from reasonlens.report.verdicts import (
    AGREES,
    CONTROL_TOO,
    DIFFERS,
    UNCLEAR,
    Estimate,
    Verdict,
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
CONTROLS = ("shuffled", "untrained", "embed", "bag")  # in the tables' order
VOCABULARY = (
    "The study's words, on the one vocabulary: *beyond the text* = agrees (above every "
    "control); *lexical* = holds for the control too, the control being the lexical baselines "
    "(above the shuffled labels, not above both baselines: the nearby text tells as much); "
    "*beyond the text, untrained model too* = holds for the control too, the control being the "
    "untrained model (beyond the text, not beyond its activations on the same tokens: nothing "
    "fine-tuning taught); *no signal* = differs where the interval against the shuffled labels "
    "lies at or below 0 (they do as well), unclear where it straddles 0; *not measurable*: no "
    "positive at that lag in the test chains."
)


def lag_verdict(row: dict[str, Any]) -> Verdict:
    """The verdict on one lag's claim (a row of :func:`lag_verdicts`), from the paired
    comparisons of the probe with each control, labelled with the study's word (`VOCABULARY`).
    The whole rule: a stricter one (more controls, a null, a minimum effect) replaces it here."""
    if not row["n_positive"]:
        return not_measurable("no positive at this lag in the test chains")
    if row["auc"]["value"] is None:
        return not_measurable("no AUC at this lag")
    c = row["controls"]
    if not c["shuffled"]["beaten"]:
        high = c["shuffled"]["diff"][1]
        word = DIFFERS if high is not None and high <= 0 else UNCLEAR
        return Verdict(word, f"not above {_versus(row, 'shuffled')}", NO_SIGNAL)
    lexical = [n for n in ("embed", "bag") if not c[n]["beaten"]]
    if lexical:
        weakest = min(lexical, key=lambda n: _margin(row, n))
        return Verdict(CONTROL_TOO, f"not above {_versus(row, weakest)}", LEXICAL)
    if "untrained" in c and not c["untrained"]["beaten"]:
        return Verdict(CONTROL_TOO, f"not above {_versus(row, 'untrained')}", UNTRAINED_TOO)
    closest = min(c, key=lambda n: _margin(row, n))
    return Verdict(AGREES, f"above every control; closest, {_versus(row, closest)}", BEYOND)


def _margin(row: dict, name: str) -> float:
    """The probe's AUC minus the control's (-inf where there is none)."""
    control = row["controls"][name]["auc"]["value"]
    return float("-inf") if control is None else row["auc"]["value"] - control


def _versus(row: dict, name: str) -> str:
    low, high = row["controls"][name]["diff"]
    return f"{FIT_TITLES[name]}: {Estimate(_margin(row, name), low, high).show()}"


def lag_verdicts(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per lag: the probe's AUC and F1 with intervals, each control's AUC, the paired
    comparisons, and the verdict's label (:func:`lag_verdict`)."""
    best = analysis["best_per_lag"]
    comp = analysis["comparisons"]
    rows = []
    for k, lag in enumerate(analysis["lags"]):
        auc = best["probes"]["auc"][k]
        f1 = best["probes"]["f1"][k]
        cell = _cell(analysis["fits"]["probes"], auc["layer"], lag)
        row: dict[str, Any] = {
            "lag": lag,
            "layer": auc["layer"],
            "auc": _est(auc),
            "f1": _est(f1),
            "chance_f1": cell["chance_f1"]["value"] if cell else None,
            "n_positive": cell["n_positive"] if cell else 0,
            "controls": {
                name: {
                    "auc": _est(best[name]["auc"][k]),
                    "layer": best[name]["auc"][k]["layer"],
                    "diff": [comp[name][k]["low"], comp[name][k]["high"]],
                    "beaten": comp[name][k]["beats"],
                }
                for name in comp
            },
            "seed_auc": SEED_AUC.get(lag),
        }
        verdict = lag_verdict(row)
        row["verdict"] = verdict.label or verdict.word
        rows.append(row)
    return rows


def _cell(fit: dict, layer, lag: int) -> dict | None:
    for cell in fit["test"]["cells"]:
        if cell["layer"] == layer and cell["lag"] == lag:
            return cell
    return None


def _est(entry: dict) -> dict[str, float | None]:
    return {"value": entry["value"], "low": entry["low"], "high": entry["high"]}


def study_results(p: BacktrackingPreset, settings: Settings, stages: dict[str, Any]) -> dict:
    analysis = stages["analysis"]
    rows = lag_verdicts(analysis)
    beyond = [r["lag"] for r in rows if r["verdict"] in (BEYOND, UNTRAINED_TOO)]
    learned = [r["lag"] for r in rows if r["verdict"] == BEYOND]
    out: dict[str, Any] = {
        "source": "file" if "train" not in stages else "generated",
        "chains": stages["chains"]["summary"],
        "layers": analysis["layers"],
        "split": analysis["split"],
        "lags": rows,
        "furthest_lag_beyond_text": max((k for k in beyond if k >= 0), default=None),
        # ... and beyond the untrained model's activations too (generated chains only)
        "furthest_lag_beyond_untrained": max((k for k in learned if k >= 0), default=None)
        if "train" in stages
        else None,
        "n_lags_tested": len(rows),
        "sentence_start": analysis["sentence_start"],
        "probe_seconds": analysis["seconds"],
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
    lag_table = _lag_table(results, verdicts)
    furthest = _furthest(results)
    return Report(
        title=f"Backtracking study — {results['model']} ({results['preset']} preset)",
        intro=[_intro(results, generated)],
        sections=[
            _chains_section(results, generated),
            Section(
                "Lag by lag, beside the controls and the seed",
                [
                    lag_table,
                    f"The seed (Llama-3.1-8B, 1,000 chains labelled by an LLM, best layer 12): "
                    f"F1 {SEED_F1_LAG0} at lag 0 against a chance F1 of about {SEED_CHANCE_F1}; "
                    "it had no shuffled-label, untrained-model or lexical control. Each "
                    "control's AUC is at its own validation-chosen layer; the verdict column "
                    "gives the study's word and, in brackets, the one vocabulary's.",
                    *(
                        Figure(
                            f"analysis/{metric}_vs_lag.png",
                            f"test {metric.upper()} against lag: the probe and every control, "
                            "with 95% intervals",
                        )
                        for metric in ("auc", "f1")
                    ),
                ],
            ),
            Section("Lag probes", [_claims(results, verdicts), Bullets(furthest)]),
            Section(
                "Every layer and lag",
                [
                    "The seed's tables: `analysis/auc_by_lag_layer.csv` and "
                    "`analysis/f1_by_lag_layer.csv` (value [low, high] per cell, test chains).",
                    *(
                        Figure(
                            f"analysis/{metric}_heatmap.png",
                            f"test {metric.upper()} by layer and lag",
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
        summary=[_chains_line(results, generated), lag_table, _sentence(furthest)],
        control_name="strongest control (AUC)",
        notes=[_vocabulary(results)],
    )


def _vocabulary(results: dict) -> str:
    controls = [n for n in CONTROLS if n in results["lags"][0]["controls"]]
    return (
        "Each lag's claim is judged at the layer chosen on validation chains, against every "
        f"control ({', '.join(FIT_TITLES[n] for n in controls)}): the figure after each verdict "
        "is the probe's test AUC minus a control's, with its 95% paired-bootstrap interval over "
        "chains. " + VOCABULARY
    )


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def _at(lag: int) -> str:
    return "t" if lag == 0 else f"t{lag:+d}"


def _claims(results: dict, verdicts: list[Verdict]) -> Claims:
    claims = []
    for r, verdict in zip(results["lags"], verdicts, strict=True):
        aucs = {n: c["auc"]["value"] for n, c in r["controls"].items()}
        strongest = max(aucs, key=lambda n: -1.0 if aucs[n] is None else aucs[n])
        claims.append(
            Claim(
                f"activations at t predict the label at {_at(r['lag'])} beyond every control",
                interval(r["auc"]),
                verdict,
                control=f"{num(aucs[strongest])}, {FIT_TITLES[strongest]}",
                reference=num(r["seed_auc"]),
            )
        )
    return Claims(claims, reference="seed AUC", control="strongest control (AUC)", rule="interval")


def _furthest(results: dict) -> list[str]:
    far = results["furthest_lag_beyond_text"]
    lines = [
        "furthest lag at which the activations beat the surface text: "
        + ("none" if far is None else f"+{far} tokens")
    ]
    rows = results["lags"]
    if "untrained" in rows[0]["controls"]:
        beaten = [r["lag"] for r in rows if r["controls"]["untrained"]["beaten"]]
        learned = results["furthest_lag_beyond_untrained"]
        lines += [
            "beats the untrained model's activations at lags "
            + (", ".join(f"{k:+d}" for k in beaten) or "none"),
            "furthest lag beyond the text *and* the untrained model (what fine-tuning added): "
            + ("none" if learned is None else f"+{learned} tokens"),
        ]
    return lines


def _lag_table(results: dict, verdicts: list[Verdict]) -> Table:
    names = [n for n in CONTROLS if n in results["lags"][0]["controls"]]
    rows = []
    for r, verdict in zip(results["lags"], verdicts, strict=True):
        said = f"{verdict.label} ({verdict.word})" if verdict.label else verdict.word
        rows.append(
            [
                f"{r['lag']:+d}",
                r["layer"],
                interval(r["auc"]),
                interval(r["f1"]),
                num(r["chance_f1"]),
                *(num(r["controls"][n]["auc"]["value"]) for n in names),
                num(r["seed_auc"]),
                said,
            ]
        )
    return Table(
        ["lag", "layer (val)", "AUC [95% CI]", "F1 [95% CI]", "chance F1"]
        + [f"AUC: {FIT_TITLES[n]}" for n in names]
        + ["seed AUC", "verdict"],
        rows,
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
        "split into train, validation and test, never tokens). Each lag's layer is chosen on "
        "the validation chains; every figure below is on the test chains, with a 95% bootstrap "
        "interval over chains, and every control is scored on the same chains and resamples."
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
                    f"layers {', '.join(str(x) for x in results['layers'])} (evenly spaced); "
                    f"chains split {results['split']}",
                ]
            )
        ],
    )
