"""Length-grouped batches, so little compute goes to padding.

Examples are shuffled, cut into windows of many batches, sorted by length inside each window
and split into batches; the batch order is then shuffled again. Each batch holds examples of
nearly the same length, yet the run still sees them in random order. The order depends only on
the seed and the epoch (not on global RNG state), so an interrupted run that resumes skips
exactly the batches it had already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

#: Batches per sorting window: wide enough that neighbours in length share a batch.
WINDOW_BATCHES = 64


def grouped_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int = 0) -> list[int]:
    """Example indices for one epoch; every `batch_size` consecutive ones are similar in length.

    Only the last batch of the epoch can be short, so a data loader that cuts the order into
    `batch_size` pieces gets exactly these batches.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    window = batch_size * WINDOW_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(perm), window):
        chunk = sorted(perm[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    tail = batches.pop() if batches and len(batches[-1]) < batch_size else None
    shuffled = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    if tail:
        shuffled.append(tail)
    return [i for batch in shuffled for i in batch]


class LengthGroupedSampler(Sampler[int]):
    """Yields :func:`grouped_order`; the Trainer calls `set_epoch` before each epoch."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(grouped_order(self.lengths, self.batch_size, self.seed, self.epoch))


def padding_fraction(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> float:
    """Share of padded positions when `order` is cut into batches padded to their longest."""
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        real += sum(batch)
        padded += max(batch) * len(batch)
    return 1 - real / padded if padded else 0.0
