"""Behaviour directions (Ward et al. 2025; Venhoff et al. 2025; spec B2/B3) on the maze task.

Search traces with exact backtracking spans (the maze generator's, which the checker
reproduces) go through the model teacher-forced, as the pair's models were trained on them
(the plain prompt, then the completion). Per candidate layer, the direction is the mean
residual over a window of tokens just before each backtrack minus the mean over every token
(:func:`~reasonlens.analyses.directions.window_contrast`; its control: windows at random
starts). The layer is chosen on validation traces: the AUC with which the projection separates
the tokens in those windows from the rest. Then the chosen direction steers the model on
held-out maze prompts, and the checker counts backtracks per chain: a dose-response with
bootstrap CIs beside random directions of equal norm and the random-window direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reasonlens.errors import UserError

SITE = "resid_post"


def maze_traces(n_train: int, n_val: int, n_test: int, rooms: tuple[int, int], seed: int):
    """Train/val/test traces of distinct mazes, each with at least one backtrack (a trace
    with none has no window to contrast). A stream of its own (seed offset), so that the
    mazes are not drawn in the pair's order."""
    from reasonlens.tasks.backtracking.traces import TraceConfig, generate_traces

    config = TraceConfig(rooms=rooms, min_backtracks=1)
    traces = generate_traces(n_train + n_val + n_test, seed + 7919, config)
    return {
        "train": traces[:n_train],
        "val": traces[n_train : n_train + n_val],
        "test": traces[n_train + n_val :],
    }


def encode_traces(tokenizer, traces) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of prompt + completion, and the token index where each backtrack starts (the
    token holding its first character)."""
    from reasonlens.tasks.backtracking.traces import to_record

    ids, starts = [], []
    for i, trace in enumerate(traces):
        rec = to_record(trace, f"t{i}")
        text = rec["prompt"] + rec["completion"]
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
        offsets = enc["offset_mapping"]
        shift = len(rec["prompt"])
        first = []
        for span in rec["spans"]:
            char = shift + span["start"]
            tok = next(
                (k for k, (a, b) in enumerate(offsets) if a <= char < b and b > a),
                None,
            )
            if tok is None:  # the character sits in whitespace merged into the next token
                tok = next(k for k, (a, _b) in enumerate(offsets) if a >= char)
            first.append(tok)
        ids.append(list(enc["input_ids"]))
        starts.append(first)
    return ids, starts


def window_mask(lengths: list[int], starts: list[list[int]], width: int) -> list[np.ndarray]:
    """Per trace, True at the tokens inside a window of `width` before a backtrack."""
    out = []
    for n, s in zip(lengths, starts, strict=True):
        m = np.zeros(n, dtype=bool)
        for t in s:
            m[max(0, t - width) : t] = True
        out.append(m)
    return out


def separation_auc(acts, layer: int, direction, masks: list[np.ndarray]) -> float:
    """AUC of the projection on `direction` for tokens in windows (1) against the rest (0)."""
    from sklearn.metrics import roc_auc_score

    rows = acts.get(f"layers.{layer}.{SITE}").double().numpy() @ direction.double().numpy()
    labels = np.concatenate(masks)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, rows))


def count_backtracks(texts: list[str], mazes) -> np.ndarray:
    """The checker's backtracks per chain (a chain it cannot read counts what it read)."""
    from reasonlens.tasks.backtracking import check_trace

    return np.array([check_trace(m, t).n_backtracks for t, m in zip(texts, mazes, strict=True)])


def behaviour_directions(
    model, p, layers: list[int], val_control, control_prompts, settings, directory
) -> dict[str, Any]:
    """The backtracking direction of one model, its layer, and its steering dose-response
    (doses chosen by their KL on `val_control`, reported on `control_prompts`)."""
    import dataclasses

    from reasonlens.analyses.directions import window_contrast
    from reasonlens.analyses.steering import alpha_sweep
    from reasonlens.studies.directions.stages import dose_grid
    from reasonlens.tasks.backtracking.traces import prompt_text
    from reasonlens.trace.capture import capture
    from reasonlens.trace.inputs import TraceInput

    seed, width = settings.seed, p.window
    traces = maze_traces(p.maze_train, p.maze_val, p.maze_test, p.maze_rooms, seed)
    sites = [f"layers.{x}.{SITE}" for x in layers]
    encoded = {k: encode_traces(model.tokenizer, v) for k, v in traces.items() if k != "test"}

    def acts_of(split: str):
        ids, _ = encoded[split]
        inputs = [TraceInput(input_ids=tuple(x)) for x in ids]
        return capture(
            model, inputs, sites, positions="all", batch_size=p.batch_size, progress=False
        )

    train_ids, train_starts = encoded["train"]
    train = acts_of("train")
    spans = [[t for t in s if t >= width] for s in train_starts]
    if not any(spans):
        raise UserError(f"no backtrack starts at least {width} tokens into its trace")
    dirs = window_contrast(train, spans, -width, width, sites, shuffles=1, seed=seed)
    val_ids, val_starts = encoded["val"]
    val = acts_of("val")
    masks = window_mask([len(x) for x in val_ids], val_starts, width)
    raw = dirs.raw[:, 0]  # [layers, d]
    shuffled = dirs.shuffled[0, :, 0]
    auc = [separation_auc(val, x, raw[i], masks) for i, x in enumerate(layers)]
    auc_shuffled = [separation_auc(val, x, shuffled[i], masks) for i, x in enumerate(layers)]
    pick = int(np.nanargmax(auc))
    layer = layers[pick]
    direction, control = raw[pick], shuffled[pick]

    test = traces["test"]
    prompts = [prompt_text(t.maze) for t in test]
    grid = dose_grid(model, direction, layer, val_control, p)
    sweep = alpha_sweep(
        model,
        prompts,
        direction,
        f"layers.{layer}.{SITE}",
        grid.alphas,
        behaviour=lambda _t: 0.0,
        control_prompts=control_prompts,
        max_new_tokens=p.chain_tokens,
        n_random=p.n_random,
        controls={"random windows": control},
        seed=seed,
        chat=False,
        batch_size=p.generate_batch,
        resamples=p.resamples,
    )
    mazes = [t.maze for t in test]
    sweep = sweep.rescored(lambda i, text: count_backtracks([text], [mazes[i]])[0])
    top = max(grid.alphas)
    out = sweep.to_dict()
    out["metric"] = "backtracks per chain (the maze checker)"
    out["dose_grid"] = grid.to_dict()
    out["monotone_share"] = sweep.monotone_share("increase")
    out["monotone_share_random"] = sweep.monotone_share("increase", sweep.random)
    out["versus_random_at_max_alpha"] = dataclasses.asdict(sweep.versus_random(top, "increase"))
    out["examples"] = {str(a): sweep.texts[0][i][:2] for i, a in enumerate(sweep.alphas)}
    sweep.plot(directory / "steering_backtracking.png", f"Backtracking direction at layer {layer}")
    return {
        "window": width,
        "layers": layers,
        "n_traces": {k: len(v) for k, v in traces.items()},
        "n_windows": int(sum(len(s) for s in spans)),
        "direction_norm": dirs.norms[:, 0].tolist(),
        "val_auc": auc,
        "val_auc_random_windows": auc_shuffled,
        "chosen": {"layer": layer, "norm": float(direction.norm()), "val_auc": auc[pick]},
        "gold_backtracks_per_chain": float(np.mean([len(t.backtracks) for t in test])),
        "steering": out,
    }
