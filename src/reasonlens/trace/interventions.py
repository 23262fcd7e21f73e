"""Interventions on activations during a forward pass or generation, always undone on exit.

    with intervene(model, Add("layers.10.resid_post", direction, scale=4.0),
                   *zero_keys(model, positions=[[12, 13], [9]])):
        model.hf.generate(...)

Positions (`positions=`) name token columns of the input sequence: None is every token
(generated ones too), a list of ints applies to every example, a list of lists gives each
example its own. Negative ints count from the end of the current call, so -1 is the newest
token at every decoding step. Column numbers stay absolute during KV-cache generation.
Interventions on the same site apply in the order given, each to the previous one's result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from reasonlens.errors import UserError
from reasonlens.models.loading import LoadedModel
from reasonlens.trace.hooks import ForwardContext, SiteFn, site_hooks
from reasonlens.trace.sites import SiteRef, resolve_sites

Positions = Sequence[int] | Sequence[Sequence[int]] | None


@dataclass
class Intervention:
    """Base class: where (site, positions); subclasses say what (`transform`)."""

    site: str | SiteRef
    positions: Positions = None

    def transform(self, x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        raise NotImplementedError

    def hook(self, name: str) -> SiteFn:
        def fn(x: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
            new = self.transform(x, ctx)
            mask = position_mask(self.positions, x.shape[0], x.shape[1], ctx.offset, x.device)
            if mask is None:
                return new
            return torch.where(mask.view(*mask.shape, *([1] * (x.dim() - 2))), new, x)

        return fn


def position_mask(
    positions: Positions, batch: int, length: int, offset: int, device: torch.device
) -> torch.Tensor | None:
    """[batch, length] booleans: which tokens of this call the intervention touches."""
    if positions is None:
        return None
    total = offset + length
    rows = positions if positions and isinstance(positions[0], Sequence) else [positions] * batch
    if len(rows) != batch:
        raise UserError(f"positions given for {len(rows)} examples but the batch has {batch}")
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for b, cols in enumerate(rows):
        for col in cols:  # type: ignore[union-attr]
            absolute = col + total if col < 0 else col
            if offset <= absolute < total:
                mask[b, absolute - offset] = True
    return mask.to(device)


def _vector(value: torch.Tensor, x: torch.Tensor, what: str) -> torch.Tensor:
    value = torch.as_tensor(value)
    if value.shape[-1] != x.shape[-1]:
        raise UserError(f"{what} has size {value.shape[-1]} but the site has width {x.shape[-1]}")
    return value.to(x.device, x.dtype)


@dataclass
class Add(Intervention):
    """Add `scale * vector` (steering)."""

    vector: torch.Tensor | None = None
    scale: float = 1.0

    def transform(self, x, ctx):
        return x + self.scale * _vector(self.vector, x, f"vector for {self.site}")


@dataclass
class Replace(Intervention):
    """Replace with given activations (patching): [d], [seq, d] or [batch, seq, d].

    A value with a sequence axis is indexed by absolute column, so a cached run can be
    patched in during KV-cache generation too.
    """

    value: torch.Tensor | None = None

    def transform(self, x, ctx):
        value = _vector(self.value, x, f"value for {self.site}")
        if value.dim() >= 2:
            cols = slice(ctx.offset, ctx.offset + x.shape[1])
            value = value[cols] if value.dim() == 2 else value[:, cols]
            if value.shape[-2] != x.shape[1] or (value.dim() == 3 and value.shape[0] != x.shape[0]):
                raise UserError(
                    f"value for {self.site} has shape {tuple(self.value.shape)}, which does not "
                    f"cover this call's {tuple(x.shape)} "
                    f"(batch, columns {cols.start}-{cols.stop - 1})"
                )
        return value.expand_as(x)


@dataclass
class ProjectOut(Intervention):
    """Remove the component along `direction` (directional ablation)."""

    direction: torch.Tensor | None = None

    def transform(self, x, ctx):
        unit = _vector(self.direction, x, f"direction for {self.site}")
        unit = unit / unit.norm()
        return x - (x @ unit).unsqueeze(-1) * unit


@dataclass
class Scale(Intervention):
    """Multiply by `factor`."""

    factor: float = 1.0

    def transform(self, x, ctx):
        return x * self.factor


@dataclass
class Zero(Intervention):
    """Set to zero (zero ablation)."""

    def transform(self, x, ctx):
        return torch.zeros_like(x)


def zero_keys(
    model: LoadedModel, positions: Positions, layers: Sequence[int] | None = None
) -> list[Intervention]:
    """Zero the attention keys at `positions` in `layers` (all by default).

    A zero key gives a zero attention logit (RoPE and RMS-norm map zero to zero), a soft
    mask: the token still receives weight exp(0) and its value is not removed.
    """
    chosen = range(model.n_layers) if layers is None else layers
    return [Zero(f"layers.{layer}.k", positions) for layer in chosen]


def knockout_mask(
    attention_mask: torch.Tensor,
    blocked: Sequence[Sequence[int]],
    dtype: torch.dtype,
    q_offset: int = 0,
) -> torch.Tensor:
    """A 4D additive attention mask [batch, 1, queries, keys] that hides keys from every later
    query: causal, padding from the 2D `attention_mask` [batch, keys], and for each row the
    key positions `blocked[row]` knocked out (the most negative `dtype` value before the
    softmax, so they get exactly zero weight; Geva et al. 2023). Queries are the last
    `keys - q_offset` positions (after a cached prefix of `q_offset` tokens). A blocked token
    still attends to itself, so no query row is ever empty.

    Passed as `attention_mask` to a Hugging Face model it applies in every layer; a model
    with sliding-window layers would lose its window, so callers refuse longer sequences.
    """
    batch, n_keys = attention_mask.shape
    queries = torch.arange(q_offset, n_keys, device=attention_mask.device)[:, None]
    keys = torch.arange(n_keys, device=attention_mask.device)[None, :]
    allowed = (keys <= queries)[None].repeat(batch, 1, 1) & attention_mask.bool()[:, None, :]
    for row, positions in enumerate(blocked):
        if positions:
            cols = torch.tensor(sorted(set(positions)), device=attention_mask.device)
            hidden = queries > cols[None, :]  # [queries, blocked]: later queries only
            allowed[row, :, cols] &= ~hidden
    mask = torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


@contextmanager
def intervene(model: LoadedModel, *interventions: Intervention) -> Iterator[None]:
    """Apply interventions inside the block (forward passes and generation alike)."""
    hooks: list[tuple[SiteRef, SiteFn]] = []
    for item in interventions:
        if not isinstance(item, Intervention):
            raise TypeError(f"expected an Intervention, got {type(item).__name__}")
        refs = resolve_sites(model, [item.site] if isinstance(item.site, SiteRef) else item.site)
        for ref in refs:
            if ref.site == "attn_pattern":
                raise UserError(f"{ref.name}: attention patterns can be read but not intervened on")
            hooks.append((ref, item.hook(ref.name)))
    with site_hooks(model, hooks):
        yield
