"""Activation patching and path patching between a clean and a corrupt run.

**Activation patching** (Heimersheim & Nanda 2024) copies one component's activation at one
token from one run into the other and measures a metric on the logits: *denoising* patches
the clean run's activation into the corrupt run (is the component sufficient to restore the
behaviour?), *noising* the corrupt run's into the clean run (is it necessary?). The grid is
layers x positions x sites: ``resid_pre``, ``attn_out``, ``mlp_out``, ``resid_post``, and
``z``, the input of the attention output projection, patched one head at a time. Every cell
of the grid (for every pair) is one *row* of a batched forward pass: ``batch_size`` rows per
pass, each with its own patch, not one forward per cell.

**Path patching** (Wang et al. 2022) patches only the edge from a sender (a head's ``z``, or a
layer's ``attn_out``/``mlp_out``) to receivers (later heads' ``q``/``k``/``v`` inputs, one
head's columns, or later layers' ``resid_pre``): (1) run the clean input with the sender
taken from the corrupt run and every head's output (``z``, all layers) frozen at the clean
run, MLPs recomputing, and record the receivers; (2) run the clean input again with only the
receivers patched to what was recorded, and measure the metric. Senders are rows of one
batched pass too.

Clean and corrupt prompts come in pairs of equal length (one length for every pair, so a
position means the same column in every row). The metric is read at `read_position` (default
the last token): ``metric(logits [rows, vocab], pair [rows]) -> [rows]`` (see
:mod:`reasonlens.analyses.effects`: `logit_difference`, `answer_logprob`).

Controls: for activation patching, the same patch taken from a second clean run into the
clean run, every site and layer at all positions at once; it should change nothing, and the
largest change it makes is reported.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reasonlens.analyses.effects import (
    Metric,
    Prompts,
    apply_metric,
    encode,
    estimate,
    mean_interval,
)
from reasonlens.errors import UserError, one_of
from reasonlens.models.loading import LoadedModel
from reasonlens.progress import Progress
from reasonlens.runs.files import jsonable
from reasonlens.trace.hooks import ForwardContext, site_hooks
from reasonlens.trace.sites import site_ref

PATCH_SITES = ("resid_pre", "attn_out", "mlp_out", "resid_post", "z")
DIRECTIONS = {
    "denoise": "clean activation into the corrupt run (sufficiency)",
    "noise": "corrupt activation into the clean run (necessity)",
}
SENDER_SITES = ("z", "attn_out", "mlp_out")
RECEIVER_SITES = ("q", "k", "v", "resid_pre")


@dataclass(frozen=True)
class Cell:
    """One patch: a site of a layer at one token position, one head for per-head sites."""

    site: str
    layer: int
    position: int
    head: int | None = None


@dataclass(frozen=True)
class Node:
    """A component for path patching: ``layers.L.site`` or, per head, ``layers.L.site.H``."""

    layer: int
    site: str
    head: int | None = None

    @property
    def name(self) -> str:
        base = f"layers.{self.layer}.{self.site}"
        return base if self.head is None else f"{base}.{self.head}"


_NODE = re.compile(r"layers\.(\d+)\.([a-z_]+)(?:\.(\d+))?")


def node(spec: str | Node) -> Node:
    """A Node from ``layers.3.z.1`` (head 1's output), ``layers.5.q.0``, ``layers.4.resid_pre``."""
    if isinstance(spec, Node):
        return spec
    match = _NODE.fullmatch(spec.strip()) if isinstance(spec, str) else None
    if not match:
        raise UserError(
            f"bad node {spec!r}: expected layers.<L>.<site> or layers.<L>.<site>.<head>"
        )
    head = None if match[3] is None else int(match[3])
    return Node(int(match[1]), match[2], head)


def _heads(model: LoadedModel) -> tuple[int, int, int]:
    """(query heads, key-value heads, head dim)."""
    cfg = model.hf.config
    heads = cfg.num_attention_heads if hasattr(cfg, "num_attention_heads") else cfg.n_head
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or model.d_model // heads
    return heads, kv, head_dim


def _pairs(
    model: LoadedModel, clean: Prompts, corrupt: Prompts, chat: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    a = encode(model, clean, chat, "clean prompts")
    b = encode(model, corrupt, chat, "corrupt prompts")
    if len(a) != len(b):
        raise UserError(f"{len(a)} clean prompts but {len(b)} corrupt prompts: give them in pairs")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if len(x) != len(y):
            raise UserError(
                f"pair {i}: the clean prompt has {len(x)} tokens and the corrupt one {len(y)}: "
                "patching needs equal lengths"
            )
        if len(x) != len(a[0]):
            raise UserError(
                f"pair {i} has {len(x)} tokens but pair 0 has {len(a[0])}: every pair needs the "
                "same length (a position is one column in every row)"
            )
    return torch.tensor(a), torch.tensor(b)


def _read(position: int, length: int) -> int:
    p = position + length if position < 0 else position
    if not 0 <= p < length:
        raise UserError(f"read position {position} is outside the prompts' {length} tokens")
    return p


@torch.inference_mode()
def _forward(
    model: LoadedModel, ids: torch.Tensor, hooks: list, read: int, cache_sites=()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits [rows, vocab] at column `read` and the full tensors of `cache_sites`."""
    cache: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def fn(x: torch.Tensor, _ctx: ForwardContext) -> None:
            cache[name] = x.detach().clone()

        return fn

    extra = [(site_ref(int(s.split(".")[1]), s.split(".")[2]), keep(s)) for s in cache_sites]
    ids = ids.to(model.device)
    keep_cols = torch.tensor([read], device=model.device)
    with site_hooks(model, [*hooks, *extra]):
        logits = model.hf(input_ids=ids, use_cache=False, logits_to_keep=keep_cols).logits
    return logits[:, -1].float().cpu(), cache


def _cached(
    model: LoadedModel, ids: torch.Tensor, sites: list[str], read: int, batch_size: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One plain run of every pair: logits at `read` and the cached `sites` [pairs, n, width]."""
    logits, parts = [], {s: [] for s in sites}
    for lo in range(0, len(ids), batch_size):
        out, cache = _forward(model, ids[lo : lo + batch_size], [], read, sites)
        logits.append(out)
        for s in sites:
            parts[s].append(cache[s])
    return torch.cat(logits), {s: torch.cat(v) for s, v in parts.items()}


class _Patches:
    """Per-row patches compiled into one indexed assignment per (site, layer)."""

    def __init__(self, model: LoadedModel, source: dict[str, torch.Tensor]):
        self.model = model
        self.source = source
        self.heads, _, self.head_dim = _heads(model)

    def hooks(self, rows: list[list[Cell]], pair: torch.Tensor) -> list:
        groups: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        for r, cells in enumerate(rows):
            for c in cells:
                groups.setdefault((c.site, c.layer), []).append(
                    (r, c.position, -1 if c.head is None else c.head)
                )
        hooks = []
        for (site, layer), items in groups.items():
            index = torch.tensor(items)
            src = self.source[f"layers.{layer}.{site}"]
            per_head = bool((index[:, 2] >= 0).all())
            if not per_head and bool((index[:, 2] >= 0).any()):
                raise ValueError(f"layers.{layer}.{site}: mixed per-head and whole patches")
            hooks.append((site_ref(layer, site), self._assign(index, pair, src, per_head)))
        return hooks

    def _assign(self, index: torch.Tensor, pair: torch.Tensor, src: torch.Tensor, per_head: bool):
        r, p, h = index[:, 0], index[:, 1], index[:, 2]
        e = pair[r]
        hd = self.head_dim

        def fn(x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
            # positions are absolute; a run that continues a cached prefix starts at ctx.offset
            x = x.clone(memory_format=torch.contiguous_format)
            s = src.to(x.device, x.dtype)
            col = p - ctx.offset
            if per_head:
                view, sv = x.view(*x.shape[:-1], -1, hd), s.view(*s.shape[:-1], -1, hd)
                view[r, col, h] = sv[e, p, h]
            else:
                x[r, col] = s[e, p]
            return x

        return fn


def patched_metric(
    model: LoadedModel,
    target: torch.Tensor,
    source: dict[str, torch.Tensor],
    rows: list[list[Cell]],
    pair: torch.Tensor,
    metric: Metric,
    read: int,
    batch_size: int,
    bar: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The metric [rows] and logits [rows, vocab] of `target` runs (row i: ``target[pair[i]]``)
    with row i's cells patched from `source` (site name -> [pairs, n, width]).

    A patch at position p changes nothing before p (causal attention), so rows are grouped by
    their first patched position s and run from s on, continuing the KV cache of the target's
    first s tokens (computed once per group): half the tokens of the full runs, on average,
    for a grid of single-position cells."""
    patches = _Patches(model, source)
    values = torch.empty(len(rows), dtype=torch.float64)
    logits = torch.empty(len(rows), model.vocab_size)
    starts = torch.tensor([min((c.position for c in cells), default=0) for cells in rows])
    starts = starts.clamp(max=read)  # a patch after the read position changes nothing
    for start in starts.unique().tolist():
        group = torch.nonzero(starts == start).flatten()
        prefix = _prefix_cache(model, target, start)
        for lo in range(0, len(group), batch_size):
            idx = group[lo : lo + batch_size]
            chunk_rows = [rows[i] for i in idx.tolist()]
            out = _continue(
                model, target, pair[idx], start, prefix, read, patches.hooks(chunk_rows, pair[idx])
            )
            values[idx] = apply_metric(metric, out, pair[idx])
            logits[idx] = out
            if bar is not None:
                bar.advance(len(idx))
    return values, logits


@torch.inference_mode()
def _prefix_cache(model: LoadedModel, target: torch.Tensor, start: int):
    """The KV cache of every pair's first `start` target tokens (None for start 0)."""
    if start == 0:
        return None
    ids = target[:, :start].to(model.device)
    return model.hf(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values


@torch.inference_mode()
def _continue(
    model: LoadedModel,
    target: torch.Tensor,
    pair: torch.Tensor,
    start: int,
    prefix,
    read: int,
    hooks: list,
) -> torch.Tensor:
    """Logits [rows, vocab] at `read` of each row's target run from token `start` on, after a
    copy of the prefix cache narrowed to the rows' pairs."""
    ids = target[pair, start:].to(model.device)
    cache = None
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_select_indices(pair.to(model.device))
    mask = torch.ones(len(pair), target.shape[1], dtype=torch.long, device=model.device)
    keep = torch.tensor([read - start], device=model.device)
    with site_hooks(model, hooks):
        out = model.hf(
            input_ids=ids,
            attention_mask=mask,
            past_key_values=cache,
            use_cache=cache is not None,
            logits_to_keep=keep,
        ).logits
    return out[:, -1].float().cpu()


@dataclass
class PatchingResult:
    """Metric per cell and pair for each direction, beside the clean and corrupt baselines."""

    cells: list[Cell]
    values: dict[str, torch.Tensor]  # direction -> [cells, pairs]
    clean: torch.Tensor  # [pairs] metric of the clean run
    corrupt: torch.Tensor  # [pairs]
    sites: list[str]
    layers: list[int]
    positions: list[int]
    n_heads: int
    read_position: int
    control: dict | None = None
    model: str = ""
    resamples: int = 1000
    seed: int = 0
    tokens: dict = field(default_factory=dict)

    def grid(self, direction: str, site: str, normalized: bool = False) -> torch.Tensor:
        """Mean over pairs: [layers, positions], or [layers, heads, positions] for ``z``.
        Normalized: the share of the way from the patched run's own metric to the source
        run's, (patched - target) / (source - target), from the means."""
        if direction not in self.values:
            raise one_of("direction", direction, self.values)
        if site not in self.sites:
            raise one_of("site", site, self.sites)
        idx = [i for i, c in enumerate(self.cells) if c.site == site]
        mean = self.values[direction][idx].mean(1)
        if normalized:
            target, source = self._ends(direction)
            mean = (mean - target) / (source - target)
        shape = [len(self.layers), len(self.positions)]
        if site == "z":
            shape.insert(1, self.n_heads)
        return mean.view(*shape)

    def _ends(self, direction: str) -> tuple[float, float]:
        clean, corrupt = float(self.clean.mean()), float(self.corrupt.mean())
        return (corrupt, clean) if direction == "denoise" else (clean, corrupt)

    def to_dict(self) -> dict:
        clean = mean_interval(self.clean.numpy(), self.resamples, self.seed)
        corrupt = mean_interval(self.corrupt.numpy(), self.resamples, self.seed)
        grids = {
            d: {
                s: {
                    "mean": jsonable(self.grid(d, s)),
                    "normalized": jsonable(self.grid(d, s, normalized=True)),
                }
                for s in self.sites
            }
            for d in self.values
        }
        return {
            "analysis": "activation_patching",
            "model": self.model,
            "directions": {d: DIRECTIONS[d] for d in self.values},
            "sites": self.sites,
            "layers": self.layers,
            "positions": self.positions,
            "heads": self.n_heads,
            "read_position": self.read_position,
            "n_pairs": int(self.clean.shape[0]),
            "clean": estimate(*clean[:3]),
            "corrupt": estimate(*corrupt[:3]),
            "normalized": "(patched - target run) / (source run - target run), from means",
            "grid_axes": "[layers][positions]; z: [layers][heads][positions]",
            "grids": grids,
            "control": self.control,
        }

    def per_example(self) -> dict[str, torch.Tensor]:
        out = {f"{d}": v.float() for d, v in self.values.items()}
        out["clean"], out["corrupt"] = self.clean.float(), self.corrupt.float()
        return out

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Normalized effect heatmaps, one per direction and site (z: layer x head rows)."""
        from reasonlens.plots import new_figure, save_figure

        panels = [(d, s) for d in self.values for s in self.sites]
        cols = len(self.sites)
        rows = len(self.values)
        fig = new_figure(figsize=(3.2 * cols, 3.0 * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        for (d, s), ax in zip(panels, axes.flat, strict=True):
            grid = self.grid(d, s, normalized=True)
            if s == "z":
                grid = grid.reshape(-1, grid.shape[-1])
            image = ax.imshow(grid.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(f"{d}: {s}", fontsize=8)
            ax.set_xlabel("position", fontsize=7)
            ax.set_ylabel("layer (x head)" if s == "z" else "layer", fontsize=7)
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        fig.suptitle(title or f"Activation patching: {self.model}", fontsize=10)
        return save_figure(fig, path, dpi=150)


def activation_patching(
    model: LoadedModel,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    sites: Sequence[str] = ("resid_pre", "attn_out", "mlp_out", "z"),
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    directions: Sequence[str] = ("denoise", "noise"),
    read_position: int = -1,
    batch_size: int = 32,
    control: bool = True,
    chat: bool = False,
    progress: bool = False,
    resamples: int = 1000,
    seed: int = 0,
) -> PatchingResult:
    """Patch every cell of layers x positions x sites (x heads for ``z``) in each direction;
    all cells of all pairs as rows of batched passes (see the module doc)."""
    for s in sites:
        if s not in PATCH_SITES:
            raise one_of("patching site", s, PATCH_SITES)
    if not sites:
        raise UserError("no sites to patch")
    for d in directions:
        if d not in DIRECTIONS:
            raise one_of("patching direction", d, DIRECTIONS)
    if not directions:
        raise UserError("no patching direction given")
    if batch_size < 1:
        raise UserError("batch size must be at least 1")
    clean_ids, corrupt_ids = _pairs(model, clean, corrupt, chat)
    n_pairs, n = clean_ids.shape
    read = _read(read_position, n)
    chosen_layers = list(range(model.n_layers)) if layers is None else [int(x) for x in layers]
    bad = [x for x in chosen_layers if not 0 <= x < model.n_layers]
    if bad or not chosen_layers:
        raise UserError(
            f"layer {bad[0] if bad else '(none)'} does not exist: {model.name} has "
            f"{model.n_layers} layers (0-{model.n_layers - 1})"
        )
    cols = list(range(n)) if positions is None else [int(p) for p in positions]
    if not cols:
        raise UserError("no positions given")
    for p in cols:
        if not -n <= p < n:
            raise UserError(f"position {p} is outside the prompts' {n} tokens")
    cols = [p + n if p < 0 else p for p in cols]
    heads, _, _ = _heads(model)
    cells = [
        Cell(s, x, p, h)
        for s in sites
        for x in chosen_layers
        for h in (range(heads) if s == "z" else [None])
        for p in cols
    ]
    names = sorted({f"layers.{x}.{s}" for x in chosen_layers for s in sites})
    clean_logits, clean_cache = _cached(model, clean_ids, names, read, batch_size)
    corrupt_logits, corrupt_cache = _cached(model, corrupt_ids, names, read, batch_size)
    pair_index = torch.arange(n_pairs)
    clean_metric = apply_metric(metric, clean_logits, pair_index)
    corrupt_metric = apply_metric(metric, corrupt_logits, pair_index)

    rows = [[c] for c in cells for _ in range(n_pairs)]
    pair = pair_index.repeat(len(cells))
    values = {}
    total = len(rows) * len(directions)
    with Progress(progress, total, "activation patching") as bar:
        for d in directions:
            target, source = (
                (corrupt_ids, clean_cache) if d == "denoise" else (clean_ids, corrupt_cache)
            )
            v, _ = patched_metric(model, target, source, rows, pair, metric, read, batch_size, bar)
            values[d] = v.view(len(cells), n_pairs)

    control_record = None
    if control:
        _, second = _cached(model, clean_ids, names, read, batch_size)
        groups = [
            [Cell(s, x, p, h) for p in cols for h in (range(heads) if s == "z" else [None])]
            for s in sites
            for x in chosen_layers
        ]
        ctrl_rows = [g for g in groups for _ in range(n_pairs)]
        ctrl_pair = pair_index.repeat(len(groups))
        v, _ = patched_metric(
            model, clean_ids, second, ctrl_rows, ctrl_pair, metric, read, batch_size
        )
        change = (v.view(len(groups), n_pairs) - clean_metric).abs()
        control_record = {
            "what": "each site and layer patched at every chosen position from a second clean "
            "run into the clean run (should change nothing)",
            "max_abs_change": float(change.max()),
            "clean_minus_corrupt": float((clean_metric - corrupt_metric).abs().mean()),
        }
    return PatchingResult(
        cells=cells,
        values=values,
        clean=clean_metric,
        corrupt=corrupt_metric,
        sites=list(sites),
        layers=chosen_layers,
        positions=cols,
        n_heads=heads,
        read_position=read,
        control=control_record,
        model=model.name,
        resamples=resamples,
        seed=seed,
    )


# ---------------------------------------------------------------------------------- path patching


@dataclass
class PathPatchingResult:
    """The metric per sender and pair with the sender -> receivers path patched."""

    senders: list[Node]
    receivers: list[Node]
    values: torch.Tensor  # [senders, pairs]
    clean: torch.Tensor  # [pairs]
    corrupt: torch.Tensor  # [pairs]
    model: str = ""
    resamples: int = 1000
    seed: int = 0

    @property
    def effect(self) -> torch.Tensor:
        """Patched minus clean metric: [senders, pairs]."""
        return self.values - self.clean

    def to_dict(self) -> dict:
        effect = mean_interval(self.effect.numpy(), self.resamples, self.seed)
        clean = mean_interval(self.clean.numpy(), self.resamples, self.seed)
        corrupt = mean_interval(self.corrupt.numpy(), self.resamples, self.seed)
        gap = float(self.corrupt.mean() - self.clean.mean())
        return {
            "analysis": "path_patching",
            "model": self.model,
            "receivers": [r.name for r in self.receivers],
            "n_pairs": int(self.clean.shape[0]),
            "clean": estimate(*clean[:3]),
            "corrupt": estimate(*corrupt[:3]),
            "frozen": "every head's output (z) at the clean run; MLPs recompute",
            "senders": [
                {
                    "sender": s.name,
                    "effect": estimate(*(x[i] for x in effect[:3])),
                    "share_of_corrupt_gap": (
                        float(self.effect[i].mean()) / gap if gap != 0 else None
                    ),
                }
                for i, s in enumerate(self.senders)
            ],
        }

    def per_example(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.float(), "clean": self.clean.float()}

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        from reasonlens.plots import new_figure, save_figure

        mean, low, high, _ = mean_interval(self.effect.numpy(), self.resamples, self.seed)
        fig = new_figure(figsize=(max(4, 0.6 * len(self.senders) + 2), 3.6))
        ax = fig.subplots()
        x = range(len(self.senders))
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="o", capsize=3)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(list(x), [s.name for s in self.senders], rotation=45, fontsize=6)
        ax.set_ylabel("metric change (path patched)")
        ax.set_title(title or f"Path patching: {self.model}", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, path, dpi=150)


def _check_nodes(model: LoadedModel, senders, receivers) -> tuple[list[Node], list[Node]]:
    heads, kv, _ = _heads(model)
    send = [node(s) for s in senders]
    recv = [node(r) for r in receivers]
    if not send:
        raise UserError("no senders given")
    if not recv:
        raise UserError("no receivers given")
    for n_, allowed, role in ((send, SENDER_SITES, "sender"), (recv, RECEIVER_SITES, "receiver")):
        for x in n_:
            if x.site not in allowed:
                raise UserError(f"{x.name}: a {role} is one of {', '.join(allowed)}")
            if not 0 <= x.layer < model.n_layers:
                raise UserError(
                    f"{x.name}: layer {x.layer} does not exist ({model.n_layers} layers)"
                )
            per_head = x.site in ("z", "q", "k", "v")
            if per_head and x.head is None:
                raise UserError(f"{x.name}: give a head, e.g. {x.name}.0")
            if not per_head and x.head is not None:
                raise UserError(f"{x.name}: {x.site} is not per head")
            limit = kv if x.site in ("k", "v") else heads
            if per_head and not 0 <= x.head < limit:
                raise UserError(f"{x.name}: head {x.head} does not exist ({limit} heads)")
    for s in send:
        for r in recv:
            if r.layer <= s.layer:
                raise UserError(f"receiver {r.name} is not after sender {s.name}")
    return send, recv


def path_patching(
    model: LoadedModel,
    clean: Prompts,
    corrupt: Prompts,
    metric: Metric,
    senders: Sequence[str | Node],
    receivers: Sequence[str | Node],
    read_position: int = -1,
    batch_size: int = 32,
    chat: bool = False,
    resamples: int = 1000,
    seed: int = 0,
) -> PathPatchingResult:
    """Path patching from each sender to all `receivers` (see the module doc). Per-head nodes
    are ``layers.L.z.H`` (a head's output), ``layers.L.q.H`` (query head H's input); ``k`` and
    ``v`` heads are key-value heads (shared by a group of query heads under grouped-query
    attention)."""
    send, recv = _check_nodes(model, senders, receivers)
    clean_ids, corrupt_ids = _pairs(model, clean, corrupt, chat)
    n_pairs, n = clean_ids.shape
    read = _read(read_position, n)
    z_sites = [f"layers.{x}.z" for x in range(model.n_layers)]
    send_sites = sorted({f"layers.{s.layer}.{s.site}" for s in send})
    clean_logits, clean_cache = _cached(model, clean_ids, z_sites, read, batch_size)
    corrupt_logits, corrupt_cache = _cached(model, corrupt_ids, send_sites, read, batch_size)
    pair_index = torch.arange(n_pairs)
    clean_metric = apply_metric(metric, clean_logits, pair_index)
    corrupt_metric = apply_metric(metric, corrupt_logits, pair_index)
    all_cols = range(n)

    rows_sender = torch.arange(len(send)).repeat_interleave(n_pairs)
    pair = pair_index.repeat(len(send))
    recv_sites = sorted({f"layers.{r.layer}.{r.site}" for r in recv})
    values = []
    for lo in range(0, len(pair), batch_size):
        hi = min(lo + batch_size, len(pair))
        p, who = pair[lo:hi], rows_sender[lo:hi]
        # Freeze every head's output (z, all layers) at the clean run, then put the sender in
        # from the corrupt run (hooks on one site run in order).
        hooks = [
            (site_ref(x, "z"), _whole(clean_cache[f"layers.{x}.z"], p))
            for x in range(model.n_layers)
        ]
        sender_rows = [[] for _ in range(hi - lo)]
        for r, s_index in enumerate(who.tolist()):
            s = send[s_index]
            sender_rows[r] = [Cell(s.site, s.layer, c, s.head) for c in all_cols]
        hooks += _Patches(model, corrupt_cache).hooks(sender_rows, p)
        _, recorded = _forward(model, clean_ids[p], hooks, read, recv_sites)
        # Step 2: only the receivers, from what step 1 recorded (rows index themselves).
        receiver_rows = [
            [Cell(r.site, r.layer, c, r.head) for r in recv for c in all_cols]
            for _ in range(hi - lo)
        ]
        own = torch.arange(hi - lo)
        patch = _Patches(model, recorded)
        out, _ = _forward(model, clean_ids[p], patch.hooks(receiver_rows, own), read)
        values.append(apply_metric(metric, out, p))
    return PathPatchingResult(
        senders=send,
        receivers=recv,
        values=torch.cat(values).view(len(send), n_pairs),
        clean=clean_metric,
        corrupt=corrupt_metric,
        model=model.name,
        resamples=resamples,
        seed=seed,
    )


def _whole(source: torch.Tensor, pair: torch.Tensor):
    """A site function replacing the whole tensor with ``source[pair]`` (every position)."""

    def fn(x: torch.Tensor, _ctx: ForwardContext) -> torch.Tensor:
        return source[pair].to(x.device, x.dtype)

    return fn
