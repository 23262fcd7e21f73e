"""The backtracking study's analysis: the lag-probe grid on the model's residual stream, and
the same grid on every control, all on one split of the chains, for two measures.

- **onset** (the headline): anticipation at positive lags only: at +k a positive is a span
  that begins in (t, t+k]; rows where t is already inside a span are left out (at +4 most
  all-target positives are the span that t is in, going on: readable from the present);
- **all targets** (the seed's measure): every token t+lag, continuation included, at every lag,
  for comparison with the seed's table.

Fits, on each measure:

- **probes**: every (layer, lag) probe on the studied model's activations;
- **null** (onset): a permutation null, the probes refitted on many shuffles of the chains'
  labels among chains (chain position kept), at the probe's layer: its upper percentile is
  the AUC a probe with no association reaches (a);
- **shuffled** (all targets, the seed's table only): one such shuffle;
- **prefix**, **embed**, **bag**: the lexical baselines: everything the prefix says on its
  surface (every token so far, the last k, position in the chain, distance since the last
  span), token embeddings, a bag of the last k tokens (b);
- **random**: a model of the same architecture with random weights, on the same tokens (what
  the computation alone, having learnt nothing, makes of the text);
- **untrained**: the base model's activations on the same tokens (generated chains only: the
  model before it learnt to search);
- **sentence start** (all targets): the fitted probes scored on positives that start a
  sentence and on those that do not (c).

Each lag's layer is chosen on the validation chains (per fit: each control picks its own best
too), and every comparison is paired: the same test chains, the same bootstrap resamples.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from reasonlens.analyses.lag_probes import (
    ChainSource,
    LagProbeConfig,
    LagProbeResult,
    StoreChains,
    bag_of_tokens_source,
    compare,
    fit_lag_probes,
    labels_from_rows,
    onset_counts,
    permutation_null,
    prefix_lexical_source,
    sentence_start_labels,
    shuffled_chain_labels,
    token_embedding_source,
    token_texts,
)
from reasonlens.runs.files import atomic_write, jsonable
from reasonlens.tasks.backtracking import LabelRow

#: The seed's figures (Llama-3.1-8B, 1,000 LLM-labelled chains; best layer 12): test AUC by
#: lag (all targets), and F1 at lag 0 against a chance F1 of about 0.02.
SEED_AUC = {0: 0.957, 4: 0.936, 12: 0.891, 24: 0.835, 48: 0.786}
SEED_F1_LAG0 = 0.295
SEED_CHANCE_F1 = 0.02

ANALYSIS = "analysis.json"
#: The null's upper percentile: the AUC a probe must clear to beat it.
NULL_QUANTILE = 0.95
FITS = ("probes", "shuffled", "untrained", "embed", "bag", "random", "prefix")
#: What each fit is, for tables and plots.
FIT_TITLES = {
    "probes": "residual stream",
    "shuffled": "one shuffle of the labels (a)",
    "null": "permutation null (a)",
    "untrained": "untrained model",
    "random": "random-weights model",
    "prefix": "prefix lexical baseline (b)",
    "embed": "token embeddings (b)",
    "bag": "bag of last k tokens (b)",
}


def lexical_sources(
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[torch.Tensor],
    ids: Sequence[str],
    embedding: torch.Tensor,
    bag_k: int,
) -> dict[str, ChainSource]:
    """The lexical baselines' sources (b), on the chains' tokens and labels."""
    return {
        "embed": token_embedding_source(embedding, input_ids, labels, ids),
        "bag": bag_of_tokens_source(input_ids, labels, k=bag_k, ids=ids),
        "prefix": prefix_lexical_source(input_ids, labels, k=bag_k, ids=ids),
    }


def analyse(
    sources: dict[str, ChainSource],
    config: LagProbeConfig,
    null_permutations: int = 100,
    null_epochs: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, LagProbeResult]]:
    """Both measures on every source (``"probes"``: the studied activations; each other key
    a control of the same chains), the onset one with its permutation null: (the record
    analysis.json holds, the probes' fits by measure: ``"all"``, ``"onset"``)."""
    main = sources["probes"]
    names = [n for n in FITS if n in sources or n == "shuffled"]
    fits: dict[str, LagProbeResult] = {
        "probes": fit_lag_probes(main, config, progress=progress, label="probes, all targets")
    }
    split = fits["probes"].split
    for name in names[1:]:
        source = shuffled_chain_labels(main, config.seed) if name == "shuffled" else sources[name]
        fits[name] = fit_lag_probes(source, config, split=split)
    out = _measure(fits, config)
    out["split"] = {k: len(v) for k, v in split.to_dict().items()}
    probes = {"all": fits["probes"]}
    onset_lags = tuple(k for k in config.lags if k > 0)
    if onset_lags:
        out["onset"], probes["onset"] = _onset(
            sources, config, onset_lags, split, null_permutations, null_epochs, progress
        )
    return out, probes


def _measure(fits: dict[str, LagProbeResult], config: LagProbeConfig) -> dict[str, Any]:
    """One measure's record: every fit, each one's validation-chosen layer per lag, and the
    probe's paired comparison with each control."""
    best = {name: fit.best_layers("auc") for name, fit in fits.items()}
    main = fits["probes"]
    return {
        "lags": list(main.lags),
        "fits": {name: fit.to_dict() for name, fit in fits.items()},
        "best_per_lag": {
            name: {m: fit.best_per_lag(m) for m in ("auc", "f1")} for name, fit in fits.items()
        },
        "comparisons": {
            name: compare(main.test, fit.test, "auc", best["probes"], best[name], config.ci)
            for name, fit in fits.items()
            if name != "probes"
        },
        "seconds": {name: fit.seconds for name, fit in fits.items()},
    }


def _onset(
    sources: dict[str, ChainSource],
    config: LagProbeConfig,
    lags: tuple[int, ...],
    split,
    permutations: int,
    null_epochs: int | None,
    progress: bool,
) -> tuple[dict[str, Any], LagProbeResult]:
    """The onset measure: every source's grid at the positive lags, the permutation null at
    the probe's chosen layers, and the rows each lag keeps and leaves out (test chains):
    (its record, the probes' fit)."""
    onset = dataclasses.replace(config, lags=lags, targets="onset")
    main = sources["probes"]
    fits = {"probes": fit_lag_probes(main, onset, split=split, progress=progress, label="onsets")}
    for name in (n for n in FITS if n in sources and n != "probes"):
        fits[name] = fit_lag_probes(sources[name], onset, split=split)
    out = _measure(fits, onset)
    out["config"] = {"lags": list(lags), "targets": "onset"}
    best = fits["probes"].best_layers("auc")
    started = time.perf_counter()
    null = permutation_null(
        main,
        onset,
        split,
        best,
        permutations,
        quantile=NULL_QUANTILE,
        max_epochs=null_epochs,
        progress=progress,
    )
    out["null"] = null.to_dict()
    out["null_comparison"] = null.compare(fits["probes"].test, best)
    out["seconds"]["null"] = time.perf_counter() - started
    out["counts"] = onset_counts([main.labels[i] for i in split.test], lags)
    return out, fits["probes"]


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
    null_permutations: int = 100,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit both measures' grids and every control; write JSON, CSV tables and plots into
    ``directory``.

    ``stores``: ``{"probes": store}``, ``"random": store`` of the random-weights model and,
    for generated chains, ``"untrained": store`` of the base model, all on the same tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = [r.id for r in rows]
    input_ids = [list(r.input_ids) for r in rows]
    labels = labels_from_rows(rows)
    sources: dict[str, ChainSource] = {
        name: StoreChains(store, sites, labels, ids=ids, input_ids=input_ids, layers=layers)
        for name, store in stores.items()
    }
    sources.update(lexical_sources(input_ids, labels, ids, embedding, bag_k))
    out, probes = analyse(sources, config, null_permutations, progress=progress)
    main, onset_fit = probes["all"], probes.get("onset")
    out = {
        "layers": list(layers),
        "sites": list(sites),
        "config": jsonable(config.to_dict()),
        **out,
        "sentence_start": _sentence_start(main, sources["probes"], rows, tokenizer, config),
    }
    atomic_write(directory / ANALYSIS, json.dumps(jsonable(out), indent=1) + "\n")
    main.probes.save(directory / "probes.safetensors")
    for metric in ("auc", "f1"):
        atomic_write(directory / f"{metric}_by_lag_layer.csv", grid_csv(main, metric))
        main.heatmap(
            directory / f"{metric}_heatmap.png",
            metric,
            title=f"test {metric.upper()} by layer and lag (all targets): residual stream",
        )
    plot_curves(out, directory / "auc_vs_lag.png", "auc")
    plot_curves(out, directory / "f1_vs_lag.png", "f1")
    if onset_fit is not None:
        onset_fit.probes.save(directory / "onset_probes.safetensors")
        atomic_write(directory / "onset_auc_by_lag_layer.csv", grid_csv(onset_fit, "auc"))
        onset_fit.heatmap(
            directory / "onset_auc_heatmap.png",
            "auc",
            title="test AUC by layer and lag (onsets): residual stream",
        )
        plot_curves(out["onset"], directory / "onset_auc_vs_lag.png", "auc", onset=True)
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


def plot_curves(measure: dict, path: Path, metric: str, onset: bool = False) -> Path:
    """``metric`` against lag at each fit's validation-chosen layer, with its interval;
    chance dashed; all targets: the seed's figures as points (AUC); onsets: the permutation
    null's median and upper percentile."""
    from reasonlens.plots import new_figure, save_figure

    fig = new_figure(figsize=(7.5, 4.4), dpi=120)
    ax = fig.subplots()
    lags = measure["lags"]
    styles = {
        "probes": "C0",
        "untrained": "C1",
        "random": "C5",
        "prefix": "C4",
        "embed": "C2",
        "bag": "C3",
        "shuffled": "C7",
    }
    for name, colour in styles.items():
        if name not in measure["best_per_lag"]:
            continue
        rows = measure["best_per_lag"][name][metric]
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
        if onset and "null" in measure:
            null = measure["null"]
            for key, style, what in (("median", ":", "median"), ("upper", "-.", "upper")):
                ax.plot(
                    lags,
                    [_num(r[key]) for r in null["per_lag"]],
                    color="C7",
                    ls=style,
                    label=f"permutation null, {what} ({null['quantile']:.0%})"
                    if key == "upper"
                    else "permutation null, median",
                )
        if not onset:
            ax.plot(
                list(SEED_AUC),
                list(SEED_AUC.values()),
                "k*",
                ms=8,
                label="seed (Llama-3.1-8B, LLM labels)",
            )
    else:
        chance = measure["fits"]["probes"]["test"]["cells"]
        by_lag = {c["lag"]: _num(c["chance_f1"]["value"]) for c in chance}
        ax.plot(lags, [by_lag[k] for k in lags], color="grey", ls="--", lw=0.9, label="chance F1")
        if not onset:
            ax.plot([0], [SEED_F1_LAG0], "k*", ms=8, label="seed, lag 0")
    ax.set_xlabel("lag (tokens ahead)")
    what = "onsets only" if onset else "all targets"
    ax.set_ylabel(f"test {metric.upper()}, {what} (layer chosen on validation)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def _num(x) -> float:
    return float("nan") if x is None else float(x)
