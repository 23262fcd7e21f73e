"""The directions study's stages and science: per model, reasoning directions per layer,
chosen on validation prompts by their effect, read out per layer, steered and ablated beside
their controls; with two models, CKA, direction cosines and transfer.

The contrast: one question asked two ways (tasks.reasoning): "give the final answer" (needs
the multi-step computation) vs "give the first number in the question" (a copy). One metric
serves every logit read-out: the computation score, logit(answer) - logit(first number) at
the last prompt token. Generation is scored with the checker: solved = the first number the
model writes equals the answer.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from reasonlens.errors import UserError
from reasonlens.runs import Stage
from reasonlens.runs.files import file_sha256
from reasonlens.studies.base import Settings
from reasonlens.studies.directions.presets import PRESETS, DirectionsPreset
from reasonlens.studies.kit import analysis_stage
from reasonlens.tasks.reasoning.contrast import (
    CONTRAST_SETS,
    CONTROL_LINE,
    NUMBER,
    REASONING_LINE,
    read_prompts,
)

SITE = "resid_post"
ROLES = ("model_a", "model_b")
MIN_USER_ITEMS = 8
BEHAVIOURS = ("backtracking",)


# ----------------------------------------------------------------------------- settings


def pair_record(settings: Settings) -> dict | None:
    """The pair.json of --pair DIR (None without --pair), checked: it must name the
    distilled and the RL model."""
    pair = settings.option("pair")
    if not pair:
        return None
    record = Path(pair) / "pair.json"
    if not Path(pair).is_dir():
        raise UserError(f"--pair {pair}: no such directory")
    if not record.is_file():
        raise UserError(f"--pair {pair}: no pair.json (make one with `reasonlens pair`)")
    try:
        data = json.loads(record.read_text())
        str(data["distilled"]), str(data["rl"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{record}: not a pair record (needs 'distilled' and 'rl')") from None
    return data


def models_of(settings: Settings) -> list[tuple[str, str]]:
    """(source, label) of each model: --pair DIR (distilled, RL), --models A [B], or --model."""
    record = pair_record(settings)
    if record is not None:
        return [(str(record["distilled"]), "distilled"), (str(record["rl"]), "RL")]
    given = settings.option("models")
    if given:
        names = [x for x in re.split(r"[,\s]+", str(given)) if x]
        if not 1 <= len(names) <= 2:
            raise UserError(f"--models takes one or two models, got {len(names)}: {given}")
        if len(names) == 2 and names[0] == names[1]:
            raise UserError(f"--models names {names[0]} twice: give two different models")
        return [(n, Path(n).name) for n in names]
    return [(settings.model, Path(settings.model).name)]


def reference_of(settings: Settings) -> tuple[str, str] | None:
    """(source, label) of the model a --pair's two arms both started from (its warm-up, or
    the base when it had none): the third model of the comparison. None without --pair."""
    record = pair_record(settings)
    if record is None:
        return None
    start = record.get("start")
    source = (record.get("models") or {}).get(start) if start else None
    return (str(source), f"start ({start})") if source else None


def contrast_of(settings: Settings) -> str:
    """Which built-in contrast set the reasoning direction is taken from: --contrast, else the
    task a --pair was built on (its models were trained on that task's prompts), else the
    arithmetic word problems."""
    given = settings.option("contrast")
    if given is not None:
        if given not in CONTRAST_SETS:
            raise UserError(f"--contrast {given!r}: valid: {', '.join(CONTRAST_SETS)}")
        return given
    record = pair_record(settings)
    task = record.get("task") if record is not None else None
    return task if task in CONTRAST_SETS else "arithmetic"


def behaviour_of(settings: Settings) -> str | None:
    """Which behaviour direction the study adds: "backtracking" with --behaviour backtracking,
    --chains (a user's annotated chains) or a pair built on the maze task (its models write
    search traces), else None."""
    given = settings.option("behaviour")
    if settings.option("chains"):
        if given not in (None, "backtracking"):
            raise UserError(f"--chains gives backtracking spans, not {given!r}")
        return "backtracking"
    if given is not None:
        if given not in BEHAVIOURS:
            raise UserError(f"--behaviour {given!r}: valid: {', '.join(BEHAVIOURS)}")
        return given
    record = pair_record(settings)
    return "backtracking" if record is not None and record.get("task") == "maze" else None


def parse_layers(spec: str | None, n_layers: int) -> list[int] | None:
    """--layers "8-20" or "4,8,12" as layer indices, each checked against the model."""
    if spec is None or str(spec).strip() == "":
        return None
    out: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", part)
        try:
            chunk = list(range(int(m[1]), int(m[2]) + 1)) if m else [int(part)]
        except ValueError:
            raise UserError(f"--layers {spec!r}: give a range (8-20) or a list (4,8,12)") from None
        if m and int(m[1]) > int(m[2]):
            raise UserError(f"--layers {part!r}: the range is empty")
        out.extend(chunk)
    bad = [x for x in out if not 0 <= x < n_layers]
    if bad:
        raise UserError(f"--layers: layer {bad[0]} is outside the model (layers 0-{n_layers - 1})")
    return sorted(set(out))


def split_items(settings: Settings, p: DirectionsPreset) -> dict[str, Any]:
    """The train/val/test problems (a built-in contrast set, or --prompts FILE)."""
    path = settings.option("prompts")
    if path and settings.option("contrast") is not None:
        raise UserError("--prompts and --contrast both say which prompts to use: give one")
    if path:
        items, dropped = read_prompts(path)
        if len(items) < MIN_USER_ITEMS:
            raise UserError(
                f"--prompts {path}: {len(items)} usable items; the study needs at least "
                f"{MIN_USER_ITEMS} (train, validation and test splits)"
            )
        rng = np.random.default_rng(settings.seed)
        items = [items[i] for i in rng.permutation(len(items))]
        n = len(items)
        n_train = min(p.train, n // 2)
        n_val = min(p.val, (n - n_train) // 2)
        n_test = min(p.test, n - n_train - n_val)
        source = {"kind": "file", "path": str(path), "dropped": dropped}
    else:
        n_train, n_val, n_test = p.train, p.val, p.test
        kind = contrast_of(settings)
        items = CONTRAST_SETS[kind](n_train + n_val + n_test + p.patch_pool, settings.seed)
        source = {"kind": kind, "dropped": 0}
        if kind == "arithmetic":
            source["steps"] = [2, 3]
    end = n_train + n_val + n_test
    splits = {
        "train": items[:n_train],
        "val": items[n_train : n_train + n_val],
        "test": items[n_train + n_val : end],
        # activation patching needs pairs of one token length: built-in problems draw them
        # from a pool of their own; a user's file patches its test problems
        "patch": items[end:] if not path else items[n_train + n_val : end],
    }
    return {"source": source, **{k: [x.to_dict() for x in v] for k, v in splits.items()}}


# ----------------------------------------------------------------------------- prompts per model


@dataclasses.dataclass
class Formatted:
    """The prompts of one split for one tokenizer, and the answer and copy tokens."""

    reasoning: list[list[int]]
    control: list[list[int]]
    answer: list[int]
    copy: list[int]


def _digit_token(tok, text: str, spaced: bool) -> int:
    ids = tok((" " if spaced else "") + text, add_special_tokens=False)["input_ids"]
    for i in ids:
        if tok.decode([i]).strip():
            return int(i)
    raise UserError(f"the tokenizer has no token for {text!r}")


def format_split(tok, items: list[dict]) -> Formatted:
    """Token ids of each prompt (no chat template: the raw question form). A tokenizer that
    writes " 4" as one token gets the prompt ending in "Answer:" and that token; one that
    splits the space gets "Answer: " and the digit's own token."""
    from reasonlens.models.prompts import tokenize

    spaced = len(tok(" 4", add_special_tokens=False)["input_ids"]) == 1
    end = "Answer:" if spaced else "Answer: "

    def ids(question: str, line: str) -> list[int]:
        return tokenize(tok, f"Question: {question}\n{line}\n{end}")

    return Formatted(
        reasoning=[ids(x["question"], x.get("reasoning_line", REASONING_LINE)) for x in items],
        control=[ids(x["question"], x.get("control_line", CONTROL_LINE)) for x in items],
        answer=[_digit_token(tok, x["answer"], spaced) for x in items],
        copy=[_digit_token(tok, x["copy"], spaced) for x in items],
    )


def solved(text: str, answer: str) -> float:
    """The checker: the first number the completion writes equals a numeric answer; the
    first word it writes equals any other (a room, a block colour; case ignored)."""
    if NUMBER.fullmatch(str(answer)):
        found = NUMBER.findall(text.replace(",", ""))
        return float(bool(found) and float(found[0]) == float(answer))
    found = re.findall(r"[A-Za-z0-9_]+", text)
    return float(bool(found) and found[0].lower() == str(answer).lower())


# ----------------------------------------------------------------------------- science


def _capture(model, ids: list[list[int]], batch_size: int):
    from reasonlens.trace.capture import capture
    from reasonlens.trace.inputs import TraceInput

    sites = [f"layers.{x}.{SITE}" for x in range(model.n_layers)]
    inputs = [TraceInput(input_ids=x) for x in ids]
    return capture(model, inputs, sites, positions="last", batch_size=batch_size, progress=False)


def _rows(acts, layer: int):
    import torch

    return acts.get(f"layers.{layer}.{SITE}").to(torch.float64)


def probe_per_layer(dirs, train_r, train_c, val_r, val_c, n_layers: int) -> dict:
    """A difference-in-means probe per layer: project on the train direction, threshold at
    the midpoint of the train means; accuracy on the validation prompts. Control: the same
    with the shuffled-label direction."""
    acc, shuffled = [], []
    for layer in range(n_layers):
        for out, w in (
            (acc, dirs.raw[layer, 0]),
            (shuffled, None if dirs.shuffled is None else dirs.shuffled[0, layer, 0]),
        ):
            if w is None:
                continue
            a, b = _rows(train_r, layer) @ w, _rows(train_c, layer) @ w
            mid = float((a.mean() + b.mean()) / 2)
            sign = 1.0 if float(a.mean()) >= float(b.mean()) else -1.0
            va, vb = _rows(val_r, layer) @ w, _rows(val_c, layer) @ w
            right = ((sign * (va - mid)) > 0).double().sum() + (
                (sign * (vb - mid)) < 0
            ).double().sum()
            out.append(float(right / (len(va) + len(vb))))
    return {"accuracy": acc, "shuffled": shuffled or None}


def logit_lens(model, acts, targets: list[int]) -> dict:
    """Per layer: the rank (0 = top) of each prompt's target token under the logit lens
    (the model's final norm and unembedding on the residual stream)."""
    import torch

    ranks = []
    with torch.inference_mode():
        for layer in range(model.n_layers):
            h = acts.get(f"layers.{layer}.{SITE}").to(model.device, model.dtype)
            logits = model.unembed(model.final_norm(h)).float().cpu()
            t = torch.as_tensor(targets)
            own = logits[torch.arange(len(t)), t]
            ranks.append((logits > own[:, None]).sum(-1).tolist())
    r = np.asarray(ranks, dtype=float)  # [layers, prompts]
    return {
        "median_rank": np.median(r, axis=1).tolist(),
        "top1": (r == 0).mean(axis=1).tolist(),
        "ranks": r.astype(int).tolist(),
    }


def dose_grid(model, direction, layer: int, prompts, p: DirectionsPreset):
    """The steering doses for `direction` at `layer` of `model`, chosen on `prompts` (held
    out from the scored split; the first ``p.grid_prompts`` of them): the preset's KL budget
    rule."""
    from reasonlens.analyses.steering import kl_bounded_alphas

    return kl_bounded_alphas(
        model,
        direction,
        f"layers.{layer}.{SITE}",
        prompts[: p.grid_prompts],
        p.alpha_candidates,
        p.steer_kl_max,
        p.doses,
        chat=False,
        batch_size=p.batch_size,
    )


def control_alphas(alphas: tuple[float, ...], p: DirectionsPreset) -> tuple[float, ...] | None:
    """The doses a sweep's controls run at: every dose, or the two ends (where the verdicts
    are judged) when the preset spares the rest."""
    return None if p.controls_every_dose else (min(alphas), max(alphas))


def layer_range_ablation(model, train, val, test, p: DirectionsPreset, seed: int) -> dict:
    """Mean-ablate windows of consecutive layers (attention and MLP outputs replaced by their
    means over the train prompts); the window that lowers the computation score most on the
    validation prompts is judged on the test prompts against the same ablation's effect on
    the control prompts' own score (copy the first number), paired by item: a window the
    reasoning needs should hurt the computation more than the copy."""
    from reasonlens.analyses.ablation import layer_ablation_effect, layer_means
    from reasonlens.analyses.effects import estimate, logit_difference, mean_interval

    width = max(1, round(model.n_layers / 6))
    starts = list(range(0, model.n_layers, width))
    means = layer_means(model, train.reasoning + train.control, chat=False, batch_size=p.batch_size)
    common = dict(
        layers=starts, mode="mean", window=width, reference_means=means,
        chat=False, batch_size=p.batch_size, resamples=p.resamples, seed=seed,
    )  # fmt: skip
    on_val = layer_ablation_effect(
        model, val.reasoning, logit_difference(val.answer, val.copy), **common
    )
    pick = int(on_val.effect.mean(1).argmin())
    reasoning = layer_ablation_effect(
        model, test.reasoning, logit_difference(test.answer, test.copy), **common
    )
    control = layer_ablation_effect(
        model, test.control, logit_difference(test.copy, test.answer), **common
    )
    specificity = (control.effect[pick] - reasoning.effect[pick]).numpy()[None]
    spec = mean_interval(specificity, p.resamples, seed)
    return {
        "width": width,
        "chosen": {"index": pick, "layers": reasoning.windows[pick]},
        "val_effect": on_val.effect.mean(1).tolist(),
        "reasoning": reasoning.to_dict(),
        "control": control.to_dict(),
        "specificity": estimate(*(x[0] for x in spec[:3])),
        "metric": "reasoning: logit(answer) - logit(first number); control: logit(first "
        "number) - logit(answer); last prompt token",
    }


def aligned_group(f: Formatted, cap: int) -> Formatted | None:
    """The largest set of prompts of one token length whose controls have that length too
    (at most `cap`, in order), or None when no two are: what activation patching takes."""
    lengths: dict[int, list[int]] = {}
    for i, (r, c) in enumerate(zip(f.reasoning, f.control, strict=True)):
        if len(r) == len(c):
            lengths.setdefault(len(r), []).append(i)
    best = max(lengths.values(), key=len, default=[])[:cap]
    if len(best) < 2:
        return None
    return Formatted(
        *([getattr(f, k)[i] for i in best] for k in ("reasoning", "control", "answer", "copy"))
    )


def answer_patching(model, pool: Formatted, layer: int, p: DirectionsPreset, seed: int) -> dict:
    """Activation patching of the last token's residual stream (``resid_pre``, every layer)
    from each reasoning run into its control run (denoising; the two prompts align token by
    token): the computation score logit(answer) - logit(first number) the patch restores, per
    layer. Control: the same patch taken from another problem's reasoning run (a mismatched
    source, of the same length). The claim is read at the direction's chosen layer."""
    from reasonlens.analyses.effects import estimate, logit_difference, mean_interval
    from reasonlens.analyses.patching import activation_patching

    group = aligned_group(pool, p.patch_pairs)
    if group is None:
        return {"not_measurable": "no two prompts align with their controls in token length"}
    n = len(group.reasoning)
    rolled = group.reasoning[1:] + group.reasoning[:1]  # problem i+1's run into i's control
    metric = logit_difference(group.answer, group.copy)
    layers = list(range(model.n_layers))
    runs = [
        activation_patching(
            model, source, group.control, metric, sites=("resid_pre",), layers=layers,
            positions=[-1], directions=("denoise",), batch_size=p.batch_size, control=False,
        )
        for source in (group.reasoning, rolled)
    ]  # fmt: skip
    matched, other = runs
    gain = (matched.values["denoise"] - matched.corrupt[None]).double().numpy()  # [layers, n]
    ctrl = (other.values["denoise"] - matched.corrupt[None]).double().numpy()
    g, c = mean_interval(gain, p.resamples, seed), mean_interval(ctrl, p.resamples, seed)
    diff = mean_interval(gain[layer] - ctrl[layer], p.resamples, seed)
    return {
        "site": "resid_pre",
        "position": "last prompt token",
        "layer": layer,
        "n_pairs": n,
        "tokens": len(group.reasoning[0]),
        "clean_minus_corrupt": float((matched.clean - matched.corrupt).mean()),
        "restored": [estimate(*(x[i] for x in g[:3])) for i in layers],
        "restored_mismatched": [estimate(*(x[i] for x in c[:3])) for i in layers],
        "beyond_mismatched": estimate(*diff[:3]),
        "metric": "logit(answer) - logit(first number) in the control run, patched minus unpatched",
    }


def answer_paths(model, pool: Formatted, layers: list[int], p: DirectionsPreset, seed: int):
    """Path patching (Wang et al.): the reasoning run with one sender, the attention or MLP
    output of a candidate layer, taken from its control run, reaching only the last layer's
    input (every head's output frozen at the reasoning run); the change in the computation
    score per sender. Descriptive: which direct paths carry the score."""
    from reasonlens.analyses.effects import logit_difference
    from reasonlens.analyses.patching import path_patching

    group = aligned_group(pool, p.patch_pairs)
    if group is None:
        return {"not_measurable": "no two prompts align with their controls in token length"}
    last = model.n_layers - 1
    senders = [f"layers.{x}.{c}" for x in layers if x < last for c in ("attn_out", "mlp_out")]
    if not senders:
        return {"not_measurable": "no candidate layer lies before the last layer"}
    result = path_patching(
        model, group.reasoning, group.control, logit_difference(group.answer, group.copy),
        senders, [f"layers.{last}.resid_pre"], batch_size=p.batch_size,
        resamples=p.resamples, seed=seed,
    )  # fmt: skip
    return result.to_dict()


def candidate_layers(n_layers: int, p: DirectionsPreset, given: list[int] | None) -> list[int]:
    if given is not None:
        return given
    if p.candidates is None or p.candidates >= n_layers:
        return list(range(n_layers))
    return sorted({int(round(x)) for x in np.linspace(0, n_layers - 1, p.candidates)})


def addition_profile(model, dirs_shuffled, layers, ids, metric, batch_size) -> np.ndarray:
    """The computation score on `ids` with the shuffled-label direction added at each layer
    (the control for where the real direction's addition effect peaks): [layers, prompts]."""
    import torch

    from reasonlens.analyses.effects import add_rows, apply_metric, last_logits
    from reasonlens.trace.sites import site_ref

    out = []
    for layer in layers:
        vec = dirs_shuffled[layer].to(model.dtype)

        def hooks(lo, hi, vec=vec, layer=layer):
            return [(site_ref(layer, SITE), add_rows(vec[None].expand(hi - lo, -1)))]

        logits = last_logits(model, ids, hooks, batch_size)
        out.append(apply_metric(metric, logits, torch.arange(len(ids))).numpy())
    return np.asarray(out)


def middle_share(effects: np.ndarray, layers: list[int], n_layers: int, resamples: int, seed: int):
    """Share of bootstrap resamples (over prompts) in which the layer with the largest mean
    effect lies in the middle third of the model."""
    from reasonlens.analyses import stats

    lo, hi = n_layers / 3, 2 * n_layers / 3
    idx = stats.resample_indices(effects.shape[1], resamples, seed)
    means = effects[:, idx].mean(-1)  # [layers, resamples]
    peak = np.asarray(layers)[means.argmax(0)]
    return float(((peak >= lo) & (peak < hi)).mean())


class ModelAnalysis:
    """A model's record (to_dict) and its vectors (per_example): what a later stage reads."""

    def __init__(self, record: dict, tensors: dict):
        self.record, self.tensors = record, tensors

    def to_dict(self) -> dict:
        return self.record

    def per_example(self) -> dict:
        return {k: v.contiguous().float() for k, v in self.tensors.items()}


def analyse_model(
    source: str, label: str, items: dict, p: DirectionsPreset, settings: Settings, directory: Path
) -> ModelAnalysis:
    import torch

    from reasonlens.analyses.ablation import ablation_effect
    from reasonlens.analyses.directions import mean_difference
    from reasonlens.analyses.effects import logit_difference
    from reasonlens.analyses.selection import select_direction
    from reasonlens.analyses.steering import alpha_sweep
    from reasonlens.models import load_model

    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(part: str) -> None:  # where a model's time goes, for results.json (budgets)
        nonlocal started
        now = time.perf_counter()
        seconds[part] = round(now - started, 1)
        started = now

    model = load_model(source, device=settings.device)
    model.name = label
    tok, bs, seed = model.tokenizer, p.batch_size, settings.seed
    train, val, test = (format_split(tok, items[k]) for k in ("train", "val", "test"))
    n_layers = model.n_layers
    acts = {
        (k, s): _capture(model, getattr(split, s), bs)
        for k, split in (("train", train), ("val", val), ("test", test))
        for s in ("reasoning", "control")
    }
    sites = [f"layers.{x}.{SITE}" for x in range(n_layers)]
    dirs = mean_difference(
        acts["train", "reasoning"], acts["train", "control"], sites, shuffles=p.shuffles, seed=seed
    )
    raw = dirs.raw[:, 0]  # [layers, d]
    shuffled = dirs.shuffled[0, :, 0] if dirs.shuffled is not None else torch.zeros_like(raw)
    probe = probe_per_layer(
        dirs,
        acts["train", "reasoning"],
        acts["train", "control"],
        acts["val", "reasoning"],
        acts["val", "control"],
        n_layers,
    )
    lens = {
        "reasoning (answer)": logit_lens(model, acts["test", "reasoning"], test.answer),
        "control (first number)": logit_lens(model, acts["test", "control"], test.copy),
    }

    lap("directions, probes, logit lens")
    # selection on the validation split
    layers = candidate_layers(n_layers, p, parse_layers(settings.option("layers"), n_layers))
    cand = mean_difference(
        acts["train", "reasoning"],
        acts["train", "control"],
        [f"layers.{x}.{SITE}" for x in layers],
        shuffles=0,
        seed=seed,
    )
    val_metric = logit_difference(val.answer, val.copy)
    exclude = 0.0 if p.needs_layers else 0.2
    sel = select_direction(
        model,
        cand,
        val_metric,
        val.reasoning,
        val.control,
        kl_max=p.kl_max,
        add_min=None,
        exclude_last=exclude,
        chat=False,
        batch_size=bs,
    )
    chosen, fallback = sel.chosen, None
    if chosen is None:
        chosen = int(torch.argmin(sel.ablation.mean(1)))
        fallback = f"{sel.why}; the lowest ablation score is used, filters ignored"
    layer = cand.candidates()[chosen].layer
    direction, control_dir = raw[layer], shuffled[layer]
    add_effect = (sel.addition - sel.base_add[None]).numpy()
    add_shuffled = addition_profile(model, shuffled, layers, val.control, val_metric, bs)
    add_shuffled = add_shuffled - sel.base_add.numpy()[None]
    concentration = {
        "layers": layers,
        "addition_effect": add_effect.mean(1).tolist(),
        "addition_effect_shuffled": add_shuffled.mean(1).tolist(),
        "ablation_score": sel.ablation.mean(1).tolist(),
        "base_ablation_score": float(sel.base_ablate.mean()),
        "kl": sel.kl.mean(1).tolist(),
        "middle": [n_layers / 3, 2 * n_layers / 3],
        "peak_layer": int(layers[int(add_effect.mean(1).argmax())]),
        "share_peak_in_middle": middle_share(add_effect, layers, n_layers, p.resamples, seed),
        "share_peak_in_middle_shuffled": middle_share(
            add_shuffled, layers, n_layers, p.resamples, seed
        ),
    }

    lap("layer selection")
    # steering and ablation on the test split, at doses chosen on the validation prompts
    grid = dose_grid(model, direction, layer, val.control, p)
    sweep = alpha_sweep(
        model,
        test.reasoning,
        direction,
        f"layers.{layer}.{SITE}",
        grid.alphas,
        behaviour=lambda _t: 0.0,
        control_prompts=test.control,
        max_new_tokens=p.max_new_tokens,
        n_random=p.n_random,
        controls={"shuffled labels": control_dir},
        seed=seed,
        chat=False,
        batch_size=bs,
        resamples=p.resamples,
        control_alphas=control_alphas(grid.alphas, p),
    )
    answers = [x["answer"] for x in items["test"]]
    sweep = sweep.rescored(lambda i, text: solved(text, answers[i]))
    top = max(grid.alphas)
    steer = sweep.to_dict()
    steer["metric"] = "solved (checker: the first number or word written = the answer)"
    steer["dose_grid"] = grid.to_dict()
    steer["versus_random_at_max_alpha"] = dataclasses.asdict(sweep.versus_random(top, "increase"))
    steer["examples"] = {
        str(a): sweep.texts[0][i][:3]
        for i, a in enumerate(sweep.alphas)
        if a in (min(grid.alphas), 0.0, top)
    }
    lap("steering")
    ablation = ablation_effect(
        model,
        direction,
        test.reasoning,
        logit_difference(test.answer, test.copy),
        control_prompts=test.control,
        n_random=p.n_random,
        controls={"shuffled labels": control_dir},
        seed=seed,
        chat=False,
        batch_size=bs,
        resamples=p.resamples,
    )
    abl = ablation.to_dict()
    abl["metric"] = "computation score: logit(answer) - logit(first number), last prompt token"
    abl["versus_random"] = dataclasses.asdict(ablation.versus_random("decrease"))
    sweep.plot(directory / "steering.png", f"Steering at layer {layer}: {label}")
    ranges = layer_range_ablation(model, train, val, test, p, seed)
    lap("ablation")
    pool = format_split(tok, items.get("patch") or items["test"])
    patching = answer_patching(model, pool, layer, p, seed)
    if p.path_patching:
        patching["paths"] = answer_paths(model, pool, layers, p, seed)
    lap("patching")
    behaviour, tensors = None, {"raw": raw, "shuffled": shuffled}
    if behaviour_of(settings) == "backtracking":
        from reasonlens.studies.directions.behaviour import behaviour_directions, data_for

        data = data_for(tok, p, settings.option("chains"), seed)
        behaviour, found = behaviour_directions(
            model, p, layers, val.control, test.control, data, seed, directory
        )
        # the chosen direction and its random-window control, for transfer to another model
        tensors["behaviour"] = torch.stack([found.direction, found.control])
    record = {
        "label": label,
        "source": source,
        "n_layers": n_layers,
        "d": model.d_model,
        "direction_norm": dirs.norms[:, 0].tolist(),
        "direction_norm_shuffled": None
        if dirs.shuffled is None
        else dirs.shuffled_norms()[0, :, 0].tolist(),
        "probe": probe,
        "logit_lens": {k: {x: v[x] for x in ("median_rank", "top1")} for k, v in lens.items()},
        "selection": {**sel.to_dict(), "fallback": fallback},
        "chosen": {
            "layer": layer,
            "site": f"layers.{layer}.{SITE}",
            "norm": float(direction.norm()),
        },
        "concentration": concentration,
        "steering": steer,
        "ablation": abl,
        "layer_ablation": ranges,
        "patching": patching,
        "behaviour": behaviour,
    }
    if behaviour is not None:
        lap("backtracking direction")
    record["seconds"] = seconds
    return ModelAnalysis(record, tensors)


def _directions(acts: tuple, layer: int, idx):
    """The difference in means (reasoning - control) at `layer`, and its bootstrap replicates
    on the resample indices `idx` [resamples, n] (paired across models by sharing them)."""
    r, c = (_rows(x, layer) for x in acts)
    return r.mean(0) - c.mean(0), r[idx].mean(1) - c[idx].mean(1)


def judged_layer(records: list[dict], n_layers: int) -> tuple[int, str]:
    """Where the three-model claim is judged: the first arm whose layer was chosen on the
    validation prompts by the selection rule (not by its fallback), else the middle layer."""
    for r in records:
        if not r["selection"].get("fallback"):
            return r["chosen"]["layer"], f"{r['label']}'s layer, chosen on validation prompts"
    return n_layers // 2, "the middle layer (neither arm's selection passed its filters)"


def three_model_divergence(
    reference, model, items, train, acts, judged, n_layers, idx, p, settings
) -> dict:
    """How far apart the two arms' reasoning directions are, against how far each moved from
    the model both started from: per layer, the divergences 1 - cos (paired bootstrap over the
    train prompts) and the difference between the arms' divergence and the larger of the two
    start-to-arm ones. The layer judged is `judged` (see :func:`judged_layer`). The noise
    floor beside it: each model's split-half divergence (its
    direction from one half of the prompts against the other half)."""
    import torch
    from torch.nn.functional import cosine_similarity

    from reasonlens.analyses import stats

    source, label = reference
    layer, rule = judged
    mine = format_split(model.tokenizer, items)
    if mine.reasoning != train.reasoning or mine.control != train.control:
        why = f"{label} tokenizes the prompts differently"
        return {"reference": label, "not_measurable": why}
    ref = (
        _capture(model, train.reasoning, p.batch_size),
        _capture(model, train.control, p.batch_size),
    )
    n = min(n_layers, model.n_layers)
    gen = torch.Generator().manual_seed(settings.seed)
    half = torch.randperm(len(train.reasoning), generator=gen)
    halves = (half[: len(half) // 2], half[len(half) // 2 :])

    def div(u, v):
        return 1 - cosine_similarity(u, v, dim=-1)

    rows = []
    for x in range(n):
        (da, sa), (db, sb), (dr, sr) = (_directions(m, x, idx) for m in (*acts, ref))
        arms, a_start, b_start = div(da, db), div(da, dr), div(db, dr)
        boot = (div(sa, sb) - torch.maximum(div(sa, sr), div(sb, sr))).double().numpy()
        lo, hi = stats.percentile_interval(boot)
        split = []
        for m in (*acts, ref):
            h0, h1 = (_directions(m, x, h[None])[1][0] for h in halves)
            split.append(float(div(h0, h1)))
        rows.append(
            {
                "layer": x,
                "arms": float(arms),
                "first_arm_to_start": float(a_start),
                "second_arm_to_start": float(b_start),
                "difference": float(arms - torch.maximum(a_start, b_start)),
                "low": float(lo),
                "high": float(hi),
                "split_half": float(np.mean(split)),
            }
        )
    return {
        "reference": label,
        "source": source,
        "layer": layer,
        "layer_rule": rule,
        "per_layer": rows,
        "interval": f"95% percentile bootstrap over the {len(train.reasoning)} train problems, "
        "paired across the three models",
    }


def compare_models(
    models: list[tuple[str, str]],
    records: list[dict],
    vectors: list[dict],
    items: dict,
    p: DirectionsPreset,
    settings: Settings,
) -> dict:
    """CKA per layer pair, direction cosines per layer (bootstrap over train prompts, paired
    across the models), transfer of each model's chosen direction to the other."""
    import torch

    from reasonlens.analyses import stats
    from reasonlens.analyses.similarity import cka_matrix
    from reasonlens.analyses.steering import alpha_sweep
    from reasonlens.models import load_model

    loaded = []
    for source, label in models:
        m = load_model(source, device=settings.device)
        m.name = label
        loaded.append(m)
    a, b = loaded
    out: dict[str, Any] = {"models": [label for _, label in models]}
    fa, fb = (format_split(m.tokenizer, items["train"]) for m in loaded)
    same_tokens = fa.reasoning == fb.reasoning and fa.control == fb.control
    acts = [
        (_capture(m, f.reasoning, p.batch_size), _capture(m, f.control, p.batch_size))
        for m, f in ((a, fa), (b, fb))
    ]
    if not same_tokens:
        out["cka"] = {"not_measurable": "the two models tokenize the prompts differently"}
    else:
        from reasonlens.trace.capture import Activations

        def both(r, c):
            data = {s: torch.cat([r.get(s), c.get(s)]) for s in r.sites}
            offsets = torch.cat([r.row_offsets, c.row_offsets[1:] + r.row_offsets[-1]])
            positions = torch.cat([r.positions(), c.positions()])
            return Activations(
                list(r.sites), data, offsets, positions, r.tokens + c.tokens, dict(r.meta)
            )

        try:
            cka = cka_matrix(both(*acts[0]), both(*acts[1]), site=SITE, seed=settings.seed)
            out["cka"] = cka.to_dict()
        except UserError as err:
            out["cka"] = {"not_measurable": str(err)}
    if a.d_model != b.d_model or not same_tokens:
        why = "different widths" if a.d_model != b.d_model else "different tokens"
        out["cosines"] = {"not_measurable": f"the two models have {why}"}
        out["transfer"] = {"not_measurable": f"the two models have {why}"}
        return out
    # cosine of the two models' directions at each common layer, paired bootstrap over prompts
    n = min(a.n_layers, b.n_layers)
    idx = torch.as_tensor(stats.resample_indices(len(fa.reasoning), p.resamples, settings.seed))
    cos, low, high, shuffled = [], [], [], []
    for layer in range(n):
        da, sa = _directions(acts[0], layer, idx)
        db, sb = _directions(acts[1], layer, idx)
        cos.append(float(torch.nn.functional.cosine_similarity(da, db, dim=0)))
        boot = torch.nn.functional.cosine_similarity(sa, sb, dim=-1).numpy()
        lo_, hi_ = stats.percentile_interval(boot)
        low.append(float(lo_))
        high.append(float(hi_))
        shuffled.append(
            float(
                torch.nn.functional.cosine_similarity(
                    vectors[0]["shuffled"][layer].double(),
                    vectors[1]["shuffled"][layer].double(),
                    dim=0,
                )
            )
        )
    out["cosines"] = {
        "layers": list(range(n)),
        "cosine": cos,
        "low": low,
        "high": high,
        "shuffled_labels": shuffled,
        "random_95": 1.959964 / float(np.sqrt(a.d_model)),
        "interval": f"95% percentile bootstrap over the {len(fa.reasoning)} train problems, "
        "paired across the models",
    }
    reference = reference_of(settings)
    start = None
    if reference is not None:
        start = load_model(reference[0], device=settings.device)
        start.name = reference[1]
        out["three_models"] = three_model_divergence(
            reference, start, items["train"], fa, acts, judged_layer(records, n), n, idx, p,
            settings,
        )  # fmt: skip
    # transfer: each model's chosen direction steering the other at the matching depth
    test = [format_split(m.tokenizer, items["test"]) for m in loaded]
    val = [format_split(m.tokenizer, items["val"]) for m in loaded]
    answers = [x["answer"] for x in items["test"]]
    transfer = {}
    for i, j in ((0, 1), (1, 0)):
        src_layer = records[i]["chosen"]["layer"]
        layer = matching_layer(src_layer, loaded[i], loaded[j])
        vector = vectors[i]["raw"][src_layer].double()
        grid = dose_grid(loaded[j], vector, layer, val[j].control, p)
        sweep = alpha_sweep(
            loaded[j],
            test[j].reasoning,
            vector,
            f"layers.{layer}.{SITE}",
            grid.alphas,
            behaviour=lambda _t: 0.0,
            control_prompts=test[j].control,
            max_new_tokens=p.max_new_tokens,
            n_random=p.n_random,
            seed=settings.seed,
            chat=False,
            batch_size=p.batch_size,
            resamples=p.resamples,
            control_alphas=control_alphas(grid.alphas, p),
        )
        sweep = sweep.rescored(lambda k, text: solved(text, answers[k]))
        key = f"{models[i][1]} -> {models[j][1]}"
        transfer[key] = {
            **sweep.to_dict(),
            "source_layer": src_layer,
            "target_layer": layer,
            "dose_grid": grid.to_dict(),
            "versus_random_at_max_alpha": dataclasses.asdict(
                sweep.versus_random(max(grid.alphas), "increase")
            ),
        }
    out["transfer"] = transfer
    if all(r.get("behaviour") for r in records):
        out["behaviour_transfer"] = behaviour_transfer(
            models, loaded, start, records, vectors, items, p, settings
        )
    return out


def matching_layer(layer: int, source, target) -> int:
    """The target's layer at the same relative depth as `layer` in the source."""
    return min(target.n_layers - 1, round(layer * target.n_layers / source.n_layers))


def behaviour_transfer(
    models: list[tuple[str, str]],
    loaded: list,
    start,
    records: list[dict],
    vectors: list[dict],
    items: dict,
    p: DirectionsPreset,
    settings: Settings,
) -> dict:
    """Ward et al.'s transfer test: a backtracking direction taken from one model steering
    another. Ward et al. found that a base model's direction makes the distilled model
    backtrack but not the base itself. With a pair, the analogue: the direction of the model
    both arms started from (`start`) steers each arm and the start model; with two models,
    each model's direction steers the other (how it steers its own model is in that model's
    record). Each at the target's layer of matching depth, at the doses the target's KL
    budget allows, beside random directions of equal norm and the source's random-window
    direction."""
    from reasonlens.studies.directions.behaviour import (
        BehaviourDirection,
        behaviour_direction,
        behaviour_steering,
        data_for,
    )

    chains, seed = settings.option("chains"), settings.seed
    labels = [label for _, label in models]
    out: dict[str, Any] = {}
    if start is not None:
        if start.d_model != loaded[0].d_model:
            why = f"the start model's width {start.d_model} is not the arms' {loaded[0].d_model}"
            return {"not_measurable": why}
        layers = records[0]["behaviour"]["layers"]
        data = data_for(start.tokenizer, p, chains, seed)
        found = behaviour_direction(start, p, layers, data, seed)
        out["source"] = {"model": start.name, **found.record}
        plan = [(start.name, start, found, [start, *loaded])]
    else:
        if not all("behaviour" in v for v in vectors):
            why = "the models' stages were computed before their directions were kept; re-run"
            return {"not_measurable": why}
        plan = []
        for i, j in ((0, 1), (1, 0)):
            v = vectors[i]["behaviour"]
            record = records[i]["behaviour"]
            found = BehaviourDirection(record["chosen"]["layer"], v[0], v[1], record)
            plan.append((labels[i], loaded[i], found, [loaded[j]]))
    sweeps = {}
    for label, source, found, targets in plan:
        for target in targets:
            layer = matching_layer(found.layer, source, target)
            val, test = (format_split(target.tokenizer, items[k]) for k in ("val", "test"))
            data = data_for(target.tokenizer, p, chains, seed)
            steering, _ = behaviour_steering(
                target, found, layer, val.control, test.control, data, p, seed
            )
            sweeps[f"{label} -> {target.name}"] = {
                **steering,
                "source": label,
                "target": target.name,
                "own": target is source,
                "source_layer": found.layer,
                "target_layer": layer,
            }
    out["sweeps"] = sweeps
    return out


# ----------------------------------------------------------------------------- stages


def _fingerprints(settings: Settings) -> dict[str, str]:
    if settings.model_weights is None:  # re-rendering a report: nothing runs
        return {}
    from reasonlens.models.fingerprint import weights_fingerprint
    from reasonlens.models.loading import check_model

    return {
        role: weights_fingerprint(check_model(source).path)
        for role, (source, _) in zip(ROLES, models_of(settings), strict=False)
    }


def stages(p: DirectionsPreset, settings: Settings) -> list[Stage]:
    models = models_of(settings)
    weights = _fingerprints(settings)
    common = {
        "preset": p.to_dict(),
        "seed": settings.seed,
        "layers": settings.option("layers"),
        "behaviour": behaviour_of(settings),
        # a chains file is recorded by its content: a stage recomputes when the file changes
        "chains": file_sha256(chains) if (chains := settings.option("chains")) else None,
        "contrast": None if settings.option("prompts") else contrast_of(settings),
    }

    def prompts(directory: Path, upstream: dict) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        data = split_items(settings, p)
        (directory / "prompts.json").write_text(json.dumps(data, indent=1))

    def read_prompts_stage(directory: Path) -> dict:
        return json.loads((directory / "prompts.json").read_text())

    out = [
        Stage(
            "prompts",
            {**common, "prompts": settings.option("prompts")},
            prompts,
            read_prompts_stage,
        )
    ]
    for role, (source, label) in zip(ROLES, models, strict=False):

        def compute(directory: Path, upstream: dict, source=source, label=label):
            return analyse_model(source, label, upstream["prompts"], p, settings, directory)

        inputs = {**common, "model": source, "weights": weights.get(role)}
        out.append(analysis_stage(role, inputs if weights else {}, compute))
    if len(models) == 2:

        def compare(directory: Path, upstream: dict) -> dict:
            from reasonlens.analyses.result import load_per_example

            vectors = []
            for role in ROLES:
                arrays = load_per_example(directory.parent / role, role)
                vectors.append({k: __import__("torch").as_tensor(v) for k, v in arrays.items()})
            records = [upstream[r] for r in ROLES]
            return compare_models(models, records, vectors, upstream["prompts"], p, settings)

        inputs = {**common, "weights": [weights.get(r) for r in ROLES]}
        reference = reference_of(settings)
        if reference is not None and weights:
            from reasonlens.models.fingerprint import weights_fingerprint
            from reasonlens.models.loading import check_model

            inputs["reference"] = weights_fingerprint(check_model(reference[0]).path)
        out.append(analysis_stage("compare", inputs if weights else {}, compare))
    return out


__all__ = ["PRESETS", "stages", "models_of", "parse_layers", "split_items"]
