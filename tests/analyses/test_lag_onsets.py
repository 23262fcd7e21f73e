"""Lag probes at onsets, the prefix lexical baseline and the permutation null: known answers
(a feature of the present scores chance at onsets; a feature planted k tokens before each
onset is found at +k and not at +2k), exact targets and counts, the batched null equal to each
draw fitted alone, and a baseline that only reads the past."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reasonlens.analyses.lag_probes import (
    LagProbeConfig,
    LagProbes,
    TensorChains,
    WithLabels,
    fit_lag_probes,
    lag_targets,
    onset_counts,
    permutation_null,
    permuted_chain_labels,
    position_features,
    prefix_lexical_source,
)
from reasonlens.analyses.stats import generator, null_quantile, permutation_p, permutations
from reasonlens.errors import UserError


def spans(n: int, t: int, length: tuple[int, int], gap: tuple[int, int], seed: int):
    """Labels of ``n`` chains of ``t`` tokens (the first 4 a prompt: -1) with spans of
    ``length`` tokens every ``gap`` tokens (uniform in the ranges), and each chain's onsets."""
    rng = np.random.default_rng(seed)
    labels, onsets = [], []
    for _ in range(n):
        y = torch.zeros(t, dtype=torch.long)
        y[:4] = -1
        starts = []
        s = int(rng.integers(6, 20))
        while s + length[1] < t:
            y[s : s + int(rng.integers(*length, endpoint=True))] = 1
            starts.append(s)
            s += length[1] + int(rng.integers(*gap, endpoint=True))
        labels.append(y)
        onsets.append(starts)
    return labels, onsets


def test_onset_targets_leave_out_rows_inside_a_span():
    y = torch.tensor([-1, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    every = lag_targets(y, (2,))[:, 0].tolist()
    onset = lag_targets(y, (2,), onset=True)[:, 0].tolist()
    assert every == [-1, 1, 1, 1, 0, 0, 1, 1, -1, -1]
    # rows 3-5 are inside a span: their t+2 would be the span going on (or its end)
    assert onset == [-1, 1, 1, -1, -1, -1, 1, 1, -1, -1]
    with pytest.raises(ValueError, match="positive lags"):
        lag_targets(y, (0, 2), onset=True)
    with pytest.raises(UserError, match="every lag must be positive"):
        LagProbeConfig(lags=(-4, 4), targets="onset")
    counts = onset_counts([y], (-2, 2))
    assert counts == [
        {"lag": 2, "rows": 7, "positives": 5, "continuation": 1, "onset_rows": 4,
         "onset_positives": 4, "excluded": 3},
    ]  # fmt: skip


def test_onset_targets_are_every_span_beginning_in_the_window_by_brute_force():
    labels, _ = spans(5, 120, (3, 12), (0, 15), seed=3)
    for y in labels:
        got = lag_targets(y, (1, 5, 13), onset=True)
        for t in range(len(y)):
            for k, lag in enumerate((1, 5, 13)):
                u = t + lag
                if y[t] != 0 or u >= len(y):
                    want = -1
                else:
                    start = u
                    while start > 0 and y[start - 1] == 1 and y[u] == 1:
                        start -= 1
                    want = int(y[u] == 1 and t < start <= u)
                assert got[t, k] == want, (t, lag)


def test_a_feature_of_the_present_scores_chance_at_onsets():
    """Knowing only "inside a span now" and how far into it: high AUC on all targets at small
    lags (continuation), exactly 0.5 at onsets (every row kept has the same value)."""
    labels, _ = spans(40, 160, (10, 12), (8, 30), seed=0)
    feats = []
    for y in labels:
        depth = torch.zeros(len(y))
        for t in range(1, len(y)):
            depth[t] = depth[t - 1] + 1 if y[t] == 1 else 0
        feats.append(torch.stack([(y == 1).float(), depth], 1)[None])
    source = TensorChains(feats, labels, layers=["present"])
    lags = (4, 8, 12, 16)
    every = fit_lag_probes(source, lags=lags, bootstrap=0, device="cpu", lr=1e-2)
    onset = fit_lag_probes(source, lags=lags, bootstrap=0, device="cpu", lr=1e-2, targets="onset")
    assert every.test["auc"].value[0, 0] > 0.75 and every.test["auc"].value[0, 1] > 0.6
    assert torch.equal(onset.test["auc"].value[0], torch.full((4,), 0.5))


def planted(k: int, n: int = 60, seed: int = 0) -> tuple[TensorChains, list[list[int]]]:
    """Spans of 2-3 tokens; feature 0 fires (with noise) k tokens before each onset, feature 1
    is noise."""
    labels, onsets = spans(n, 200, (2, 3), (20, 40), seed)
    gen = torch.Generator().manual_seed(seed)
    feats = []
    for y, starts in zip(labels, onsets, strict=True):
        x = 0.4 * torch.randn(len(y), 2, generator=gen)
        for s in starts:
            if s - k >= 0:
                x[s - k, 0] += 1.5
        feats.append(x[None])
    return TensorChains(feats, labels, layers=["planted"]), onsets


def test_a_feature_planted_k_before_each_onset_is_found_at_k_not_2k():
    k = 6
    source, _ = planted(k)
    config = LagProbeConfig(lags=(k, 2 * k), targets="onset", bootstrap=300, device="cpu")
    fit = fit_lag_probes(source, config)
    null = permutation_null(source, config, fit.split, fit.best_layers(), 30)
    versus = null.compare(fit.test, fit.best_layers())
    auc = fit.test["auc"]
    upper = null.upper()
    assert auc.low[0, 0] > upper[0] + 0.02 and versus[0]["beats"]
    assert versus[0]["p_value"] == pytest.approx(1 / 31)
    # at +2k the fired row is 2k - k tokens before an onset: its span has begun and ended by
    # t+2k (2-3 tokens long), a little information that no onset falls there, not a detection
    assert auc.low[0, 1] < upper[1] + 0.02 and not versus[1]["beats"]
    assert 0.4 < float(null_quantile(null.auc, 0.5, axis=0)[0]) < 0.6


def test_the_batched_null_equals_each_shuffle_fitted_alone():
    source, _ = planted(4, n=30, seed=1)
    config = LagProbeConfig(lags=(4, 8), targets="onset", bootstrap=0, device="cpu")
    fit = fit_lag_probes(source, config)
    null = permutation_null(source, config, fit.split, [0, 0], 5, seed=7)
    perms = permutations(np.arange(30), 5, generator(7))
    for p in (0, 3):
        alone = fit_lag_probes(
            WithLabels(source, permuted_chain_labels(source.labels, perms[p])),
            config,
            split=fit.split,
        )
        assert torch.allclose(alone.test["auc"].value[0], null.auc[p], atol=1e-5)
    d = null.to_dict()
    assert d["permutations"] == 5 and len(d["per_lag"][0]["draws"]) == 5
    assert d["per_lag"][1]["upper"] == pytest.approx(float(null_quantile(null.auc[:, 1], 0.95)))


def test_a_null_draw_with_one_class_learns_nothing_instead_of_failing():
    labels = [torch.tensor([0, 0, 0, 1, 1, 0, 0, 0, 0, 0])] * 2 + [torch.zeros(10).long()] * 4
    feats = [torch.randn(1, 10, 3) for _ in labels]
    source = TensorChains(feats, labels)
    config = LagProbeConfig(lags=(2,), targets="onset", bootstrap=0, device="cpu", seed=1)
    from reasonlens.analyses.lag_probes import ChainSplit

    split = ChainSplit(train=(0, 2), val=(1, 3), test=(4, 5))
    with pytest.raises(UserError, match="only one class"):
        fit_lag_probes(WithLabels(source, [labels[2], labels[0], *labels[2:]]), config, split=split)
    perms = permutations(np.arange(6), 4, generator(0))
    assert any(p[0] > 1 and p[2] > 1 for p in perms)  # a draw whose training chains lack spans
    null = permutation_null(source, config, split, [0], 4, seed=0)
    assert null.auc.shape == (4, 1)


def test_the_prefix_baseline_reads_only_the_past():
    labels, _ = spans(3, 60, (3, 5), (5, 10), seed=2)
    gen = torch.Generator().manual_seed(0)
    tokens = [torch.randint(0, 30, (60,), generator=gen).tolist() for _ in labels]
    source = prefix_lexical_source(tokens, labels, k=4)
    (x,) = source.features([0])
    assert x.shape == (1, 60, 2 * source.dim + 26) and source.layers == ["prefix"]
    t = 30
    changed_tokens = [tokens[0][: t + 1] + tokens[0][t + 1 :][::-1], *tokens[1:]]  # same vocabulary
    changed_labels = [torch.cat([labels[0][: t + 1], 1 - labels[0][t + 1 :].clamp(min=0)])]
    other = prefix_lexical_source(changed_tokens, changed_labels + labels[1:], k=4)
    (y,) = other.features([0])
    assert torch.equal(x[0, : t + 1], y[0, : t + 1])
    assert not torch.equal(x[0, t + 1 :], y[0, t + 1 :])
    # the counts of every token so far: the prompt's too
    first = source.column(torch.tensor(tokens[0][:1]))
    assert math.isclose(float(x[0, 0, first]), math.log(2), rel_tol=1e-6)


def test_position_features_by_hand():
    y = torch.tensor([-1, -1, 0, 0, 1, 1, 0, 0, 0, 1])
    f = position_features(y)
    pos, seen, since, n_spans, inside, into = (f[:, i] for i in (0, 11, 12, 23, 24, 25))
    assert torch.allclose(pos, torch.log1p(torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7.0])))
    assert seen.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert torch.allclose(since, torch.log1p(torch.tensor([0, 0, 0, 0, 0, 0, 1, 2, 3, 0.0])))
    assert torch.allclose(n_spans, torch.log1p(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 2.0])))
    assert inside.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert torch.allclose(into, torch.log1p(torch.tensor([0, 0, 0, 0, 0, 1, 0, 0, 0, 0.0])))
    assert f[:, 1:11].sum(1).tolist() == [1.0] * 10  # one distance bin each


def test_onset_probes_save_and_load(tmp_path):
    labels, _ = spans(12, 60, (3, 5), (5, 10), seed=4)
    source = TensorChains([torch.randn(1, 60, 4) for _ in labels], labels)
    fit = fit_lag_probes(source, lags=(2, 4), targets="onset", bootstrap=0, device="cpu")
    assert fit.probes.onset
    back = LagProbes.load(fit.probes.save(tmp_path / "p.safetensors"))
    assert back.onset and back.lags == [2, 4]
    again = back.evaluate(source, fit.split.test, bootstrap=0, device="cpu")
    assert torch.equal(again["auc"].value, fit.test["auc"].value)


def test_null_quantile_and_permutation_p():
    draws = np.arange(1, 101) / 100
    assert null_quantile(draws, 0.95) == pytest.approx(0.9505)
    assert float(null_quantile(torch.tensor(draws), 0.5)) == pytest.approx(0.505)
    assert permutation_p(0.995, draws) == pytest.approx(2 / 101)  # 1.00 >= 0.995
    assert permutation_p(0.5, draws) == pytest.approx(52 / 101)
    assert permutation_p(0.5, [np.nan]) is None
