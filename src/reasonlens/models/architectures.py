"""Where each canonical site lives in each supported Hugging Face architecture.

A site is read from (or written to) a real HF module: its input, its output, or one part of
its output. Nothing is guessed: an architecture not listed here is refused when it loads,
and every path below is checked against the loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reasonlens.errors import UserError

# The canonical vocabulary, in the order the sites fire inside one layer.
SITES: tuple[str, ...] = (
    "resid_pre",  # the layer's input: the residual stream before the layer
    "q",  # query projection output (before RoPE / q-norm)
    "k",  # key projection output (before RoPE / k-norm); zero stays zero through both
    "v",  # value projection output
    "attn_pattern",  # post-softmax attention weights [batch, heads, query, key]; eager only
    "z",  # per-head attention output, the input of the output projection [..., heads * head_dim]
    "attn_out",  # attention sublayer output as added to the residual stream
    "mlp_out",  # MLP sublayer output as added to the residual stream
    "resid_post",  # the layer's output: the residual stream after the layer
)


@dataclass(frozen=True)
class Hook:
    """How to reach one site inside a layer.

    `module` is a dotted path relative to the layer (`""` is the layer itself). `where` says
    which tensor: the module's first positional input, its output (the first element when the
    output is a tuple), or element 1 of its output tuple (the attention weights). `chunk` picks
    one third of the last dimension, for fused q/k/v projections (GPT-2's `c_attn`).
    """

    module: str
    where: str  # "input" | "output" | "output[1]"
    chunk: int | None = None


@dataclass(frozen=True)
class Architecture:
    """The site map of one family of HF models."""

    name: str
    model_types: tuple[str, ...]
    base: str  # the decoder stack (its forward receives the KV cache)
    layers: str  # the ModuleList of blocks
    embed: str
    final_norm: str
    unembed: str
    sites: dict[str, Hook]
    # The modules whose outputs are added to the residual stream, relative to a layer: the
    # attention output projection and the MLP down projection (weight orthogonalisation edits
    # them). `direct_writes` is False where a norm sits between them and the stream (Gemma's
    # sandwich norms), so editing their weights cannot remove a direction from the stream.
    attn_proj: str = "self_attn.o_proj"
    mlp_proj: str = "mlp.down_proj"
    direct_writes: bool = True
    pos_embed: str | None = None  # learned absolute position embeddings (GPT-2's wpe)

    def hook(self, site: str) -> Hook:
        return self.sites[site]


def _llama_like(
    name: str,
    model_types: tuple[str, ...],
    attn_out: str = "self_attn",
    mlp_out: str = "mlp",
    direct_writes: bool = True,
) -> Architecture:
    return Architecture(
        name=name,
        model_types=model_types,
        base="model",
        layers="model.layers",
        embed="model.embed_tokens",
        final_norm="model.norm",
        unembed="lm_head",
        sites={
            "resid_pre": Hook("", "input"),
            "q": Hook("self_attn.q_proj", "output"),
            "k": Hook("self_attn.k_proj", "output"),
            "v": Hook("self_attn.v_proj", "output"),
            "attn_pattern": Hook("self_attn", "output[1]"),
            "z": Hook("self_attn.o_proj", "input"),
            "attn_out": Hook(attn_out, "output"),
            "mlp_out": Hook(mlp_out, "output"),
            "resid_post": Hook("", "output"),
        },
        direct_writes=direct_writes,
    )


# Gemma normalises each sublayer's output before the residual add ("sandwich" norms), so
# what is added to the stream, and what attn_out/mlp_out mean, is the post-norm output.
_GEMMA3 = _llama_like(
    "gemma3",
    ("gemma3_text",),
    attn_out="post_attention_layernorm",
    mlp_out="post_feedforward_layernorm",
    direct_writes=False,
)

_GPT2 = Architecture(
    name="gpt2",
    model_types=("gpt2",),
    base="transformer",
    layers="transformer.h",
    embed="transformer.wte",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    sites={
        "resid_pre": Hook("", "input"),
        "q": Hook("attn.c_attn", "output", chunk=0),
        "k": Hook("attn.c_attn", "output", chunk=1),
        "v": Hook("attn.c_attn", "output", chunk=2),
        "attn_pattern": Hook("attn", "output[1]"),
        "z": Hook("attn.c_proj", "input"),
        "attn_out": Hook("attn", "output"),  # c_proj + resid_dropout, before the residual add
        "mlp_out": Hook("mlp", "output"),
        "resid_post": Hook("", "output"),
    },
    attn_proj="attn.c_proj",
    mlp_proj="mlp.c_proj",
    pos_embed="transformer.wpe",
)

ARCHITECTURES: tuple[Architecture, ...] = (
    _llama_like("llama", ("llama",)),
    _llama_like("qwen2", ("qwen2",)),
    _llama_like("qwen3", ("qwen3",)),
    _GEMMA3,
    _GPT2,
)


def supported_model_types() -> list[str]:
    return sorted(t for arch in ARCHITECTURES for t in arch.model_types)


def architecture_for(model: torch.nn.Module) -> Architecture:
    """The site map for a loaded HF model, checked against the model's real modules."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for arch in ARCHITECTURES:
        if model_type in arch.model_types:
            check_architecture(model, arch)
            return arch
    raise UserError(
        f"architecture {model_type!r} is not supported (reasonlens maps sites only for "
        f"architectures it has checked); supported model types: "
        f"{', '.join(supported_model_types())}"
    )


def check_architecture(model: torch.nn.Module, arch: Architecture) -> None:
    """Fail loudly if any path of the map is missing from this model instance."""
    for path in (arch.base, arch.layers, arch.embed, arch.final_norm, arch.unembed):
        _require(model, path, arch)
    if arch.pos_embed is not None:
        _require(model, arch.pos_embed, arch)
    layers = model.get_submodule(arch.layers)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise UserError(f"{arch.name}: {arch.layers} is not a non-empty list of layers")
    for index in {0, len(layers) - 1}:
        for hook in arch.sites.values():
            if hook.module:
                _require(model, f"{arch.layers}.{index}.{hook.module}", arch)
        for path in (arch.attn_proj, arch.mlp_proj):
            _require(model, f"{arch.layers}.{index}.{path}", arch)


def _require(model: torch.nn.Module, path: str, arch: Architecture) -> None:
    try:
        model.get_submodule(path)
    except AttributeError:
        raise UserError(
            f"model does not match the {arch.name} site map: no module {path!r}; "
            "this transformers version may have renamed it"
        ) from None
