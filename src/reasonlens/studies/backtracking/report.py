"""The backtracking study's results.json and report: lag by lag, the residual-stream probe
beside every control and the seed's figures, and a verdict that a control cannot pass.

Verdicts, per lag, at the layer chosen on validation chains:

- **beyond the text**: the probe's test AUC beats the shuffled-label control *and* both lexical
  baselines (token embeddings, bag of the last k tokens) with 95% paired-bootstrap confidence:
  the activations carry more about the backtrack k tokens ahead than the surface text does;
- **lexical**: it beats the shuffled control but not the lexical baselines: what it predicts,
  the nearby text already tells;
- **no signal**: it does not beat the shuffled control;
- **not measurable**: the test chains have no positive at that lag.

For generated chains the untrained model's activations on the same tokens are a further
control: a lag beyond the text that the untrained model reaches as well (its AUC not beaten
with 95% confidence) reads **beyond the text, untrained model too**: the information is in
the prompt and context for any model to read, not something fine-tuning taught.
"""

from __future__ import annotations

from typing import Any

from reasonlens.report.document import Document
from reasonlens.report.provenance import provenance
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

GENERATED_STAGES = ["data", "train", "sample", "chains", "activations", "analysis"]
FILE_STAGES = ["chains", "activations", "analysis"]


def lag_verdicts(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per lag: the probe's AUC and F1 with intervals, each control's AUC, the paired
    comparisons, and the verdict (see the module docstring)."""
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
        row["verdict"] = _verdict(row)
        rows.append(row)
    return rows


BEYOND = "beyond the text"
UNTRAINED_TOO = "beyond the text, untrained model too"


def _verdict(row: dict) -> str:
    if not row["n_positive"] or row["auc"]["value"] is None:
        return "not measurable"
    c = row["controls"]
    if not c["shuffled"]["beaten"]:
        return "no signal"
    if not (c["embed"]["beaten"] and c["bag"]["beaten"]):
        return "lexical"
    if "untrained" in c and not c["untrained"]["beaten"]:
        return UNTRAINED_TOO
    return BEYOND


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


# rendering ---------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(e: dict | None) -> str:
    if not e or e.get("value") is None:
        return "–"
    if e.get("low") is None:
        return _f(e["value"])
    return f"{_f(e['value'])} [{_f(e['low'])}, {_f(e['high'])}]"


def _image(doc: Document, run: RunDir, relative: str, caption: str) -> None:
    path = run.path / relative
    if path.is_file():
        doc.image(path, caption)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def write_report(run: RunDir, results: dict[str, Any], stages: dict | None = None) -> None:
    """report.md, report.html and summary.md (everything is in `results`)."""
    doc = Document(f"Backtracking study — {results['model']} ({results['preset']} preset)")
    generated = results["source"] == "generated"
    doc.paragraph(_intro(results, generated))
    _chains_section(doc, results, generated)
    _lag_table(doc, run, results)
    _verdicts(doc, results)
    _grids(doc, run)
    _sentence_section(doc, results)
    if generated:
        _training(doc, results)
    _differences(doc, results, generated)
    chains = results["chains"]
    provenance(
        doc,
        run,
        results,
        f"chains: {chains['used']} labelled chains ({chains.get('chain_tokens')} chain tokens, "
        f"{_pct(chains.get('positive_rate'))} positive); split by chain: "
        + ", ".join(f"{k} {v}" for k, v in results["split"].items()),
        GENERATED_STAGES if generated else FILE_STAGES,
    )
    doc.write(run.path, "report")
    run.write_text("summary.md", _summary(results))


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


def _chains_section(doc: Document, results: dict, generated: bool) -> None:
    c = results["chains"]
    doc.heading("Chains")
    if generated:
        reasons = c.get("unlabelable_reasons") or {}
        doc.table(
            ["measure", "this run"],
            [
                ["chains sampled", c["chains"]],
                ["labelable by the checker", f"{c['labelable']} ({_pct(c['share_labelable'])})"],
                ["unlabelable", c["unlabelable"]],
                ["labelable but shorter than the largest lag", c["too_short"]],
                ["used for probes", c["used"]],
                ["chains that backtrack", c["chains_that_backtrack"]],
                ["backtracks per labelable chain", _f(c["backtracks_per_chain"], 2)],
                [
                    "backtracks that were needed (a dead end in fact)",
                    f"{c['needed']} of {c['backtracks']} ({_pct(c['share_needed'])})",
                ],
                ["solved (the final path is right)", c["solved"]],
                ["without errors", c["error_free"]],
                [
                    "positive tokens",
                    f"{c['positive_tokens']} of {c['chain_tokens']} "
                    f"({_pct(c['positive_rate'])}; the seed: about 2.2%)",
                ],
            ],
        )
        if reasons:
            doc.paragraph(
                "Why chains could not be labelled: "
                + "; ".join(f"{k} ({v})" for k, v in reasons.items())
                + ". They are left out: where such a chain backtracks is undefined."
            )
    else:
        doc.table(
            ["measure", "this file"],
            [
                ["chains", c["chains"]],
                [f"`{c['target']}` spans", c["spans"]],
                ["labels in the file", ", ".join(c["labels_seen"])],
                [
                    "positive tokens",
                    f"{c['positive_tokens']} of {c['chain_tokens']} ({_pct(c['positive_rate'])})",
                ],
            ],
        )


def _lag_table(doc: Document, run: RunDir, results: dict) -> None:
    doc.heading("Lag by lag, beside the controls and the seed")
    names = [
        n for n in ("shuffled", "untrained", "embed", "bag") if n in results["lags"][0]["controls"]
    ]
    rows = []
    for r in results["lags"]:
        cells = [f"{r['lag']:+d}", r["layer"], _ci(r["auc"]), _ci(r["f1"]), _f(r["chance_f1"])]
        cells += [_f(r["controls"][n]["auc"]["value"]) for n in names]
        seed = "–" if r["seed_auc"] is None else _f(r["seed_auc"])
        cells += [seed, r["verdict"]]
        rows.append(cells)
    doc.table(
        ["lag", "layer (val)", "AUC [95% CI]", "F1 [95% CI]", "chance F1"]
        + [f"AUC: {FIT_TITLES[n]}" for n in names]
        + ["seed AUC", "verdict"],
        rows,
    )
    doc.paragraph(
        f"The seed (Llama-3.1-8B, 1,000 chains labelled by an LLM, best layer 12): F1 "
        f"{SEED_F1_LAG0} at lag 0 against a chance F1 of about {SEED_CHANCE_F1}; it had no "
        "shuffled-label, untrained-model or lexical control. Each control's AUC is at its own "
        "validation-chosen layer."
    )
    for name in ("auc_vs_lag", "f1_vs_lag"):
        _image(
            doc,
            run,
            f"analysis/{name}.png",
            f"test {name.split('_')[0].upper()} against lag: "
            "the probe and every control, with 95% intervals",
        )


def _verdicts(doc: Document, results: dict) -> None:
    doc.heading("Verdicts")
    rows = results["lags"]
    counts: dict[str, list[int]] = {}
    for r in rows:
        counts.setdefault(r["verdict"], []).append(r["lag"])
    lines = [f"**{v}** at lags {', '.join(f'{k:+d}' for k in lags)}" for v, lags in counts.items()]
    far = results["furthest_lag_beyond_text"]
    lines.append(
        "furthest lag at which the activations beat the surface text: "
        + ("none" if far is None else f"+{far} tokens")
    )
    untrained = [
        r["lag"]
        for r in rows
        if "untrained" in r["controls"] and r["controls"]["untrained"]["beaten"]
    ]
    if rows and "untrained" in rows[0]["controls"]:
        lines.append(
            "beats the untrained model's activations at lags "
            + (", ".join(f"{k:+d}" for k in untrained) or "none")
        )
        learned = results["furthest_lag_beyond_untrained"]
        lines.append(
            "furthest lag beyond the text *and* the untrained model (what fine-tuning added): "
            + ("none" if learned is None else f"+{learned} tokens")
        )
    doc.bullets(lines)
    doc.paragraph(
        f"{results['n_lags_tested']} lags were tested, each against three controls with a "
        "95% paired interval; no correction for multiplicity is applied, so read an isolated "
        "verdict among neighbours that disagree with caution. *beyond the text*: beats the "
        "shuffled labels and both lexical baselines (and, for generated chains, the untrained "
        "model's activations; *untrained model too* where it does not); *lexical*: beats the "
        "shuffled labels only; *no signal*: does not beat the shuffled labels."
    )


def _grids(doc: Document, run: RunDir) -> None:
    doc.heading("Every layer and lag")
    doc.paragraph(
        "The seed's tables: `analysis/auc_by_lag_layer.csv` and `analysis/f1_by_lag_layer.csv` "
        "(value [low, high] per cell, test chains)."
    )
    for metric in ("auc", "f1"):
        _image(
            doc, run, f"analysis/{metric}_heatmap.png", f"test {metric.upper()} by layer and lag"
        )


def _sentence_section(doc: Document, results: dict) -> None:
    s = results["sentence_start"]
    doc.heading("Positives that start a sentence, and the rest (control c)")
    if not all(isinstance(s.get(k, {}).get("auc"), list) for k in ("starting", "inside")):
        doc.paragraph(
            "Not measurable: "
            + ", ".join(
                f"{k}: {s.get(k, {}).get('n_positive_tokens', 0)} positive tokens"
                for k in ("starting", "inside")
            )
            + " in the test chains: the control needs positives of both kinds (in the maze "
            "trace language every backtracking sentence starts a sentence)."
        )
        return
    rows = [
        [f"{a['lag']:+d}", _ci(a), _ci(b)]
        for a, b in zip(s["starting"]["auc"], s["inside"]["auc"], strict=True)
    ]
    doc.table(["lag", "AUC: first token of a sentence", "AUC: inside a sentence"], rows)
    doc.paragraph(
        f"Positive tokens in the test chains: {s['starting']['n_positive_tokens']} start a "
        f"sentence, {s['inside']['n_positive_tokens']} do not. A probe that only detects "
        "sentence boundaries scores well on the first and not the second."
    )


def _training(doc: Document, results: dict) -> None:
    t = results["train"]
    g = results["gold_traces"]
    doc.heading("Training")
    doc.paragraph(
        f"{t['examples']} traces ({_f(g['backtracks_per_chain'], 2)} backtracks each, "
        f"{_pct(g['share_needed'])} of them needed), {t['steps']} steps, loss "
        f"{_f(t['first_loss'])} -> {_f(t['final_loss'])}, {t['train_seconds'] or 0:.0f} s on "
        f"{t['device']} ({t['precision']})."
    )


def _differences(doc: Document, results: dict, generated: bool) -> None:
    doc.heading("How this run differs from the seed")
    doc.bullets(
        [
            f"model `{results['model']}` (the seed: Llama-3.1-8B on R1-Distill-Llama-8B chains)",
            "labels from the checker, exact to the token, on chains the model wrote itself"
            if generated
            else "labels from the file's spans, mapped to tokens through the tokenizer's offsets",
            "maze search in a fixed trace language (generated chains): the backtracking "
            "sentences are formulaic, so the lexical baselines are strong by design; the "
            "verdict asks for more than they give",
            f"layers {', '.join(str(x) for x in results['layers'])} (evenly spaced); chains "
            f"split {results['split']}",
        ]
    )


def _summary(results: dict) -> str:
    c = results["chains"]
    far = results["furthest_lag_beyond_text"]
    lines = [
        f"# Backtracking study — {results['model']} ({results['preset']} preset)",
        "",
        f"{c['used']} labelled chains ({_pct(c.get('positive_rate'))} positive tokens)"
        + (
            f"; of {c['chains']} sampled, {c['unlabelable']} unlabelable, "
            f"{_f(c['backtracks_per_chain'], 2)} backtracks a chain, {_pct(c['share_needed'])} "
            "needed"
            if results["source"] == "generated"
            else ""
        )
        + ".",
        "",
        "| lag | layer | AUC [95% CI] | shuffled | untrained | embeddings | bag of tokens | seed "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["lags"]:
        c_ = r["controls"]
        untrained = c_.get("untrained", {}).get("auc", {}).get("value")
        lines.append(
            f"| {r['lag']:+d} | {r['layer']} | {_ci(r['auc'])} | "
            f"{_f(c_['shuffled']['auc']['value'])} | {_f(untrained)} | "
            f"{_f(c_['embed']['auc']['value'])} | {_f(c_['bag']['auc']['value'])} | "
            f"{'–' if r['seed_auc'] is None else _f(r['seed_auc'])} | {r['verdict']} |"
        )
    lines += [
        "",
        "Furthest lag where the activations beat the surface text: "
        + ("none" if far is None else f"+{far} tokens")
        + (
            ""
            if results["source"] != "generated"
            else "; beyond the untrained model's activations too: "
            + (
                "none"
                if results["furthest_lag_beyond_untrained"] is None
                else f"+{results['furthest_lag_beyond_untrained']} tokens"
            )
        )
        + ". Full report: `report.md` / `report.html`.",
        "",
    ]
    return "\n".join(lines)


def backtracking_report(run: RunDir, results: dict[str, Any], stages: dict) -> None:
    write_report(run, results, stages)
