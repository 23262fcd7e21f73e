"""Length-grouped batches: a permutation, similar lengths per batch, reproducible per epoch."""

from __future__ import annotations

import random

from reasonlens.train.batching import LengthGroupedSampler, grouped_order, padding_fraction


def _lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(120, 260) for _ in range(n)]


def test_every_example_once_and_little_padding():
    lengths = _lengths()
    order = grouped_order(lengths, batch_size=8, seed=0)
    assert sorted(order) == list(range(len(lengths)))
    shuffled = random.Random(1).sample(range(len(lengths)), len(lengths))
    assert padding_fraction(lengths, shuffled, 8) > 0.2  # what random batches waste
    assert padding_fraction(lengths, order, 8) < 0.02


def test_order_depends_on_seed_and_epoch_only():
    lengths = _lengths(200)
    assert grouped_order(lengths, 8, seed=3, epoch=1) == grouped_order(lengths, 8, 3, 1)
    assert grouped_order(lengths, 8, seed=3, epoch=1) != grouped_order(lengths, 8, 3, 2)
    sampler = LengthGroupedSampler(lengths, 8, seed=3)
    sampler.set_epoch(2)
    assert list(sampler) == grouped_order(lengths, 8, 3, 2)


def test_only_the_last_batch_is_short():
    lengths = _lengths(101)
    order = grouped_order(lengths, batch_size=8, seed=0)
    # 101 = 12 full batches + 5: the short one comes last, so cutting by 8 keeps batches intact
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert [len(b) for b in batches] == [8] * 12 + [5]
    for batch in batches[:-1]:
        assert max(lengths[i] for i in batch) - min(lengths[i] for i in batch) <= 20
