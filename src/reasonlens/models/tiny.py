"""Tiny randomly initialised models of the real HF architectures, for fast tests and benchmarks.

They run the same code paths as the pretrained models (same HF classes, same site map)
in milliseconds. `tiny_tokenizer` is byte-level, so any text encodes without a download.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reasonlens.models.architectures import architecture_for
from reasonlens.models.loading import LoadedModel

SPECIALS = ["<pad>", "<s>", "</s>"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: ids 0-2 are <pad>, <s>, </s>; every byte is one token."""
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for char in sorted(byte_chars):
        vocab[char] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    return tok


def tiny_config(arch: str, vocab_size: int, n_layers: int = 2, d_model: int = 64):
    from transformers import (
        Gemma3TextConfig,
        GPT2Config,
        LlamaConfig,
        Qwen2Config,
        Qwen3Config,
    )

    common = dict(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "qwen3":
        return Qwen3Config(**common, head_dim=d_model // 4)
    if arch == "gemma3":
        return Gemma3TextConfig(**common, head_dim=d_model // 4, sliding_window=16)
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=d_model,
            n_layer=n_layers,
            n_head=4,
            n_positions=2048,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    raise ValueError(f"no tiny config for {arch!r}; choose from {', '.join(TINY_ARCHITECTURES)}")


TINY_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3", "gpt2")


def tiny_model(
    arch: str = "llama",
    seed: int = 0,
    n_layers: int = 2,
    d_model: int = 64,
    attn_implementation: str = "eager",
    **config_overrides,
) -> LoadedModel:
    """A randomly initialised model of a real architecture, with a byte-level tokenizer.

    `config_overrides` set config fields (e.g. attention_bias=True) for hand-built models.
    """
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config = tiny_config(arch, len(tokenizer), n_layers, d_model)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation=attn_implementation
    )
    hf.eval()
    return LoadedModel(
        name=f"tiny-{arch}", hf=hf, tokenizer=tokenizer, arch=architecture_for(hf), source="random"
    )
