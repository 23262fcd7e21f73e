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

import re
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class BehaviourData:
    """Where a behaviour direction comes from and how its steering is scored: token ids and
    backtrack start tokens of the training and validation chains, the held-out prompts that
    are steered, and the score of a steered completion (prompt index, text)."""

    source: str
    train: tuple[list[list[int]], list[list[int]]]
    val: tuple[list[list[int]], list[list[int]]]
    prompts: list[Any]
    score: Callable[[int, str], float]
    metric: str
    gold: float | None  # the behaviour in the held-out gold chains, per chain (None: unknown)
    n: dict[str, int]


def maze_data(tokenizer, p, seed: int) -> BehaviourData:
    """Gold maze search traces, teacher-forced as the pair trains them; steered on held-out
    maze prompts, scored by the maze checker (backtracks per chain)."""
    from reasonlens.tasks.backtracking.traces import prompt_text

    traces = maze_traces(p.maze_train, p.maze_val, p.maze_test, p.maze_rooms, seed)
    test = traces["test"]
    mazes = [t.maze for t in test]
    return BehaviourData(
        source="gold maze search traces",
        train=encode_traces(tokenizer, traces["train"]),
        val=encode_traces(tokenizer, traces["val"]),
        prompts=[prompt_text(m) for m in mazes],
        score=lambda i, text: float(count_backtracks([text], [mazes[i]])[0]),
        metric="backtracks per chain (the maze checker)",
        gold=float(np.mean([len(t.backtracks) for t in test])),
        n={k: len(v) for k, v in traces.items()},
    )


#: Ward et al.'s metric for free text: "Wait" and "Hmm" per 100 whitespace words.
BACKTRACK_WORDS = re.compile(r"\b(wait|hmm)\b", re.IGNORECASE)


def backtrack_words(text: str) -> float:
    """'Wait' and 'Hmm' (any case) per 100 whitespace-separated words; 0 for no words."""
    words = len(text.split())
    return 100.0 * len(BACKTRACK_WORDS.findall(text)) / words if words else 0.0


def chains_data(tokenizer, path: str, seed: int) -> BehaviourData:
    """A user's annotated chains (either layout of ``read_chains``): backtracking spans to
    token starts with the tokenizer's chat template (raw text when it has none); the chains
    split 50/20/30 (seeded) into training, validation and test; the test chains' problems are
    steered and scored by Ward et al.'s 'Wait'/'Hmm' per 100 words."""
    from reasonlens.tasks.backtracking import read_chains
    from reasonlens.tasks.backtracking.labels import label_chains, render_prompt

    template = "chat" if getattr(tokenizer, "chat_template", None) else "raw"
    chains = read_chains(path)
    rows = label_chains(tokenizer, chains, "backtracking", template=template)
    order = np.random.default_rng(seed).permutation(len(rows))
    n_train, n_val = len(rows) // 2, len(rows) // 5
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }

    def starts(i: int) -> list[int]:
        lab = rows[i].labels
        return [t for t in range(len(lab)) if lab[t] and (t == 0 or not lab[t - 1])]

    for name in ("train", "val"):
        if not any(starts(int(i)) for i in parts[name]):
            raise UserError(
                f"--chains {path}: the {name} split ({len(parts[name])} of {len(rows)} chains) "
                "has no backtracking span; give more chains with backtracking spans"
            )
    if not len(parts["test"]):
        raise UserError(f"--chains {path}: {len(rows)} chains leave none to steer; add chains")

    def split(name: str):
        idx = [int(i) for i in parts[name]]
        return [list(rows[i].input_ids) for i in idx], [starts(i) for i in idx]

    test = [chains[int(i)] for i in parts["test"]]
    gold = [backtrack_words(c.text) for c in test]
    return BehaviourData(
        source=f"annotated chains {path} (template {template})",
        train=split("train"),
        val=split("val"),
        prompts=[render_prompt(tokenizer, c.problem, template) for c in test],
        score=lambda _i, text: backtrack_words(text),
        metric="'Wait'/'Hmm' per 100 words",
        gold=float(np.mean(gold)),
        n={k: len(v) for k, v in parts.items()},
    )


def data_for(tokenizer, p, chains: str | None, seed: int) -> BehaviourData:
    """The behaviour data under one model's tokenizer: a user's chains when given, else the
    gold maze traces."""
    return chains_data(tokenizer, chains, seed) if chains else maze_data(tokenizer, p, seed)


@dataclass
class BehaviourDirection:
    """A model's backtracking direction at the layer chosen on validation chains, its control
    (the random-window direction at that layer) and the record of how it was chosen."""

    layer: int
    direction: Any  # torch tensor [d]
    control: Any  # torch tensor [d]
    record: dict[str, Any]


def behaviour_direction(model, p, layers: list[int], data: BehaviourData, seed: int):
    """The window contrast at each candidate layer from the training chains; the layer whose
    projection best separates the validation chains' windows (AUC)."""
    from reasonlens.analyses.directions import window_contrast
    from reasonlens.trace.capture import capture
    from reasonlens.trace.inputs import TraceInput

    width = p.window
    sites = [f"layers.{x}.{SITE}" for x in layers]

    def acts_of(ids):
        inputs = [TraceInput(input_ids=tuple(x)) for x in ids]
        return capture(
            model, inputs, sites, positions="all", batch_size=p.batch_size, progress=False
        )

    train_ids, train_starts = data.train
    train = acts_of(train_ids)
    spans = [[t for t in s if t >= width] for s in train_starts]
    if not any(spans):
        raise UserError(f"no backtrack starts at least {width} tokens into its chain")
    dirs = window_contrast(train, spans, -width, width, sites, shuffles=1, seed=seed)
    val_ids, val_starts = data.val
    val = acts_of(val_ids)
    masks = window_mask([len(x) for x in val_ids], val_starts, width)
    raw = dirs.raw[:, 0]  # [layers, d]
    shuffled = dirs.shuffled[0, :, 0]
    auc = [separation_auc(val, x, raw[i], masks) for i, x in enumerate(layers)]
    auc_shuffled = [separation_auc(val, x, shuffled[i], masks) for i, x in enumerate(layers)]
    pick = int(np.nanargmax(auc))
    layer = layers[pick]
    record = {
        "source": data.source,
        "window": width,
        "layers": layers,
        "n_traces": data.n,
        "n_windows": int(sum(len(s) for s in spans)),
        "direction_norm": dirs.norms[:, 0].tolist(),
        "val_auc": auc,
        "val_auc_random_windows": auc_shuffled,
        "chosen": {"layer": layer, "norm": float(raw[pick].norm()), "val_auc": auc[pick]},
        "gold_backtracks_per_chain": data.gold,
    }
    return BehaviourDirection(layer, raw[pick], shuffled[pick], record)


def behaviour_steering(
    model, found: BehaviourDirection, layer: int, val_control, control_prompts, data, p, seed
):
    """Steer `model` along a backtracking direction at `layer` on the held-out prompts, at
    doses chosen by their KL on `val_control`, and count the behaviour: a dose-response beside
    random directions of equal norm and the random-window direction. The direction may come
    from another model (transfer)."""
    import dataclasses

    from reasonlens.analyses.steering import alpha_sweep
    from reasonlens.studies.directions.stages import control_alphas, dose_grid

    grid = dose_grid(model, found.direction, layer, val_control, p)
    sweep = alpha_sweep(
        model,
        data.prompts,
        found.direction,
        f"layers.{layer}.{SITE}",
        grid.alphas,
        behaviour=lambda _t: 0.0,
        control_prompts=control_prompts,
        max_new_tokens=p.chain_tokens,
        n_random=p.n_random,
        controls={"random windows": found.control},
        seed=seed,
        chat=False,
        batch_size=p.generate_batch,
        resamples=p.resamples,
        control_alphas=control_alphas(grid.alphas, p),
    )
    sweep = sweep.rescored(data.score)
    top = max(grid.alphas)
    out = sweep.to_dict()
    out["metric"] = data.metric
    out["dose_grid"] = grid.to_dict()
    out["monotone_share"] = sweep.monotone_share("increase")
    out["monotone_share_random"] = sweep.monotone_share("increase", sweep.random)
    out["versus_random_at_max_alpha"] = dataclasses.asdict(sweep.versus_random(top, "increase"))
    out["examples"] = {str(a): sweep.texts[0][i][:2] for i, a in enumerate(sweep.alphas)}
    return out, sweep


def behaviour_directions(
    model,
    p,
    layers: list[int],
    val_control,
    control_prompts,
    data: BehaviourData,
    seed: int,
    directory,
) -> tuple[dict[str, Any], BehaviourDirection]:
    """The backtracking direction of one model, its layer, and its steering dose-response
    (doses chosen by their KL on `val_control`, reported on `control_prompts`)."""
    found = behaviour_direction(model, p, layers, data, seed)
    steering, sweep = behaviour_steering(
        model, found, found.layer, val_control, control_prompts, data, p, seed
    )
    title = f"Backtracking direction at layer {found.layer}"
    sweep.plot(directory / "steering_backtracking.png", title)
    return {**found.record, "steering": steering}, found
