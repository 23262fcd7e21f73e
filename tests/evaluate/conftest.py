"""Shared fixtures: small Blocksworld sets of several sizes, and an oracle model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from reasonlens.models import LoadedModel
from reasonlens.models.tiny import tiny_tokenizer
from reasonlens.tasks.blocksworld import generate_problems


@pytest.fixture(scope="session")
def bw_examples():
    """L1/4 blocks, L2/5 blocks and L3/6 blocks test problems: mixed lengths in one list."""
    return (
        generate_problems(4, 1, 3, unique=True, seed=1)
        + generate_problems(5, 2, 3, unique=True, seed=1)
        + generate_problems(6, 3, 2, unique=True, seed=1)
    )


class Oracle(torch.nn.Module):
    """A causal LM whose logits at position t put the maximum on input token t+1.

    Under teacher forcing the next input token is the gold one, so every blank is right, except
    at the positions listed in ``wrong`` (keyed by a row's unpadded token ids), where the
    maximum goes to another token. ``per_row_positions=False`` ignores ``logits_to_keep``, like
    a model that only knows the older integer form of it.
    """

    def __init__(self, vocab_size: int, wrong=None, per_row_positions: bool = True):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device and dtype
        self.vocab_size = vocab_size
        self.wrong = wrong or {}
        self.per_row_positions = per_row_positions
        self.calls: list[tuple[int, int]] = []  # (rows, columns) of every forward pass

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0, **kwargs):
        self.calls.append(tuple(input_ids.shape))
        following = torch.roll(input_ids, -1, dims=1)
        logits = torch.nn.functional.one_hot(following, self.vocab_size).float()
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        for row in range(input_ids.shape[0]):
            ids = tuple(input_ids[row][mask[row].bool()].tolist())
            for pos in self.wrong.get(ids, ()):
                logits[row, pos] = 0.0
                logits[row, pos, (following[row, pos] + 1) % self.vocab_size] = 1.0
        keep = logits_to_keep
        if self.per_row_positions and isinstance(keep, torch.Tensor) and keep.ndim == 2:
            logits = torch.take_along_dim(logits, keep[..., None], dim=1)
        return SimpleNamespace(logits=logits)


@pytest.fixture
def make_oracle(tiny_llama):
    def make(wrong=None, per_row_positions: bool = True) -> LoadedModel:
        tok = tiny_tokenizer()
        return LoadedModel(
            name="oracle",
            hf=Oracle(len(tok), wrong, per_row_positions),
            tokenizer=tok,
            arch=tiny_llama.arch,
            source="test",
        )

    return make
