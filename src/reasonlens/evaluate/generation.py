"""Batched greedy generation with correct left padding and the KV cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reasonlens.models import LoadedModel


def format_prompt(model: LoadedModel, text: str, chat: bool = True) -> str:
    """The model's own chat template around a user message, or the text as is."""
    tok = model.tokenizer
    if chat:
        if not tok.chat_template:
            return text
        return tok.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
    return text


def encode_prompts(model: LoadedModel, prompts: Sequence[str], padding_side: str) -> dict:
    """Tokenize a batch; a prompt that already starts with BOS (chat templates) gets no second."""
    tok = model.tokenizer
    bos = tok.bos_token
    ids = []
    for text in prompts:
        has_bos = bool(bos) and text.startswith(bos)
        ids.append(tok(text, add_special_tokens=not has_bos)["input_ids"])
    width = max(len(x) for x in ids)
    pad = tok.pad_token_id
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        cols = slice(width - len(seq), width) if padding_side == "left" else slice(0, len(seq))
        input_ids[row, cols] = torch.tensor(seq)
        mask[row, cols] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


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
        texts = [format_prompt(model, p, chat) for p in prompts[start : start + batch_size]]
        batch = {k: v.to(model.device) for k, v in encode_prompts(model, texts, "left").items()}
        out = model.hf.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        outputs.extend(tok.batch_decode(new, skip_special_tokens=True))
    return outputs
