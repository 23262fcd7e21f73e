"""Information flow between prompt chunks (Wang et al. 2023 saliency; Men et al. 2024 §5.2).

For layer ℓ, I_ℓ(i, j) = |Σ_heads A_{h,ℓ}(i, j) · ∂L/∂A_{h,ℓ}(i, j)| is the flow from token j
into token i (sum over heads, then the absolute value), where A is the post-softmax attention
and L the cross-entropy of a gold token at a target position N. The flow into N from a chunk
of tokens is the mean of I_ℓ(N, j) over the chunk's tokens; N's flow to itself (the diagonal)
is set to 0, as in Wang et al.'s code.

The gradient is taken with respect to the very tensor the attention hook sees: in the eager
attention of every supported architecture (transformers 5.23, `eager_attention_forward` of
llama/qwen2/qwen3/gemma3/gpt2) the returned weights are the variable that multiplies V
(`attn_output = matmul(attn_weights, value_states)`; dropout is the identity when not
training), so ∂L/∂A here is exactly Wang et al.'s P.grad with A' = A ⊙ P, P = 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from reasonlens.analyses.common import (
    Target,
    check_inputs,
    check_position,
    length_batches,
)
from reasonlens.errors import UserError
from reasonlens.models.loading import LoadedModel
from reasonlens.models.prompts import pad_batch
from reasonlens.progress import Progress
from reasonlens.runs.files import jsonable
from reasonlens.trace.hooks import site_hooks
from reasonlens.trace.sites import site_ref

Chunks = dict[str, tuple[int, int]]  # chunk name -> [start, end) token range


def step_normalized(flow: torch.Tensor) -> torch.Tensor:
    """[steps, chunks, layers] with each step's map divided by its maximum (NaN ignored)."""
    peak = flow.nan_to_num(nan=0.0).amax(dim=(1, 2), keepdim=True)
    return flow / peak.clamp_min(torch.finfo(flow.dtype).tiny)


@dataclass
class FlowResult:
    """Chunk-to-last-token flow per example, step and layer; `flow` averages the examples that
    have each chunk (the per-example values let a report put intervals on its claims)."""

    chunks: list[str]  # row order
    flows: torch.Tensor  # per example: [examples, steps, chunks, layers] float64; NaN: absent
    model: str = ""

    @property
    def counts(self) -> torch.Tensor:
        """Examples averaged in each cell: [steps, chunks]."""
        return (~self.flows[..., 0].isnan()).sum(0)

    @property
    def flow(self) -> torch.Tensor:
        """Mean over the examples that have the chunk: [steps, chunks, layers]; NaN if none."""
        return self.flows.nanmean(dim=0).float()

    @property
    def normalized(self) -> torch.Tensor:
        """Each step's map divided by its maximum, so every panel peaks at 1 (as displayed)."""
        return step_normalized(self.flow)

    def per_example(self) -> dict[str, torch.Tensor]:
        return {"flow": self.flows.float()}

    def plot(self, path: str | Path, title: str | None = None, **kwargs) -> Path:
        return plot_flow(self, path, title=title, **kwargs)

    def to_dict(self) -> dict:
        return {
            "analysis": "information_flow",
            "model": self.model,
            "method": "Wang et al. 2023: |sum_heads A * dL/dA|, L = CE(gold) at the target",
            "chunks": self.chunks,
            "n_steps": int(self.flow.shape[0]),
            "n_layers": int(self.flow.shape[2]),
            "counts": jsonable(self.counts),  # [steps][chunks]
            "flow": jsonable(self.flow),  # [steps][chunks][layers]
            "normalized": jsonable(self.normalized),
        }


def token_flow(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    targets: Sequence[Sequence[Target]],
    batch_size: int = 4,
    progress: bool = False,
) -> list[list[torch.Tensor]]:
    """I_ℓ(N, j) for every example e and step t: a [layers, N+1] tensor (diagonal = 0)."""
    out: list[list[torch.Tensor]] = [[] for _ in input_ids]
    for e, rows in _flow_rows(model, input_ids, targets, batch_size, progress):
        out[e] = rows
    return out


def information_flow(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    targets: Sequence[Sequence[Target]],
    chunks: Sequence[Sequence[Chunks]],
    order: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> FlowResult:
    """Flow into each step's target from each chunk: [steps, chunks, layers], mean over examples.

    `targets[e][t] = (N, gold)`; `chunks[e][t]` names token ranges [start, end) at or before N.
    A chunk missing from a step is left out of that step's average. Rows follow `order`
    (default: the order in which chunk names first appear).
    """
    check_inputs(model, input_ids, targets, "targets")
    check_inputs(model, input_ids, chunks, "chunks")
    for e, (steps, cs) in enumerate(zip(targets, chunks, strict=True)):
        if len(steps) != len(cs):
            raise UserError(f"example {e}: {len(steps)} targets but {len(cs)} chunk maps")
        for t, ((n, _gold), spans) in enumerate(zip(steps, cs, strict=True)):
            for name, (start, end) in spans.items():
                if not 0 <= start < end <= n + 1:
                    raise UserError(
                        f"example {e}, step {t}: chunk {name!r} = [{start}, {end}) must be a "
                        f"non-empty range at or before the target position {n}"
                    )
    names = list(order) if order is not None else _first_seen(chunks)
    index = {name: i for i, name in enumerate(names)}
    unknown = {k for cs in chunks for spans in cs for k in spans} - set(index)
    if unknown:
        raise UserError(f"chunks {sorted(unknown)} are not in the given order {names}")

    n_steps = max(len(t) for t in targets)
    shape = (len(input_ids), n_steps, len(names), model.n_layers)
    per_example = torch.full(shape, float("nan"), dtype=torch.float64)
    for e, rows in _flow_rows(model, input_ids, targets, batch_size, progress):
        for t, row in enumerate(rows):
            for name, (start, end) in chunks[e][t].items():
                per_example[e, t, index[name]] = row[:, start:end].double().mean(dim=1)
    return FlowResult(names, per_example, model=model.name)


def _first_seen(chunks: Sequence[Sequence[Chunks]]) -> list[str]:
    names: dict[str, None] = {}
    for cs in chunks:
        for spans in cs:
            names.update(dict.fromkeys(spans))
    return list(names)


def _flow_rows(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    targets: Sequence[Sequence[Target]],
    batch_size: int,
    progress: bool,
) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """(example, [I_ℓ(N_t, :) for each step t]) for every example with targets."""
    check_inputs(model, input_ids, targets, "targets")
    vocab = model.vocab_size
    for e, (ids, steps) in enumerate(zip(input_ids, targets, strict=True)):
        for n, gold in steps:
            check_position(e, n, len(ids), "target position")
            if not 0 <= gold < vocab:
                raise UserError(f"example {e}: gold token {gold} is outside the vocabulary")
    ends = [max((n for n, _ in steps), default=0) + 1 for steps in targets]
    with Progress(progress, len(input_ids), "information flow") as bar:
        for batch in length_batches(ends, batch_size):
            batch = [e for e in batch if targets[e]]
            if batch:
                ids = [list(input_ids[e][: ends[e]]) for e in batch]
                rows = _batch_flow(model, ids, [list(targets[e]) for e in batch])
                yield from zip(batch, rows, strict=True)
            bar.advance(len(batch))


@contextmanager
def _frozen(model: LoadedModel) -> Iterator[None]:
    """Parameters that require grad stop requiring it inside the block, and are restored."""
    params = [p for p in model.hf.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _batch_flow(
    model: LoadedModel, ids: list[list[int]], targets: list[list[Target]]
) -> list[list[torch.Tensor]]:
    """One forward pass with a graph, then one backward per step, for a batch of examples."""
    pad = model.tokenizer.pad_token_id
    batch = pad_batch(ids, 0 if pad is None else pad, "right")
    input_ids = batch["input_ids"].to(model.device)
    mask = batch["attention_mask"].to(model.device)
    n_layers, n_steps = model.n_layers, max(len(t) for t in targets)
    # positions whose logits are needed, [batch, steps]; shorter rows repeat their first target
    keep = torch.tensor(
        [[t[min(s, len(t) - 1)][0] for s in range(n_steps)] for t in targets],
        device=model.device,
    )
    patterns: list[torch.Tensor | None] = [None] * n_layers

    def keep_pattern(layer: int):
        def fn(weights: torch.Tensor, _ctx) -> None:
            patterns[layer] = weights

        return fn

    hooks = [(site_ref(layer, "attn_pattern"), keep_pattern(layer)) for layer in range(n_layers)]
    out: list[list[torch.Tensor]] = [[] for _ in ids]
    with torch.inference_mode(False), torch.enable_grad(), _frozen(model):
        # A graph from the embeddings reaches every A; frozen parameters keep the backward
        # from computing weight gradients it does not need (about half of its cost).
        embed = model.hf.get_submodule(model.arch.embed)  # Gemma's includes its sqrt(d) scale
        embeds = embed(input_ids).detach().requires_grad_(True)
        with site_hooks(model, hooks):
            logits = model.hf(
                inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep, use_cache=False
            ).logits  # [batch, steps, vocab]
        if any(p is None or p.grad_fn is None for p in patterns):
            raise UserError("attention weights are not part of the autograd graph")
        for s in range(n_steps):
            rows = [b for b, t in enumerate(targets) if s < len(t)]
            gold = torch.tensor([targets[b][s][1] for b in rows], device=model.device)
            # One loss per step, summed over examples only: examples in a batch never interact,
            # so each one's gradient is its own. Steps of one example must not be summed: the
            # target of a later step attends to earlier positions (including earlier targets),
            # so ∂(L_t + L_u)/∂A(N_t, j) would mix step u's gradient into step t's flow.
            loss = torch.nn.functional.cross_entropy(logits[rows, s].float(), gold, reduction="sum")
            grads = torch.autograd.grad(
                loss, patterns, retain_graph=s < n_steps - 1, allow_unused=True
            )
            b_idx = torch.tensor(rows, device=model.device)
            n_idx = keep[b_idx, s]
            per_layer = []
            for a, g in zip(patterns, grads, strict=True):
                a_row = a[b_idx, :, n_idx].float()  # [rows, heads, keys]
                g_row = torch.zeros_like(a_row) if g is None else g[b_idx, :, n_idx].float()
                per_layer.append((a_row * g_row).sum(dim=1).abs())  # heads summed, then |.|
            flow = torch.stack(per_layer, dim=1).detach().cpu()  # [rows, layers, keys]
            for r, b in enumerate(rows):
                n = targets[b][s][0]
                row = flow[r, :, : n + 1].clone()
                row[:, n] = 0.0  # the diagonal: a token's flow to itself is ignored
                out[b].append(row)
    return out


def plot_flow(
    result: FlowResult,
    path: str | Path,
    normalized: bool = True,
    step_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One heat map per step (rows = chunks, columns = layers), colour bar 0..1 when normalised."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from reasonlens.plots import save_figure

    data = (result.normalized if normalized else result.flow).numpy()
    n_steps, n_chunks, n_layers = data.shape
    cols = min(3, n_steps)
    rows = -(-n_steps // cols)
    fig = Figure(
        figsize=(4.2 * cols + 1, 0.32 * n_chunks * rows + 1.2 * rows + 0.6), layout="constrained"
    )
    axes = fig.subplots(rows, cols, squeeze=False)
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    vmax = 1.0 if normalized else float(torch.nan_to_num(result.flow, nan=0.0).max())
    image = None
    for s in range(rows * cols):
        ax = axes[s // cols][s % cols]
        if s >= n_steps:
            ax.set_axis_off()
            continue
        image = ax.imshow(data[s], aspect="auto", cmap=cmap, vmin=0.0, vmax=vmax)
        ax.set_title(step_labels[s] if step_labels else f"step {s + 1}", fontsize=9)
        ax.set_yticks(range(n_chunks), result.chunks if s % cols == 0 else [], fontsize=7)
        ticks = range(0, n_layers, max(1, n_layers // 8))
        ax.set_xticks(list(ticks), [str(t) for t in ticks], fontsize=7)
        ax.set_xlabel("layer", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    kind = "normalised to max 1 per step" if normalized else "raw"
    fig.suptitle(f"{title or f'Information flow into the target: {result.model}'} ({kind})")
    out = save_figure(fig, path, dpi=150)
    return out
