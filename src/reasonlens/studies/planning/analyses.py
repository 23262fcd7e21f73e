"""The paper's analyses, run on the planning study's analysis set.

The analysis set is the test problems of one level the fine-tuned model solves under teacher
forcing (the paper: 400 correctly solved L3 6-block problems). Each analysis writes
`analyses/<name>.json` and a plot; an analysis whose JSON is already there is not run again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from reasonlens.analyses.result import load_record, save_result
from reasonlens.models import LoadedModel
from reasonlens.runs import read_json, write_json
from reasonlens.studies.planning import files
from reasonlens.studies.planning import positions as pos
from reasonlens.studies.planning.presets import AnalysisLimits, PlanningPreset
from reasonlens.tasks.blocksworld import Example

log = logging.getLogger(__name__)

PROBE_FOLDS = 5  # probes are cross-fitted: each fold trains on the other 80% of the problems
MASS_PROBLEMS = 4  # problems whose attention on the hidden history is measured (6 steps x
# every head and layer each: a diagnostic mean, not a verdict)


def select_analysis_set(
    model: LoadedModel,
    examples: Sequence[Example],
    n: int,
    seed: int,
    batch_size: int = 16,
    cache: Path | None = None,
) -> tuple[list[pos.Item], dict[str, int]]:
    """Up to `n` problems the model solves under teacher forcing, in a seeded random order.

    Candidates are scored in that order, a chunk at a time, until `n` are solved: a large
    candidate pool costs only what the analysis set needs, and the set is the same as scoring
    all of them and taking the first `n` solved. With `cache` the verdicts are kept in that
    file (by problem id), so a resumed study or a second analysis of the same candidates
    reuses them. Where an answer is several tokens (not with the built-in models' tokenizers,
    a tested property of the palettes), the analyses read its first token.
    """
    from reasonlens.evaluate.teacher_forcing import score_blanks

    order = list(examples)
    random.Random(seed).shuffle(order)
    items = pos.encode_items(model.tokenizer, order)
    ids = [it.example.problem_id for it in items]
    saved = read_json(cache) if cache is not None and cache.is_file() else None
    verdicts: dict[str, bool] = {}
    if saved is not None and saved.get("candidate_ids") == ids and "scored_ids" in saved:
        verdicts = dict(zip(saved["scored_ids"], saved["solved"], strict=True))
    chunk = 2 * batch_size

    def ids_of(it: pos.Item) -> str:
        return it.example.problem_id

    scored = 0
    while scored < len(items) and sum(verdicts.get(i, False) for i in ids[:scored]) < n:
        todo = [it for it in items[scored : scored + chunk] if ids_of(it) not in verdicts]
        if todo:
            results = score_blanks(model, [it.encoded for it in todo], batch_size=batch_size)
            for it, v in zip(todo, results, strict=True):
                verdicts[it.example.problem_id] = all(b.correct for b in v)
            if cache is not None:
                record = {
                    "candidate_ids": ids,
                    "scored_ids": list(verdicts),
                    "solved": list(verdicts.values()),
                }
                write_json(cache, record, indent=None)
        scored = min(scored + chunk, len(items))
    solved = [it for it in items[:scored] if verdicts[it.example.problem_id]]
    chosen = solved[:n]
    multi = sum(
        any(s.answer[1] - s.answer[0] > 1 for s in it.encoded.tokens.steps) for it in chosen
    )
    return chosen, {
        "candidates": len(items),
        "scored": scored,  # in the seeded order, until enough were solved
        "solved": len(solved),
        "chosen": len(chosen),
        "with_multi_token_answers": multi,  # analyses then use the answer's first token
    }


def _cached(out: Path, name: str, compute: Callable[[], tuple[dict, dict | None]]) -> dict:
    """An analysis's record, computed (and saved with its per-problem values) only once."""
    saved = load_record(out, name)
    if saved is not None:
        return saved
    start = time.perf_counter()
    record, per_example = compute()
    record["seconds"] = time.perf_counter() - start
    return save_result(out, name, record, per_example)


def run_extraction(model: LoadedModel, items: list[pos.Item], out: Path, progress: bool) -> dict:
    from reasonlens.analyses.extraction import extraction_rates_by_projection

    def compute() -> tuple[dict, dict]:
        ids = [it.input_ids for it in items]
        reads = [pos.readouts(it) for it in items]
        both = extraction_rates_by_projection(
            model, ids, reads, ("raw", "final_norm"), progress=progress
        )
        raw, lens = both["raw"], both["final_norm"]
        raw.plot(out / files.EXTRACTION_PNG, f"Extraction rate, {model.name}")
        lens.plot(out / files.EXTRACTION_LENS_PNG, f"Logit lens (final norm), {model.name}")
        record = {"raw": raw.to_dict(), "logit_lens": lens.to_dict(), "n_examples": len(items)}
        # the lens's events too: a report judges the claims on it where the raw one is
        # degenerate (for an RMSNorm the final norm's gain alone gives the same events)
        return record, {**raw.per_example(), "lens_hits": lens.per_example()["hits"]}

    return _cached(out, "extraction", compute)


def run_flow(model: LoadedModel, items: list[pos.Item], out: Path, progress: bool) -> dict:
    from reasonlens.analyses.flow import information_flow

    def compute() -> tuple[dict, dict]:
        n_steps = max(it.n_steps for it in items)
        result = information_flow(
            model,
            [it.input_ids for it in items],
            [pos.targets(it) for it in items],
            [pos.flow_chunks(it) for it in items],
            order=pos.flow_order(n_steps),
            progress=progress,
        )
        result.plot(
            out / files.FLOW_PNG,
            title=f"Information flow into the last token, {model.name}",
            step_labels=[f"step {t + 1}" for t in range(n_steps)],
        )
        return {**result.to_dict(), "n_examples": len(items)}, result.per_example()

    return _cached(out, "flow", compute)


def run_masking(
    model: LoadedModel,
    items: list[pos.Item],
    out: Path,
    progress: bool,
    method: str = "zero_keys",
) -> dict:
    """The history intervention, hiding the history's colour tokens by zeroing their keys (the
    paper's) or by attention knockout (exactly zero attention; file `knockout`)."""
    from reasonlens.analyses.masking import history_attention_mass, masking_impact

    name = "masking" if method == "zero_keys" else "knockout"

    def compute() -> tuple[dict, dict]:
        ids = [it.input_ids for it in items]
        targets = [pos.targets(it) for it in items]
        groups = [pos.history_groups(it) for it in items]
        result = masking_impact(model, ids, targets, groups, progress=progress, method=method)
        # how much attention the hidden history still gets (a few problems: one pass a step)
        k = MASS_PROBLEMS
        mass = history_attention_mass(model, ids[:k], targets[:k], groups[:k], method=method)
        how = "zeroed keys" if method == "zero_keys" else "attention knockout"
        result.plot(
            out / files.masking_png(method),
            title=f"History intervention ({how}): impact of unmasking one step, {model.name}",
        )
        record = {**result.to_dict(), "n_examples": len(items)}
        record["history_mass"] = {
            "hidden": float(mass["hidden"].nanmean()),
            "unmasked": float(mass["unmasked"].nanmean()),
            "n_examples": min(k, len(items)),
        }
        return record, result.per_example()

    return _cached(out, name, compute)


def run_knockout(model: LoadedModel, items: list[pos.Item], out: Path, progress: bool) -> dict:
    return run_masking(model, items, out, progress, method="knockout")


def run_probes(
    model: LoadedModel,
    items: list[pos.Item],
    out: Path,
    progress: bool,
    palette: Sequence[str],
    layer_stride: int,
    seed: int,
) -> dict:
    """Current block states (weighted F1) and future decisions (accuracy), linear and MLP,
    from resid_post at every `layer_stride`-th layer. Cross-fitted over PROBE_FOLDS folds (each
    trains on 80% of the problems, as the paper's 320/80 split), so every analysed problem is
    scored once, by probes that never saw it."""

    def compute() -> tuple[dict, dict]:
        from reasonlens.analyses.probes import cross_fit_probes
        from reasonlens.trace import TraceInput, capture

        n_steps = min(it.n_steps for it in items)
        names = list(pos.probe_positions(items[0]))[: 2 + 2 * n_steps]
        layers = list(range(0, model.n_layers, layer_stride))
        inputs = [
            TraceInput(
                input_ids=tuple(it.input_ids),
                positions=tuple(pos.probe_positions(it)[n] for n in names),
            )
            for it in items
        ]
        acts = capture(
            model,
            inputs,
            [f"layers.{layer}.resid_post" for layer in layers],
            positions="given",
            dtype=torch.float32,
            progress=progress,
        )
        n = len(items)
        features = {}
        for layer in layers:
            rows = acts.get(f"layers.{layer}.resid_post").view(n, len(names), -1)
            for j, name in enumerate(names):
                features[(layer, name)] = rows[:, j]

        state_names = [x for x in names if pos.block_state_labels(items[0], x, palette) is not None]
        future_names = [x for x in names if pos.step_of(x) < n_steps]
        tasks = {
            "state": (
                state_names,
                lambda it, x: pos.block_state_labels(it, x, palette),
                len(pos.state_classes(palette)),
                "weighted_f1",
            ),
            "future": (
                future_names,
                lambda it, x: pos.future_labels(it, x, palette, n_steps),
                len(pos.answer_classes(palette)),
                "accuracy",
            ),
        }
        results: dict[str, dict] = {}
        # the layers the claims compare, declared in advance; the MLP probes (the slow ones)
        # are fitted there only: they answer "linear ≈ nonlinear", not "where"
        declared = [layers[0], layers[len(layers) // 2]]
        probed = {"linear": layers, "mlp": sorted(set(declared))}
        kept: dict[str, torch.Tensor] = {}  # per problem: what the report resamples
        for task, (chosen, label, n_classes, metric) in tasks.items():
            for kind in ("linear", "mlp"):
                keys = [(layer, x) for layer in probed[kind] for x in chosen]
                labels = {
                    k: torch.tensor([label(it, k[1]) for it in items], dtype=torch.long)
                    for k in keys
                }
                fitted = cross_fit_probes(
                    {k: features[k] for k in keys},
                    labels,
                    folds=min(PROBE_FOLDS, n),
                    kind=kind,
                    n_classes=n_classes,
                    metric=metric,
                    seed=seed,
                    threads=1,  # many small problems: one thread avoids BLAS thread thrash
                    progress=progress,
                    label=f"{task} probes ({kind})",
                )
                fitted.plot(out / files.probe_png(task, kind))
                results[f"{task}_{kind}"] = _probe_summary(fitted, metric, probed[kind], chosen)
                if task == "state":
                    kept |= _per_problem(fitted, kind, declared, chosen)
        for kind in ("linear", "mlp"):
            results[f"future_matrix_{kind}"] = _future_matrix(
                results[f"future_{kind}"], n_steps, probed[kind]
            )
        return {
            "layers": layers,
            "positions": names,
            "n_examples": n,
            "cross_fit_folds": min(PROBE_FOLDS, n),
            "n_train": round(n * (1 - 1 / min(PROBE_FOLDS, n))),  # per fold
            "n_test": n,  # every problem, once
            "palette": list(palette),
            "representation": "resid_post (output of block l); a chunk is read at its last token",
            "declared_layers": declared,
            **results,
        }, kept

    return _cached(out, "probes", compute)


def _per_problem(fitted, kind: str, layers: list[int], names: list[str]) -> dict:
    """Out-of-fold predictions [positions, layers, heads, problems] at the declared layers
    (and the shuffled control's, and the labels), for the report's resampled verdicts."""
    idx = [[fitted.index((layer, name)) for layer in layers] for name in names]
    out = {f"state_{kind}": fitted.predictions[torch.tensor(idx)]}
    if kind == "linear":
        out["state_control"] = fitted.control_predictions[torch.tensor(idx)]
        out["state_target"] = fitted.targets[torch.tensor([row[0] for row in idx])].transpose(1, 2)
    return out


def _probe_summary(fitted, metric: str, layers: list[int], names: list[str]) -> dict:
    """Per position, the head-mean metric by layer, with its CI, baseline and control."""
    probe = fitted.score("probe", metric)
    base = fitted.score("baseline", metric)
    control = fitted.score("control", metric)
    out: dict[str, dict] = {}
    for name in names:
        idx = [fitted.index((layer, name)) for layer in layers]
        out[name] = {
            "value": [float(probe.mean[i]) for i in idx],
            "low": [float(probe.mean_low[i]) for i in idx],
            "high": [float(probe.mean_high[i]) for i in idx],
            "baseline": [float(base.mean[i]) for i in idx],
            "control": [float(control.mean[i]) for i in idx],
            # per head, for the future-decision matrix
            "heads": [[float(v) for v in probe.value[i]] for i in idx],
            "heads_baseline": [[float(v) for v in base.value[i]] for i in idx],
            "heads_control": [[float(v) for v in control.value[i]] for i in idx],
        }
    return {"metric": metric, "layers": list(layers), "positions": out}


def _future_matrix(summary: dict, n_steps: int, layers: list[int]) -> dict:
    """[future step r][current step c]: max over layers and the act/col positions (the paper's
    Fig 10), with the majority baseline of the same cell and the shuffled-label control's
    maximum over the same layers and positions (selected the same way, so the two are equally
    optimistic: a cell means something only where it clears its control)."""
    import math

    probe: dict[str, dict[str, float]] = {}
    baseline: dict[str, dict[str, float]] = {}
    control: dict[str, dict[str, float]] = {}
    for r in range(2, n_steps + 1):
        for c in range(1, r):
            best, best_base, best_control = -math.inf, math.nan, -math.inf
            for name in (f"s{c}-act", f"s{c}-col"):
                stats = summary["positions"].get(name)
                if stats is None:
                    continue
                for li in range(len(layers)):
                    value = stats["heads"][li][r - 1]
                    if not math.isnan(value) and value > best:
                        best, best_base = value, stats["heads_baseline"][li][r - 1]
                    shuffled = stats["heads_control"][li][r - 1]
                    if not math.isnan(shuffled):
                        best_control = max(best_control, shuffled)
            if best > -math.inf:
                probe.setdefault(str(r), {})[str(c)] = best
                baseline.setdefault(str(r), {})[str(c)] = best_base
                control.setdefault(str(r), {})[str(c)] = best_control
    return {"probe": probe, "baseline": baseline, "control": control}


def run_all(
    model: LoadedModel,
    items: list[pos.Item],
    out: Path,
    limits: AnalysisLimits,
    palette: Sequence[str],
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Every analysis on (a prefix of) the analysis set; results keyed by analysis."""
    out.mkdir(parents=True, exist_ok=True)

    def first(n: int | None) -> list[pos.Item]:
        return items if n is None else items[:n]

    results = run_mechanisms(model, items, out, limits, progress)
    chosen = first(limits.probes)
    log.info("analysis probes on %d problems", len(chosen))
    results["probes"] = run_probes(
        model, chosen, out, progress, palette, limits.probe_layer_stride, seed
    )
    return results


def run_mechanisms(
    model: LoadedModel,
    items: list[pos.Item],
    out: Path,
    limits: AnalysisLimits,
    progress: bool = True,
) -> dict[str, Any]:
    """Extraction, flow, and the history intervention both ways, on (a prefix of) `items`:
    for the fine-tuned model, and for the control that cannot have learnt the task."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name, runner, n in (
        ("extraction", run_extraction, limits.extraction),
        ("flow", run_flow, limits.flow),
        ("masking", run_masking, limits.masking),
        ("knockout", run_knockout, limits.masking),
    ):
        chosen = items if n is None else items[:n]
        log.info("analysis %s on %d problems (%s)", name, len(chosen), model.name)
        results[name] = runner(model, chosen, out, progress)
    return results


def solved_cache(out: Path, candidates: list) -> Path:
    """Where the teacher-forcing verdicts on these candidates are kept (one file per level and
    block counts, so the horizons reuse the main analysis's verdicts)."""
    levels = sorted({ex.level for ex in candidates})
    blocks = sorted({ex.n_blocks for ex in candidates})
    name = "_".join(f"L{lv}" for lv in levels) + "_b" + "-".join(map(str, blocks))
    return out / f"solved_{name}.json"


def run_horizons(
    p: PlanningPreset,
    model: LoadedModel,
    test: Sequence[Example],
    out: Path,
    palette: Sequence[str],
    seed: int,
    progress: bool,
) -> dict:
    """Future-decision probes at each longer level, and the one figure comparing their reach."""
    from reasonlens.studies.planning.horizons import plot_horizons

    matrices: dict[int, dict] = {}
    sets: dict[str, dict] = {}
    for level in p.horizon_levels:
        candidates = [ex for ex in test if ex.level == level]
        if not candidates:
            continue
        items, counts = select_analysis_set(
            model, candidates, p.limits.analysis_set, seed, cache=solved_cache(out, candidates)
        )
        sets[f"L{level}"] = counts
        if len(items) < 5:
            continue  # too few solved problems to split into train and test
        same_as_main = level == p.analysis_level and (
            p.analysis_blocks is None or {ex.n_blocks for ex in candidates} == {p.analysis_blocks}
        )
        # the main analysis already probed this level's problems: reuse them
        directory = out if same_as_main and p.limits.probes is None else out / f"horizon_L{level}"
        directory.mkdir(parents=True, exist_ok=True)
        probes = run_probes(
            model, items, directory, progress, palette, p.limits.probe_layer_stride, seed
        )
        matrices[level] = probes["future_matrix_linear"]
        counts["probe_test_problems"] = probes["n_test"]
    if matrices:
        title = f"Look-ahead by plan length, {model.name}"
        plot_horizons(matrices, out / files.HORIZONS_PNG, title)
    return {
        "analysis_sets": sets,
        "future_matrix_linear": {f"L{k}": v for k, v in matrices.items()},
    }
