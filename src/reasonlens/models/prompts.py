"""Turning text into model inputs: chat templates, BOS handling and padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.tokenization_utils_base import PreTrainedTokenizerBase


def format_prompt(tokenizer: PreTrainedTokenizerBase, text: str, chat: bool = True) -> str:
    """The tokenizer's chat template around a user message, or the text as is."""
    if chat and tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
    return text


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of `text`; a text that already starts with BOS (chat templates) gets no second."""
    bos = tokenizer.bos_token
    has_bos = bool(bos) and text.startswith(bos)
    return tokenizer(text, add_special_tokens=not has_bos)["input_ids"]


def pad_batch(
    ids: Sequence[Sequence[int]], pad_id: int, padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad token id lists into `input_ids` and `attention_mask` tensors."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        cols = slice(width - len(seq), width) if padding_side == "left" else slice(0, len(seq))
        input_ids[row, cols] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return {"input_ids": input_ids, "attention_mask": mask}
