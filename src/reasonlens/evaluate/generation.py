"""Batched greedy generation with correct left padding and the KV cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reasonlens.models import LoadedModel
from reasonlens.models.prompts import format_prompt, pad_batch, tokenize


@torch.inference_mode()
def generate(
    model: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    chat: bool = True,
) -> list[str]:
    """Greedy completions for many prompts, `batch_size` at a time, left-padded."""
    outputs: list[str] = []
    tok = model.tokenizer
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [tokenize(tok, format_prompt(tok, p, chat)) for p in chunk]
        batch = {k: v.to(model.device) for k, v in pad_batch(ids, tok.pad_token_id, "left").items()}
        out = model.hf.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        outputs.extend(tok.batch_decode(new, skip_special_tokens=True))
    return outputs
