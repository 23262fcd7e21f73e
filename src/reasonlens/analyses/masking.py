"""Key-masking impact (Men et al. 2024 §6.2): how much does each earlier group of tokens help?

For a target (position N, gold token) and groups of token positions G_1..G_m (e.g. the colour
tokens of each earlier plan step), every group is hidden in every layer, giving
y' = p(gold at N); then all groups but G_i are hidden, giving y''_i; impact_i = y''_i - y'.

Two ways to hide a token (`method`):

* ``zero_keys`` (the paper's): its attention keys are zeroed. A zero key gives a zero
  attention logit, a *soft* mask: the token still gets weight exp(0), which can exceed what
  its real logit gave it, and its value is still read (`reasonlens.trace.zero_keys`).
* ``knockout`` (Geva et al. 2023): every later query's attention to it is cut before the
  softmax (the most negative logit), so it gets exactly zero weight
  (`reasonlens.trace.knockout_mask`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.cache_utils import Cache

from reasonlens.analyses.common import (
    Target,
    check_inputs,
    check_position,
    length_batches,
)
from reasonlens.errors import UserError, one_of
from reasonlens.models.loading import LoadedModel
from reasonlens.models.prompts import pad_batch
from reasonlens.progress import Progress
from reasonlens.runs.files import jsonable
from reasonlens.trace.interventions import intervene, knockout_mask, zero_keys

METHODS = {
    "zero_keys": "keys of the groups zeroed in every listed layer; impact = y''_i - y'",
    "knockout": "attention to the groups from every later query cut before the softmax "
    "(exactly zero weight) in every layer; impact = y''_i - y'",
}


@dataclass
class MaskingResult:
    """p(gold) per example and step: unmasked, all groups masked, all but group i masked."""

    p_unmasked: torch.Tensor  # [examples, steps]; NaN where the example has no such step
    p_masked: torch.Tensor  # [examples, steps]: y'
    p_visible: torch.Tensor  # [examples, steps, groups]: y''_i; NaN where step t has no group i
    layers: list[int] | None = None  # layers whose keys were zeroed; None = all
    model: str = ""
    method: str = "zero_keys"

    @property
    def impact_per_example(self) -> torch.Tensor:
        """y''_i - y' for every example: [examples, steps, groups]."""
        return self.p_visible - self.p_masked[:, :, None]

    @property
    def impact(self) -> torch.Tensor:
        """Mean impact over examples: [steps predicted, group made visible]; NaN if undefined."""
        return self.impact_per_example.nanmean(dim=0)

    @property
    def counts(self) -> torch.Tensor:
        """Examples averaged in each impact cell: [steps, groups]."""
        return (~self.impact_per_example.isnan()).sum(0)

    def per_example(self) -> dict[str, torch.Tensor]:
        return {"impact": self.impact_per_example.float()}

    def plot(self, path: str | Path, title: str | None = None, **kwargs) -> Path:
        return plot_impact(self, path, title=title, **kwargs)

    def to_dict(self) -> dict:
        return {
            "analysis": "key_masking_impact",
            "model": self.model,
            "method": METHODS[self.method],
            "layers": self.layers if self.layers is not None else "all",
            "n_examples": int(self.p_unmasked.shape[0]),
            "impact": jsonable(self.impact),  # [steps][groups]
            "counts": jsonable(self.counts),
            "p_unmasked": jsonable(self.p_unmasked.nanmean(0)),  # [steps]
            "p_masked": jsonable(self.p_masked.nanmean(0)),
            "p_visible": jsonable(self.p_visible.nanmean(0)),  # [steps][groups]
        }


@dataclass
class _Job:
    """One forward pass: an example's prefix with some keys zeroed, read at some targets."""

    example: int
    length: int
    zero: list[int]
    reads: list[tuple[tuple, int, int]]  # (slot, position, gold)


def masking_impact(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    targets: Sequence[Sequence[Target]],
    groups: Sequence[Sequence[Sequence[Sequence[int]]]],
    layers: Sequence[int] | None = None,
    batch_size: int = 8,
    share_prefix: bool = True,
    progress: bool = False,
    method: str = "zero_keys",
    merge: bool = True,
) -> MaskingResult:
    """Impact of making each group visible, for every example and step.

    `targets[e][t] = (N, gold)`; `groups[e][t]` lists the groups (token positions at or before
    N) visible to step t, so group i of step t is usually step i's colour tokens.
    One unmasked pass per example reads all its steps; each masked variant runs only the
    tokens up to its target (later tokens cannot change it). The tokens before an example's
    first masked position or target are run once and shared through the KV cache
    (`share_prefix=False` runs every variant from the first token; same numbers up to
    float rounding). Variants that hide the same tokens up to each one's target share one
    pass (`merge`, see :func:`_merge`): for the paper's groups, one pass with every group
    hidden gives y' at every step, and one with all but group i hidden gives y''_i at every
    later step, so an example of T steps takes T + 1 passes instead of about T²/2.
    """
    if method not in METHODS:
        raise one_of("masking method", method, METHODS)
    if method == "knockout":
        _check_knockout(model, input_ids, layers)
    check_inputs(model, input_ids, targets, "targets")
    check_inputs(model, input_ids, groups, "groups")
    vocab = model.vocab_size
    for e, (ids, steps, gs) in enumerate(zip(input_ids, targets, groups, strict=True)):
        if len(steps) != len(gs):
            raise UserError(f"example {e}: {len(steps)} targets but {len(gs)} group lists")
        for (n, gold), step_groups in zip(steps, gs, strict=True):
            check_position(e, n, len(ids), "target position")
            if not 0 <= gold < vocab:
                raise UserError(f"example {e}: gold token {gold} is outside the vocabulary")
            for group in step_groups:
                if not group:
                    raise UserError(f"example {e}: a group has no positions")
                for pos in group:
                    if not 0 <= pos <= n:
                        raise UserError(
                            f"example {e}: group position {pos} is not at or before the "
                            f"target position {n}"
                        )

    n_ex = len(input_ids)
    n_steps = max(len(t) for t in targets)
    n_groups = max((len(g) for gs in groups for g in gs), default=0)
    values = {
        "unmasked": torch.full((n_ex, n_steps), float("nan")),
        "masked": torch.full((n_ex, n_steps), float("nan")),
        "visible": torch.full((n_ex, n_steps, max(n_groups, 1)), float("nan")),
    }
    jobs = [_jobs(e, targets[e], groups[e]) for e in range(n_ex)]
    if merge:
        jobs = [_merge(mine) for mine in jobs]
    with Progress(progress, sum(len(j) for j in jobs), "key masking") as bar:
        for e, mine in enumerate(jobs):
            if not mine:
                continue
            # Every variant of an example is the same up to its first masked token or target:
            # run that prefix once and the variants from its KV cache.
            start = min([n for n, _ in targets[e]] + [p for j in mine for p in j.zero])
            prefix = _prefix(model, input_ids[e][:start]) if share_prefix and start > 0 else None
            for batch in length_batches([j.length for j in mine], batch_size):
                chosen = [mine[i] for i in batch]
                probs = _run(model, input_ids, chosen, layers, prefix, method)
                for job, row in zip(chosen, probs, strict=True):
                    for (key, _pos, _gold), p in zip(job.reads, row, strict=True):
                        values[key[0]][key[1:]] = p
                bar.advance(len(chosen))
    # a step with nothing to mask: y' is the unmasked probability
    for e, gs in enumerate(groups):
        for t, step_groups in enumerate(gs):
            if not step_groups:
                values["masked"][e, t] = values["unmasked"][e, t]
    return MaskingResult(
        values["unmasked"],
        values["masked"],
        values["visible"][:, :, :n_groups],
        layers=list(layers) if layers is not None else None,
        model=model.name,
        method=method,
    )


def _check_knockout(model: LoadedModel, input_ids: Sequence[Sequence[int]], layers) -> None:
    if layers is not None:
        raise UserError("knockout hides tokens in every layer: leave `layers` unset")
    window = getattr(model.hf.config, "sliding_window", None)
    longest = max((len(ids) for ids in input_ids), default=0)
    if window and longest > window:
        raise UserError(
            f"knockout needs every sequence within the model's sliding window ({window} "
            f"tokens; the longest here has {longest}): use method='zero_keys'"
        )


def _jobs(e: int, steps: Sequence[Target], groups: Sequence[Sequence[Sequence[int]]]) -> list[_Job]:
    """The forward passes one example needs: one unmasked, then per step 1 + len(groups)."""
    if not steps:
        return []
    reads = [(("unmasked", e, t), n, gold) for t, (n, gold) in enumerate(steps)]
    jobs = [_Job(e, max(n for n, _ in steps) + 1, [], reads)]
    for t, ((n, gold), step_groups) in enumerate(zip(steps, groups, strict=True)):
        if not step_groups:
            continue
        every = sorted({p for g in step_groups for p in g})
        jobs.append(_Job(e, n + 1, every, [(("masked", e, t), n, gold)]))
        for i in range(len(step_groups)):
            others = sorted({p for k, g in enumerate(step_groups) if k != i for p in g})
            jobs.append(_Job(e, n + 1, others, [(("visible", e, t, i), n, gold)]))
    return jobs


def _merge(jobs: list[_Job]) -> list[_Job]:
    """The same reads in fewer passes. A read at position N depends only on which tokens at or
    before N are hidden (causal attention; a hidden token's own key or row matters only to
    queries at or after it), so reads whose hidden sets agree up to each one's position can
    share one pass that hides the union. First fit, longest job first; a job joins a pass
    only if the union leaves every read's hidden prefix as it was."""
    passes: list[tuple[_Job, list[frozenset[int]]]] = []
    for job in sorted(jobs, key=lambda j: -j.length):
        mine = frozenset(job.zero)
        for i, (run, masks) in enumerate(passes):
            union = set(run.zero) | mine
            reads = [*zip(run.reads, masks, strict=True), *((r, mine) for r in job.reads)]
            if all(_prefix_of(union, pos) == _prefix_of(m, pos) for (_, pos, _), m in reads):
                merged = _Job(run.example, max(run.length, job.length), sorted(union),
                              run.reads + job.reads)  # fmt: skip
                passes[i] = (merged, masks + [mine] * len(job.reads))
                break
        else:
            passes.append((job, [mine] * len(job.reads)))
    return [run for run, _ in passes]


def _prefix_of(positions, pos: int) -> frozenset[int]:
    return frozenset(p for p in positions if p <= pos)


@dataclass
class _Prefix:
    """The KV cache of an example's first `length` tokens, shared by all its variants."""

    length: int
    cache: Cache


@torch.inference_mode()
def _prefix(model: LoadedModel, ids: Sequence[int]) -> _Prefix:
    batch = torch.tensor([list(ids)], device=model.device)
    cache = model.hf(input_ids=batch, use_cache=True, logits_to_keep=1).past_key_values
    return _Prefix(len(ids), cache)


@torch.inference_mode()
def _run(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    jobs: list[_Job],
    layers: Sequence[int] | None,
    prefix: _Prefix | None,
    method: str = "zero_keys",
) -> list[list[float]]:
    """p(gold) at each job's reads, for one batch of jobs in one forward pass.

    With a prefix (all jobs then belong to one example), only the tokens after it are run,
    on a copy of its cache; key positions stay absolute (zero_keys follows the cache offset).
    """
    pad = model.tokenizer.pad_token_id
    start = prefix.length if prefix is not None else 0
    ids = [list(input_ids[j.example][start : j.length]) for j in jobs]
    batch = pad_batch(ids, 0 if pad is None else pad, "right")
    batch = {k: v.to(model.device) for k, v in batch.items()}
    cache = None
    if prefix is not None:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(jobs))
        seen = torch.ones(len(jobs), start, dtype=batch["attention_mask"].dtype)
        batch["attention_mask"] = torch.cat([seen.to(model.device), batch["attention_mask"]], 1)
    width = max(len(j.reads) for j in jobs)
    keep = torch.tensor(
        [[j.reads[min(k, len(j.reads) - 1)][1] - start for k in range(width)] for j in jobs],
        device=model.device,
    )
    gold = torch.tensor(
        [[j.reads[min(k, len(j.reads) - 1)][2] for k in range(width)] for j in jobs],
        device=model.device,
    )
    masks = []
    if method == "knockout":
        batch["attention_mask"] = knockout_mask(
            batch["attention_mask"], [j.zero for j in jobs], model.dtype, q_offset=start
        )
    else:
        masks = zero_keys(model, positions=[j.zero for j in jobs], layers=layers)
    with intervene(model, *masks):
        logits = model.hf(
            **batch, past_key_values=cache, logits_to_keep=keep, use_cache=cache is not None
        ).logits
    probs = logits.float().softmax(-1).gather(-1, gold[..., None])[..., 0].cpu()
    return [probs[b, : len(j.reads)].tolist() for b, j in enumerate(jobs)]


def plot_impact(
    result: MaskingResult,
    path: str | Path,
    title: str | None = None,
    step_labels: Sequence[str] | None = None,
    group_labels: Sequence[str] | None = None,
) -> Path:
    """Lower-triangular heat map of the mean impact, with each cell's value written in it."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from reasonlens.plots import save_figure

    impact = result.impact
    rows = [t for t in range(impact.shape[0]) if not impact[t].isnan().all()]
    if not rows:
        raise UserError("no step has a group to unmask: the impact matrix is empty")
    data = impact[rows].numpy()
    n_groups = data.shape[1]
    steps = step_labels or [f"step {t + 1}" for t in range(impact.shape[0])]
    cols = group_labels or [f"{g + 1}" for g in range(n_groups)]
    fig = Figure(figsize=(1.1 * n_groups + 2.5, 0.7 * len(rows) + 1.6))
    ax = fig.subplots()
    cmap = colormaps["RdBu_r"].with_extremes(bad="white")
    bound = max(float(torch.nan_to_num(impact, nan=0.0).abs().max()), 1e-6)
    image = ax.imshow(data, cmap=cmap, vmin=-bound, vmax=bound, aspect="auto")
    for r in range(len(rows)):
        for c in range(n_groups):
            if data[r, c] == data[r, c]:  # not NaN
                ax.text(c, r, f"{data[r, c]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [steps[t] for t in rows])
    ax.set_xticks(range(n_groups), cols)
    ax.set_ylabel("step predicted")
    ax.set_xlabel("group made visible (history step)")
    fig.colorbar(image, ax=ax, label="p(gold) with group visible - all masked")
    ax.set_title(title or f"Key-masking impact: {result.model}", fontsize=10)
    fig.tight_layout()
    out = save_figure(fig, path, dpi=150)
    return out


@torch.inference_mode()
def history_attention_mass(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    targets: Sequence[Sequence[Target]],
    groups: Sequence[Sequence[Sequence[Sequence[int]]]],
    method: str = "zero_keys",
) -> dict[str, torch.Tensor]:
    """How much attention the readout of each step still pays to the history it is meant not to
    see: the weight on all its groups' tokens, summed over them, averaged over heads and layers,
    with every group hidden by `method` and, for reference, with nothing hidden.

    Returns {"hidden": [examples, steps], "unmasked": [examples, steps]} (NaN where a step has
    no groups). Zeroed keys still get exp(0)-weighted attention; knockout gives exactly 0.
    """
    from reasonlens.trace.hooks import site_hooks
    from reasonlens.trace.sites import site_ref

    if method not in METHODS:
        raise one_of("masking method", method, METHODS)
    if method == "knockout":
        _check_knockout(model, input_ids, None)
    check_inputs(model, input_ids, targets, "targets")
    n_steps = max(len(t) for t in targets)
    out = {k: torch.full((len(input_ids), n_steps), float("nan")) for k in ("hidden", "unmasked")}
    refs = [site_ref(layer, "attn_pattern") for layer in range(model.n_layers)]
    for e, (ids, steps, step_groups) in enumerate(zip(input_ids, targets, groups, strict=True)):
        # one pass per example: row 0 with nothing hidden, row 1 + t with step t's history
        # hidden (tokens after a step's readout cannot change its attention, so every row
        # runs the same prefix)
        rows = [
            (t, n, sorted({p for g in visible for p in g}))
            for t, ((n, _gold), visible) in enumerate(zip(steps, step_groups, strict=True))
        ]
        rows = [r for r in rows if r[2]]
        if not rows:
            continue
        hide = [[]] + [hidden for _t, _n, hidden in rows]
        end = max(n for _t, n, _h in rows) + 1
        batch = torch.tensor([list(ids[:end])] * len(hide), device=model.device)
        sums = torch.zeros(2, len(rows), dtype=torch.float64)

        def read(weights, _ctx, sums=sums, rows=rows):
            for r, (_t, n, hidden) in enumerate(rows):
                sums[0, r] += float(weights[0, :, n, hidden].sum(-1).mean())
                sums[1, r] += float(weights[1 + r, :, n, hidden].sum(-1).mean())

        masks, kwargs = [], {}
        if method == "knockout":
            kwargs["attention_mask"] = knockout_mask(torch.ones_like(batch), hide, model.dtype)
        else:
            masks = zero_keys(model, positions=hide)
        with intervene(model, *masks), site_hooks(model, [(r, read) for r in refs]):
            model.hf(input_ids=batch, use_cache=False, logits_to_keep=1, **kwargs)
        for r, (t, _n, _h) in enumerate(rows):
            out["unmasked"][e, t] = sums[0, r] / len(refs)
            out["hidden"][e, t] = sums[1, r] / len(refs)
    return out
