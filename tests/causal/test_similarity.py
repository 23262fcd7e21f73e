"""Linear CKA: known answers, a plain NumPy reimplementation, every layer pair from two stores
(identical tokens required), massive-activation rows, the shuffled-rows control; direction
cosines between two models."""

import numpy as np
import pytest
import torch

from reasonlens.analyses.directions import Directions
from reasonlens.analyses.similarity import (
    cka_all_pairs,
    cka_matrix,
    cka_subsets,
    direction_cosines,
    linear_cka,
)
from reasonlens.errors import UserError
from reasonlens.models.tiny import tiny_model
from reasonlens.trace import capture
from reasonlens.trace.capture import Activations


def numpy_cka(x, y, debiased=False):
    """The reference: Gram matrices, centred by H (or U-centred, as mklabunde's cka.py)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    k, m = x @ x.T, y @ y.T
    n = len(k)

    def centre(g):
        if not debiased:
            h = np.eye(n) - np.ones((n, n)) / n
            return h @ g @ h
        g = g.copy()
        np.fill_diagonal(g, 0)
        means = g.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        g = g - means[None, :] - means[:, None]
        np.fill_diagonal(g, 0)
        return g

    kc, mc = centre(k), centre(m)
    return (kc * mc).sum() / np.sqrt((kc * kc).sum() * (mc * mc).sum())


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_equals_a_plain_numpy_reimplementation(debiased):
    x = RNG.normal(size=(60, 9)) + 3.0
    y = x[:, :4] @ RNG.normal(size=(4, 7)) + RNG.normal(size=(60, 7))
    assert abs(linear_cka(x, y, debiased) - numpy_cka(x, y, debiased)) < 1e-6
    assert abs(linear_cka(x, x, debiased) - 1.0) < 1e-12


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_invariant_to_rotation_and_scale(debiased):
    x = RNG.normal(size=(80, 12))
    q, _ = np.linalg.qr(RNG.normal(size=(12, 12)))
    assert abs(linear_cka(x, x @ q * 3.7, debiased) - 1.0) < 1e-12


def test_independent_noise_is_near_zero_and_debiased_near_zero_for_small_n():
    big = [linear_cka(RNG.normal(size=(2000, 8)), RNG.normal(size=(2000, 8))) for _ in range(5)]
    assert max(big) < 0.02
    small = [(RNG.normal(size=(20, 30)), RNG.normal(size=(20, 30))) for _ in range(40)]
    biased = np.mean([linear_cka(x, y) for x, y in small])
    debiased = np.array([linear_cka(x, y, debiased=True) for x, y in small])
    assert biased > 0.4  # at small n the biased estimator is far from 0 on noise
    assert abs(debiased.mean()) < 0.03 and debiased.min() < 0  # the debiased one is not


@pytest.mark.parametrize("debiased", [False, True])
def test_all_pairs_equal_pairwise_cka_by_grams_and_by_features(debiased):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(90, 6, generator=gen, dtype=torch.float64) for _ in range(3)]
    ys = [x[:, :4] @ torch.randn(4, 5, generator=gen, dtype=torch.float64) for x in xs]
    expected = torch.tensor(
        [[linear_cka(x, y, debiased) for y in ys] for x in xs], dtype=torch.float64
    )
    wide = [torch.cat([y, torch.randn(90, 200, generator=gen, dtype=torch.float64)], 1) for y in ys]
    expected_wide = torch.tensor(
        [[linear_cka(x, y, debiased) for y in wide] for x in xs], dtype=torch.float64
    )
    by_features = cka_all_pairs(xs, ys, debiased, exact=True)  # narrow: XᵀY is cheaper
    by_grams = cka_all_pairs(xs, wide, debiased, block=32, exact=True)  # wide: Gram blocks
    torch.testing.assert_close(by_features, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(by_grams, expected_wide, rtol=0, atol=1e-12)
    fast = cka_all_pairs(xs, wide, debiased, block=32, exact=False)
    torch.testing.assert_close(fast, by_grams, rtol=0, atol=1e-6)
    # Several row subsets from one pass (centred at the last subset's mean, the others
    # centred in the formula) equal CKA recomputed on each subset.
    keep = torch.rand(90, generator=gen) > 0.3
    for others in (ys, wide):
        every, part = cka_subsets(xs, others, [None, keep], debiased, block=32, exact=True)
        want = [[linear_cka(x[keep], y[keep], debiased) for y in others] for x in xs]
        torch.testing.assert_close(
            part, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-10
        )
        want = [[linear_cka(x, y, debiased) for y in others] for x in xs]
        torch.testing.assert_close(
            every, torch.tensor(want, dtype=torch.float64), rtol=0, atol=1e-10
        )


@pytest.fixture(scope="module")
def two_models():
    torch.set_num_threads(1)
    return tiny_model("llama", seed=0, n_layers=3), tiny_model("llama", seed=1, n_layers=3)


TEXTS = ["the cat sat on the mat", "a dog ran", "reasoning is hard", "wait, let me check"]
SITES = "layers.*.resid_post"


def test_every_layer_pair_from_two_stores(two_models, tmp_path):
    a, b = two_models
    store_a = capture(a, TEXTS, SITES, out=tmp_path / "a", batch_size=3, progress=False)
    store_b = capture(b, TEXTS, SITES, out=tmp_path / "b", batch_size=2, progress=False)
    result = cka_matrix(store_a, store_b)
    assert result.matrix.shape == (3, 3)
    expected = linear_cka(store_a.layer(1), store_b.layer(2))
    assert abs(float(result.matrix[1, 2]) - expected) < 1e-6  # float32 products by default
    exact = cka_matrix(store_a, store_b, exact=True)
    assert abs(float(exact.matrix[1, 2]) - expected) < 1e-12
    first = store_a.positions() == 0
    trimmed = linear_cka(store_a.layer(1)[~first], store_b.layer(2)[~first])
    assert abs(float(exact.matrix_trimmed[1, 2]) - trimmed) < 1e-12
    assert abs(float(result.matrix_trimmed[1, 2]) - trimmed) < 1e-6
    assert result.excluded["first_token_rows"] == len(TEXTS)
    itself = cka_matrix(store_a, store_a, debiased=True)
    torch.testing.assert_close(itself.matrix.diagonal(), torch.ones(3, dtype=torch.float64))
    # Control: a layer against its own rows shuffled is near 0 (debiased).
    assert max(abs(v) for v in itself.shuffled["every_token"]) < 0.2
    record = result.to_dict()
    assert record["diagonal"] is not None and len(record["matrix"]) == 3
    assert result.plot(tmp_path / "cka.png").stat().st_size > 0


def _acts(rows, tokens, positions=None):
    lengths = [len(t) for t in tokens]
    offsets = torch.tensor([0, *np.cumsum(lengths).tolist()])
    if positions is None:
        positions = torch.cat([torch.arange(n) for n in lengths])
    return Activations(
        sites=[f"layers.{i}.resid_post" for i in range(len(rows))],
        data={f"layers.{i}.resid_post": r for i, r in enumerate(rows)},
        row_offsets=offsets,
        positions_=positions,
        tokens=tokens,
    )


def test_massive_activation_rows_are_left_out_of_the_trimmed_matrix():
    gen = torch.Generator().manual_seed(0)
    tokens = [list(range(3, 23)), list(range(30, 50))]
    x = torch.randn(40, 16, generator=gen)
    y = x @ torch.randn(16, 16, generator=gen) + 0.3 * torch.randn(40, 16, generator=gen)
    x[7, 3] = 5e4  # one massive activation (not at a first token)
    result = cka_matrix(_acts([x], tokens), _acts([y], tokens), exact=True)
    assert result.excluded["massive_rows"] == 1
    assert result.excluded["massive_examples"][0] == {"row": 7, "position": 7, "token": 10}
    keep = torch.ones(40, dtype=torch.bool)
    keep[[0, 7, 20]] = False
    assert abs(float(result.matrix_trimmed[0, 0]) - linear_cka(x[keep], y[keep])) < 1e-12
    assert float(result.matrix[0, 0]) < 0.1 < float(result.matrix_trimmed[0, 0])


def test_stores_over_different_tokens_are_refused_naming_the_first_difference():
    x = torch.randn(8, 4)
    a = _acts([x], [[3, 4, 5, 6], [7, 8, 9, 10]])
    with pytest.raises(UserError, match="example 1, token 2: 9 and 99"):
        cka_matrix(a, _acts([x], [[3, 4, 5, 6], [7, 8, 99, 10]]))
    with pytest.raises(UserError, match="example 0, lengths 4 and 3"):
        cka_matrix(a, _acts([x[:7]], [[3, 4, 5], [7, 8, 9, 10]]))
    with pytest.raises(UserError, match="2 examples and 1"):
        cka_matrix(a, _acts([x[:4]], [[3, 4, 5, 6]]))
    other = torch.tensor([0, 1, 2, 3, 0, 1, 3, 2])
    with pytest.raises(
        UserError, match="different token positions \\(first difference at row 6\\)"
    ):
        cka_matrix(a, _acts([x], [[3, 4, 5, 6], [7, 8, 9, 10]], other))
    with pytest.raises(UserError, match="X has 8 rows but Y has 7"):
        linear_cka(x, x[:7])
    with pytest.raises(UserError, match="nested"):
        cka_subsets([x], [x], [torch.arange(8) < 4, torch.arange(8) >= 2])


def _directions(raw, sites, shuffled=None):
    return Directions(
        sites=sites,
        positions=[-1],
        raw=raw,
        mean_a=raw,
        mean_b=torch.zeros_like(raw),
        count_a=torch.ones(1),
        count_b=torch.ones(1),
        shuffled=shuffled,
    )


def test_direction_cosines_between_two_models():
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(3, 1, 64, generator=gen, dtype=torch.float64)
    sites = [f"layers.{i}.resid_pre" for i in range(3)]
    other = raw.clone()
    other[1] = -3 * raw[1]
    shuffled = torch.randn(1, 3, 1, 64, generator=gen, dtype=torch.float64)
    result = direction_cosines(_directions(raw, sites), _directions(other, sites, shuffled))
    assert result.matched["layers.0.resid_pre"] == pytest.approx([1.0])
    assert result.matched["layers.1.resid_pre"] == pytest.approx([-1.0])
    assert result.null_95 == pytest.approx(1.96 / 8, rel=1e-3)
    assert all(abs(v[0]) < 0.5 for v in result.shuffled.values())
    assert result.matrix.shape == (1, 3, 3)
    narrow = _directions(torch.randn(3, 1, 32, dtype=torch.float64), sites)
    with pytest.raises(UserError, match="different widths \\(64 and 32\\)"):
        direction_cosines(_directions(raw, sites), narrow)
