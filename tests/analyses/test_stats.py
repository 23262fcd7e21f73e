"""Known answers for the one bootstrap (reasonlens.analyses.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reasonlens.analyses.stats import (
    DRAWS,
    generator,
    paired,
    percentile_interval,
    permutations,
    resample_indices,
    resample_weights,
    row_weights,
)


@pytest.mark.parametrize("draw", DRAWS)
def test_a_seed_fixes_the_resamples_and_another_seed_changes_them(draw):
    first = resample_indices(17, 50, seed=3, draw=draw)
    assert first.shape == (50, 17) and first.dtype == np.int64
    assert np.array_equal(first, resample_indices(17, 50, seed=3, draw=draw))
    assert not np.array_equal(first, resample_indices(17, 50, seed=4, draw=draw))
    assert first.min() >= 0 and first.max() < 17


@pytest.mark.parametrize("draw", DRAWS)
def test_weights_count_the_indices_of_the_same_resamples(draw):
    idx = resample_indices(12, 40, seed=1, draw=draw)
    w = resample_weights(12, 40, seed=1, draw=draw)
    assert w.dtype == np.float64 and np.all(w.sum(1) == 12)
    for row, counts in zip(idx, w, strict=True):
        assert np.array_equal(np.bincount(row, minlength=12), counts)


def test_each_draw_is_the_stream_it_names():
    """The recorded numbers depend on these exact streams: they must never change."""
    n, r, seed = 9, 6, 5
    want = np.random.default_rng(seed).integers(0, n, (r, n))
    assert np.array_equal(resample_indices(n, r, seed), want)
    want = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=r)
    assert np.array_equal(resample_weights(n, r, seed, draw="multinomial"), want)
    want = torch.randint(n, (r, n), generator=torch.Generator().manual_seed(seed))
    assert np.array_equal(resample_indices(n, r, seed, draw="torch"), want.numpy())


def test_the_first_resamples_do_not_depend_on_how_many_are_drawn():
    few = resample_weights(20, 3, seed=2, draw="torch")
    assert np.array_equal(few, resample_weights(20, 100, seed=2, draw="torch")[:3])
    assert np.array_equal(resample_indices(20, 3, 2), resample_indices(20, 100, 2)[:3])


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="at least one group"):
        resample_weights(0, 10, 0)
    with pytest.raises(ValueError, match="unknown draw"):
        resample_indices(5, 10, 0, draw="bogus")  # type: ignore[arg-type]
    assert resample_weights(5, 0, 0).shape == (0, 5)


def test_a_resample_takes_whole_groups():
    # 4 groups (say chains) of different sizes; rows are tokens
    group = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])
    values = np.arange(10.0)
    w = resample_weights(4, 200, seed=0)
    rows = row_weights(w, group)
    assert rows.shape == (200, 10)
    for g in range(4):  # every row of a group is taken as often as the group
        assert np.all(rows[:, group == g] == w[:, [g]])
    idx = resample_indices(4, 200, seed=0)
    for b in range(200):  # the weighted mean is the mean of the drawn groups' rows
        drawn = np.concatenate([values[group == g] for g in idx[b]])
        assert rows[b] @ values / rows[b].sum() == pytest.approx(drawn.mean())


def test_percentile_interval_of_a_known_distribution():
    grid = np.arange(1001) / 1000  # 0, 0.001, ..., 1: its quantile q is q exactly
    low, high = percentile_interval(grid, 0.95)
    assert (float(low), float(high)) == pytest.approx((0.025, 0.975), abs=1e-12)
    low, high = percentile_interval(torch.from_numpy(grid), 0.9)
    assert isinstance(low, torch.Tensor) and low.dtype == torch.float64
    assert (float(low), float(high)) == pytest.approx((0.05, 0.95), abs=1e-12)
    # a standard normal: the 95% interval is +-1.96
    draws = generator(0).standard_normal(200_000)
    low, high = percentile_interval(draws)
    assert float(low) == pytest.approx(-1.96, abs=0.02)
    assert float(high) == pytest.approx(1.96, abs=0.02)


def test_percentile_interval_leaves_out_undefined_resamples_per_column():
    samples = np.stack([np.arange(101.0), np.arange(101.0)], axis=1)
    samples[::2, 1] = np.nan  # the second statistic is undefined in half the resamples
    low, high = percentile_interval(samples, 0.5)
    assert low.shape == (2,)
    assert low[0] == 25 and high[0] == 75
    assert low[1] == 25.5 and high[1] == 74.5  # the quartiles of 1, 3, ..., 99
    t_low, t_high = percentile_interval(torch.from_numpy(samples), 0.5)
    assert np.allclose(t_low.numpy(), low) and np.allclose(t_high.numpy(), high)
    all_nan = percentile_interval(torch.full((10, 1), math.nan), 0.95)
    assert torch.isnan(all_nan[0]).all()


def test_bootstrap_of_a_mean_has_the_textbook_spread():
    values = generator(1).normal(0.0, 1.0, 400)
    w = resample_weights(400, 2000, seed=0)
    means = w @ values / 400
    low, high = percentile_interval(means, 0.95)
    se = values.std() / math.sqrt(400)
    assert float(high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert float(low) < values.mean() < float(high)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_paired_comparison_where_a_beats_b_in_every_resample(kind):
    b = generator(2).normal(size=500)
    a = b + 0.25 + 0.01 * generator(3).random(500)  # higher in every resample
    if kind == "torch":
        a, b = torch.from_numpy(a), torch.from_numpy(b)
    got = paired(a, b, 0.95)
    assert got.share_a_higher == 1.0 and got.a_higher and got.n == 500
    assert 0.25 <= got.low <= got.high <= 0.26


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_paired_comparison_of_identical_estimates_is_zero(kind):
    a = generator(4).normal(size=300)
    if kind == "torch":
        a = torch.from_numpy(a)
    got = paired(a, a * 1, 0.95)
    assert (got.low, got.high) == (0.0, 0.0)
    assert got.share_a_higher == 0.0 and not got.a_higher


def test_paired_comparison_leaves_out_resamples_without_both():
    a = np.array([1.0, 2.0, np.nan, 4.0])
    b = np.array([0.0, 3.0, 1.0, np.nan])
    got = paired(a, b)
    assert got.n == 2 and got.share_a_higher == 0.5
    none = paired(np.array([np.nan]), np.array([1.0]))
    assert none.share_a_higher is None and none.n == 0 and math.isnan(none.low)
    with pytest.raises(ValueError):
        paired(np.zeros(3), np.zeros(4))


def test_permutations_continue_one_stream():
    values = np.arange(6)
    rng = generator(7)
    first, second = permutations(values, 2, rng), permutations(values, 1, rng)
    again = generator(7)
    want = [again.permutation(values) for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(first + second, want, strict=True))
    assert all(sorted(p) == list(values) for p in first)
