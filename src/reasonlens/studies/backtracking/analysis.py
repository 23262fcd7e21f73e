"""The backtracking study's analysis: the lag-probe grid on the model's residual stream, and
the same grid on every control, all on one split of the chains.

- **probes**: every (layer, lag) probe on the studied model's activations;
- **shuffled**: the same activations with the chains' labels permuted among chains (a);
- **untrained**: the base model's activations on the same tokens (generated chains only: the
  model before it learnt to search);
- **embed**, **bag**: the lexical baselines, token embeddings and a bag of the last k tokens (b);
- **sentence start**: the fitted probes scored on positives that start a sentence and on
  those that do not (c).

Each lag's layer is chosen on the validation chains (per fit: the control picks its own best
too), and every comparison is paired: the same test chains, the same bootstrap resamples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from reasonlens.analyses.lag_probes import (
    LagProbeConfig,
    LagProbeResult,
    StoreChains,
    bag_of_tokens_source,
    compare,
    fit_lag_probes,
    labels_from_rows,
    sentence_start_labels,
    shuffled_chain_labels,
    token_embedding_source,
    token_texts,
)
from reasonlens.runs.files import atomic_write, jsonable
from reasonlens.tasks.backtracking import LabelRow

#: The seed's figures (Llama-3.1-8B, 1,000 LLM-labelled chains; best layer 12): test AUC by
#: lag, and F1 at lag 0 against a chance F1 of about 0.02.
SEED_AUC = {0: 0.957, 4: 0.936, 12: 0.891, 24: 0.835, 48: 0.786}
SEED_F1_LAG0 = 0.295
SEED_CHANCE_F1 = 0.02

ANALYSIS = "analysis.json"
FITS = ("probes", "shuffled", "untrained", "embed", "bag")
#: What each fit is, for tables and plots.
FIT_TITLES = {
    "probes": "residual stream",
    "shuffled": "shuffled labels (a)",
    "untrained": "untrained model",
    "embed": "token embeddings (b)",
    "bag": "bag of last k tokens (b)",
}


def analyse_chains(
    rows: Sequence[LabelRow],
    stores: dict[str, Any],
    sites: Sequence[str],
    layers: Sequence[int],
    embedding: torch.Tensor,
    tokenizer,
    config: LagProbeConfig,
    bag_k: int,
    directory: Path,
) -> dict[str, Any]:
    """Fit the grid and every control; write JSON, CSV tables and plots into ``directory``.

    ``stores``: ``{"probes": store}`` and, for generated chains, ``"untrained": store`` of the
    base model on the same tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = [r.id for r in rows]
    input_ids = [list(r.input_ids) for r in rows]
    labels = labels_from_rows(rows)

    def store_source(store) -> StoreChains:
        return StoreChains(store, sites, labels, ids=ids, input_ids=input_ids, layers=layers)

    source = store_source(stores["probes"])
    fits: dict[str, LagProbeResult] = {"probes": fit_lag_probes(source, config)}
    split = fits["probes"].split
    fits["shuffled"] = fit_lag_probes(
        shuffled_chain_labels(source, config.seed), config, split=split
    )
    if "untrained" in stores:
        fits["untrained"] = fit_lag_probes(store_source(stores["untrained"]), config, split=split)
    fits["embed"] = fit_lag_probes(
        token_embedding_source(embedding, input_ids, labels, ids), config, split=split
    )
    fits["bag"] = fit_lag_probes(
        bag_of_tokens_source(input_ids, labels, k=bag_k, ids=ids), config, split=split
    )

    best = {name: fit.best_layers("auc") for name, fit in fits.items()}
    main = fits["probes"]
    comparisons = {
        name: compare(main.test, fit.test, "auc", best["probes"], best[name], level=config.ci)
        for name, fit in fits.items()
        if name != "probes"
    }
    sentence = _sentence_start(main, source, rows, tokenizer, config)
    out = {
        "layers": list(layers),
        "sites": list(sites),
        "lags": list(config.lags),
        "config": jsonable(config.to_dict()),
        "split": {k: len(v) for k, v in split.to_dict().items()},
        "fits": {name: fit.to_dict() for name, fit in fits.items()},
        "best_per_lag": {
            name: {m: fit.best_per_lag(m) for m in ("auc", "f1")} for name, fit in fits.items()
        },
        "comparisons": comparisons,
        "sentence_start": sentence,
        "seconds": {name: fit.seconds for name, fit in fits.items()},
    }
    atomic_write(directory / ANALYSIS, json.dumps(jsonable(out), indent=1) + "\n")
    main.probes.save(directory / "probes.safetensors")
    for metric in ("auc", "f1"):
        atomic_write(directory / f"{metric}_by_lag_layer.csv", grid_csv(main, metric))
        main.heatmap(
            directory / f"{metric}_heatmap.png",
            metric,
            title=f"test {metric.upper()} by layer and lag: residual stream",
        )
    plot_curves(out, directory / "auc_vs_lag.png", "auc")
    plot_curves(out, directory / "f1_vs_lag.png", "f1")
    return out


def _sentence_start(main: LagProbeResult, source, rows, tokenizer, config) -> dict[str, Any]:
    """Control (c): the fitted probes on positives that start a sentence, and on the rest."""
    texts = [token_texts(tokenizer, r.input_ids) for r in rows]
    starting, inside = sentence_start_labels(source.labels, texts)
    best = main.best_layers("auc")
    out: dict[str, Any] = {}
    for name, labels in (("starting", starting), ("inside", inside)):
        n_pos = sum(int((labels[i] == 1).sum()) for i in main.split.test)
        if n_pos == 0:
            out[name] = {"n_positive_tokens": 0, "auc": None}
            continue
        scores = main.probes.evaluate(
            source,
            main.split.test,
            labels=labels,
            bootstrap=config.bootstrap,
            ci=config.ci,
            seed=config.seed,
        )
        out[name] = {
            "n_positive_tokens": n_pos,
            "auc": [
                {"lag": lag, "layer": main.layers[f], **scores["auc"].at(f, k)}
                for k, (lag, f) in enumerate(zip(main.lags, best, strict=True))
            ],
        }
    return out


def grid_csv(fit: LagProbeResult, metric: str) -> str:
    """The seed's table: ``metric`` on the test chains, one row per layer, one column per lag
    (value [low, high])."""
    est = fit.test[metric]
    head = "layer," + ",".join(f"lag{lag:+d}" for lag in fit.lags)
    lines = [head]
    for f, layer in enumerate(fit.layers):
        cells = []
        for k in range(len(fit.lags)):
            v, lo, hi = (float(x[f, k]) for x in (est.value, est.low, est.high))
            cells.append("" if math.isnan(v) else f"{v:.4f} [{lo:.4f} {hi:.4f}]")
        lines.append(f"{layer}," + ",".join(cells))
    return "\n".join(lines) + "\n"


def plot_curves(analysis: dict, path: Path, metric: str) -> Path:
    """``metric`` against lag at each fit's validation-chosen layer, with its interval; the
    seed's figures as points (AUC) and chance dashed."""
    from reasonlens.plots import new_figure, save_figure

    fig = new_figure(figsize=(7.5, 4.4), dpi=120)
    ax = fig.subplots()
    lags = analysis["lags"]
    styles = {"probes": "C0", "untrained": "C1", "embed": "C2", "bag": "C3", "shuffled": "C7"}
    for name, colour in styles.items():
        if name not in analysis["best_per_lag"]:
            continue
        rows = analysis["best_per_lag"][name][metric]
        value = [_num(r["value"]) for r in rows]
        ax.plot(lags, value, color=colour, marker="o", ms=3, label=FIT_TITLES[name])
        ax.fill_between(
            lags,
            [_num(r["low"]) for r in rows],
            [_num(r["high"]) for r in rows],
            color=colour,
            alpha=0.12,
            lw=0,
        )
    if metric == "auc":
        ax.axhline(0.5, color="grey", ls="--", lw=0.9)
        ax.plot(
            list(SEED_AUC),
            list(SEED_AUC.values()),
            "k*",
            ms=8,
            label="seed (Llama-3.1-8B, LLM labels)",
        )
    else:
        chance = analysis["fits"]["probes"]["test"]["cells"]
        by_lag = {c["lag"]: _num(c["chance_f1"]["value"]) for c in chance}
        ax.plot(lags, [by_lag[k] for k in lags], color="grey", ls="--", lw=0.9, label="chance F1")
        ax.plot([0], [SEED_F1_LAG0], "k*", ms=8, label="seed, lag 0")
    ax.set_xlabel("lag (tokens ahead)")
    ax.set_ylabel(f"test {metric.upper()} (layer chosen on validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def _num(x) -> float:
    return float("nan") if x is None else float(x)
