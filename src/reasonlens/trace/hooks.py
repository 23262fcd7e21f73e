"""Forward hooks on real HF modules, addressed by canonical site, always removed on exit.

One function reads (and may replace) the tensor of a site. Everything else in reasonlens,
capture and every intervention, is built on `site_hooks`, so there is one place where
tuple outputs, positional/keyword inputs and fused q/k/v projections are handled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from reasonlens.errors import UserError
from reasonlens.models.loading import LoadedModel
from reasonlens.trace.sites import SiteRef

# fn(tensor, ctx) -> replacement tensor, or None to leave it unchanged
SiteFn = Callable[[torch.Tensor, "ForwardContext"], torch.Tensor | None]


@dataclass
class ForwardContext:
    """What a hook needs to know about the forward pass in progress.

    `offset` is the absolute position of the first token in this call: 0 for a plain
    forward, the cached length during KV-cache generation, so positions can be given once
    and mean the same token in every decoding step.
    """

    offset: int = 0


class StopForward(Exception):
    """Raised by a hook to end a forward pass early, once the last needed site has fired."""


def _module(model: LoadedModel, ref: SiteRef) -> torch.nn.Module:
    hook = model.arch.hook(ref.site)
    layer = model.layers[ref.layer]
    return layer.get_submodule(hook.module) if hook.module else layer


def _chunk(x: torch.Tensor, chunk: int | None) -> tuple[torch.Tensor, slice | None]:
    if chunk is None:
        return x, None
    width = x.shape[-1] // 3
    cols = slice(chunk * width, (chunk + 1) * width)
    return x[..., cols], cols


def _merge(x: torch.Tensor, cols: slice | None, new: torch.Tensor) -> torch.Tensor:
    if cols is None:
        return new
    merged = x.clone()
    merged[..., cols] = new
    return merged


def _register(
    model: LoadedModel, ref: SiteRef, fn: SiteFn, ctx: ForwardContext
) -> torch.utils.hooks.RemovableHandle:
    hook = model.arch.hook(ref.site)
    module = _module(model, ref)

    if hook.where == "input":

        def pre_hook(_mod, args, kwargs):
            if args:
                new = fn(args[0], ctx)
                return None if new is None else ((new, *args[1:]), kwargs)
            new = fn(kwargs["hidden_states"], ctx)
            return None if new is None else (args, {**kwargs, "hidden_states": new})

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    if hook.where == "output":

        def post_hook(_mod, _args, output):
            whole = output[0] if isinstance(output, tuple) else output
            part, cols = _chunk(whole, hook.chunk)
            new = fn(part, ctx)
            if new is None:
                return None
            new = _merge(whole, cols, new)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return module.register_forward_hook(post_hook)

    # "output[1]": attention weights, read-only (the output was already computed from them)
    def pattern_hook(_mod, _args, output):
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise UserError(
                f"{ref.name}: no attention weights were returned; attention patterns need "
                "attn_implementation='eager'"
            )
        if fn(weights, ctx) is not None:
            raise UserError(f"{ref.name}: attention patterns can be read but not replaced")

    return module.register_forward_hook(pattern_hook)


def _track_offset(model: LoadedModel, ctx: ForwardContext) -> torch.utils.hooks.RemovableHandle:
    def pre_hook(_mod, _args, kwargs):
        cache = kwargs.get("past_key_values")
        ctx.offset = int(cache.get_seq_length()) if cache is not None else 0

    return model.base.register_forward_pre_hook(pre_hook, with_kwargs=True)


@contextmanager
def site_hooks(
    model: LoadedModel,
    hooks: list[tuple[SiteRef, SiteFn]],
    stop_after_layer: int | None = None,
) -> Iterator[ForwardContext]:
    """Attach `fn` to each site for the duration of the block; hooks are removed on any exit.

    Hooks on the same site run in list order, each seeing the previous one's result, so
    interventions compose. With `stop_after_layer`, the forward pass ends (StopForward) as
    soon as that layer has run, which skips the rest of the model when nothing later is needed.
    """
    ctx = ForwardContext()
    needs_eager = any(ref.site == "attn_pattern" for ref, _ in hooks)
    previous_attn = model.hf.config._attn_implementation
    handles = [_track_offset(model, ctx)]
    try:
        if needs_eager and previous_attn != "eager":
            model.hf.set_attn_implementation("eager")
        for ref, fn in hooks:
            handles.append(_register(model, ref, fn, ctx))
        if stop_after_layer is not None and stop_after_layer < model.n_layers - 1:

            def stop(_mod, _args, _output):
                raise StopForward

            handles.append(model.layers[stop_after_layer].register_forward_hook(stop))
        yield ctx
    finally:
        for handle in handles:
            handle.remove()
        if needs_eager and previous_attn != "eager":
            model.hf.set_attn_implementation(previous_attn)
