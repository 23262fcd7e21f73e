"""Lag probes: known answers, the batched grid equals probes fitted alone, exact metrics,
streaming from an activation store, and the controls."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from reasonlens.analyses.lag_probes import (
    FeatureSubset,
    LagProbeConfig,
    LagProbes,
    StoreChains,
    TensorChains,
    bag_of_tokens_source,
    compare,
    fit_lag_probes,
    labels_from_rows,
    lag_targets,
    score_chains,
    score_set,
    sentence_start_labels,
    shuffled_chain_labels,
    split_chains,
    starts_sentence,
    token_embedding_source,
)
from reasonlens.analyses.lag_probes import metrics as M
from reasonlens.analyses.stats import resample_weights
from reasonlens.errors import UserError

LAGS = (-4, 0, 4, 8, 12)
K = 8  # the planted lag


def planted(n=60, t=100, d=16, k=K, seed=0, prompt=0):
    """Layer "signal": x[t] ~ N(0, I), label[t + k] = 1 when w.x[t] is high (about 8% of
    tokens); layer "noise": independent of everything. The first ``prompt`` tokens of each
    chain are not scored."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=gen)
    feats, labels = [], []
    for _ in range(n):
        x = torch.randn(t, d, generator=gen)
        y = torch.zeros(t, dtype=torch.long)
        y[k:] = (x[: t - k] @ w > 1.4 * w.norm()).long()
        y[:prompt] = -1
        feats.append(torch.stack([x, torch.randn(t, d, generator=gen)]))
        labels.append(y)
    return TensorChains(feats, labels, layers=["signal", "noise"])


@pytest.fixture(scope="module")
def source():
    return planted()


@pytest.fixture(scope="module")
def fitted(source):
    torch.set_num_threads(1)
    return fit_lag_probes(source, lags=LAGS, bootstrap=200, device="cpu")


def test_planted_labels_are_found_at_their_lag_only(fitted):
    auc = fitted.test["auc"].value
    k = LAGS.index(K)
    assert auc[0, k] > 0.93 and fitted.test["auc"].low[0, k] > 0.9
    others = [i for i in range(len(LAGS)) if i != k]
    assert (auc[0, others] < 0.62).all() and (auc[1] < 0.62).all()
    f1, chance = fitted.test["f1"].value, fitted.test["chance_f1"].value
    assert f1[0, k] > 0.6 > 0.3 > chance[0, k]
    assert fitted.best_per_lag("auc")[k]["layer"] == "signal"
    assert fitted.best_layers("auc")[k] == 0  # chosen on validation chains


def test_the_shuffled_chain_control_is_at_chance(source, fitted):
    control = fit_lag_probes(
        shuffled_chain_labels(source, seed=1), split=fitted.split, lags=LAGS, bootstrap=200,
        device="cpu",
    )  # fmt: skip
    auc = control.test["auc"]
    assert (auc.value - 0.5).abs().max() < 0.1
    covers = (auc.low <= 0.5) & (auc.high >= 0.5)
    assert covers.float().mean() >= 0.7
    rows = compare(fitted.test, control.test, "auc", fitted.best_layers(), 0)
    assert [r["beats"] for r in rows] == [lag == K for lag in LAGS]


def test_the_batched_grid_equals_each_probe_fitted_alone(source, fitted):
    k = LAGS.index(K)
    for layer, lag in ((0, K), (1, 0)):
        alone = fit_lag_probes(
            FeatureSubset(source, [layer]),
            split=fitted.split,
            lags=(lag,),
            bootstrap=0,
            device="cpu",
        )
        j = LAGS.index(lag)
        assert torch.allclose(alone.probes.weight[0, 0], fitted.probes.weight[layer, j], atol=1e-6)
        assert alone.best_epoch[0, 0] == fitted.best_epoch[layer, j]
    assert math.isclose(alone.test["auc"].value[0, 0], fitted.test["auc"].value[1, 1], abs_tol=1e-6)
    assert fitted.best_epoch[0, k] >= 1


def test_metrics_equal_scikit_learn(source, fitted):
    probes = fitted.probes
    chains = list(fitted.split.test)
    scores, targets, where = score_chains(
        probes.weight, probes.bias, probes.reader(source, "cpu"), chains
    )
    for f, k in ((0, LAGS.index(K)), (1, 0)):
        valid = targets[k] >= 0
        y, s = targets[k][valid].numpy(), scores[f, k][valid].numpy()
        pred = s >= float(probes.threshold[f, k])
        got = fitted.test
        assert math.isclose(roc_auc_score(y, s), got["auc"].value[f, k], rel_tol=1e-5)
        assert math.isclose(f1_score(y, pred), got["f1"].value[f, k], rel_tol=1e-5)
        assert math.isclose(precision_score(y, pred), got["precision"].value[f, k], rel_tol=1e-5)
        assert math.isclose(recall_score(y, pred), got["recall"].value[f, k], rel_tol=1e-5)
        p = y.mean()
        assert math.isclose(f1_score(y, np.ones_like(y)), 2 * p / (1 + p), rel_tol=1e-9)
        assert math.isclose(2 * p / (1 + p), got["chance_f1"].value[f, k], rel_tol=1e-5)
        # one bootstrap resample is the sample-weighted AUC with each chain's multiplicity
        weight = torch.from_numpy(
            resample_weights(len(chains), 3, fitted.test.seed, draw="torch")[2]
        )
        rows_w = weight[where][valid].numpy()
        want = roc_auc_score(y, s, sample_weight=rows_w)
        assert math.isclose(want, got["auc"].samples[2, f, k], rel_tol=1e-5)


def test_auc_ties_and_best_threshold_by_brute_force():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 6, (4, 300), generator=gen).float()  # many ties
    target = torch.randint(0, 2, (4, 300), generator=gen)
    target[:, ::7] = -1
    chain = torch.arange(300) % 9
    for p in range(4):
        v = target[p] >= 0
        pairs = M.pair_matrix(scores[p], target[p], chain, 9)
        auc = pairs.sum() / ((target[p] == 1).sum() * (target[p] == 0).sum())
        assert math.isclose(float(auc), roc_auc_score(target[p][v], scores[p][v]), rel_tol=1e-9)
    thr, f1 = M.best_f1_threshold(scores, target)
    for p in range(4):
        v = target[p] >= 0
        brute = max(
            f1_score(target[p][v], scores[p][v] >= c) for c in torch.unique(scores[p][v]).tolist()
        )
        assert math.isclose(float(f1[p]), brute, rel_tol=1e-6)
        assert math.isclose(f1_score(target[p][v], scores[p][v] >= thr[p]), brute, rel_tol=1e-6)


def test_lag_targets_stay_inside_the_chain():
    y = torch.tensor([-1, -1, 0, 1, 0, 0, 1])  # two prompt tokens
    t = lag_targets(y, (-2, 0, 3))
    assert t[:2].eq(-1).all()  # prompt rows
    assert t[:, 1].tolist() == [-1, -1, 0, 1, 0, 0, 1]
    assert t[:, 0].tolist() == [-1, -1, -1, -1, 0, 1, 0]  # t - 2 inside the chain only
    assert t[:, 2].tolist() == [-1, -1, 0, 1, -1, -1, -1]


def test_streaming_reads_a_few_chains_at_a_time_and_gives_the_same_probes(source, fitted):
    class Counting(TensorChains):
        largest = 0

        def features(self, chains):
            Counting.largest = max(Counting.largest, len(chains))
            return super().features(chains)

    counting = Counting(
        [source.features([i])[0] for i in range(60)], source.labels, layers=source.layers
    )
    streamed = fit_lag_probes(
        counting, split=fitted.split, lags=LAGS, bootstrap=0, device="cpu", cache_bytes=0,
        batch_tokens=400,
    )  # fmt: skip
    assert Counting.largest <= 8
    assert torch.allclose(streamed.probes.weight, fitted.probes.weight, atol=1e-6)


def test_activation_store_chains(tiny_llama, tmp_path):
    from reasonlens.trace import TraceInput, capture

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(3, 200, (n,), generator=gen).tolist() for n in (30, 41, 25, 38, 33)]
    rows = [{"input_ids": t, "labels": [int(i % 5 == 0) for i in range(len(t))], "start": 4}
            for t in ids]  # fmt: skip
    inputs = [TraceInput(input_ids=tuple(t)) for t in ids]
    sites = ["layers.0.resid_pre", "layers.1.resid_post"]
    store = capture(tiny_llama, inputs, sites, batch_size=2, out=tmp_path / "acts", progress=False)
    labels = labels_from_rows(rows)
    chains = StoreChains(store, sites, labels, input_ids=ids, layers=[0, 2])
    got = chains.features([3, 1, 2])
    memory = capture(tiny_llama, inputs, sites, batch_size=2, progress=False)
    for i, f in zip([3, 1, 2], got, strict=True):
        assert f.shape == (2, len(ids[i]), tiny_llama.hf.config.hidden_size)
        assert torch.equal(f[1], memory.example(i, sites[1]))
    emb = tiny_llama.hf.get_input_embeddings().weight.detach()
    assert torch.allclose(got[0][0], emb[torch.tensor(ids[3])], atol=1e-6)  # llama: resid_pre 0
    result = fit_lag_probes(chains, lags=(0, 4), bootstrap=20, device="cpu")
    assert result.test["auc"].value.shape == (2, 2)
    with pytest.raises(UserError, match="chain 1: the store's tokens differ"):
        StoreChains(store, sites, labels, input_ids=[ids[0], ids[0][:41], *ids[2:]])
    with pytest.raises(UserError, match="chain 0: the store holds 30 tokens, the labels 29"):
        StoreChains(store, sites, [labels[0][:-1], *labels[1:]])
    with pytest.raises(UserError, match="not in the activation store"):
        StoreChains(store, ["layers.1.mlp_out"], labels)


def test_lexical_baselines():
    gen = torch.Generator().manual_seed(1)
    ids = [torch.randint(0, 40, (80,), generator=gen).tolist() for _ in range(50)]
    labels = []
    for t in ids:  # backtracking 4 tokens after the token 7
        y = torch.zeros(80, dtype=torch.long)
        hits = [i + 4 for i, tok in enumerate(t) if tok == 7 and i + 4 < 80]
        y[hits] = 1
        labels.append(y)
    bag = bag_of_tokens_source(ids, labels, k=1)
    assert not bag.hashed and bag.dim == 40 and bag.layers == ["bag1"]
    x = bag.features([0])[0]
    assert x.shape == (1, 80, 40) and torch.equal(x[0].sum(1), torch.ones(80))
    wide = bag_of_tokens_source(ids, labels, k=3, dim=16)
    assert wide.hashed and wide.features([0])[0].shape == (1, 80, 16)
    result = fit_lag_probes(bag, lags=(0, 4), bootstrap=0, device="cpu")
    assert result.test["auc"].value[0, 1] > 0.95 and result.test["auc"].value[0, 0] < 0.7
    emb = torch.randn(40, 8, generator=gen)
    embed = token_embedding_source(emb, ids, labels)
    assert torch.equal(embed.features([2])[0][0], emb[torch.tensor(ids[2])])
    assert fit_lag_probes(embed, lags=(4,), bootstrap=0, device="cpu").test["auc"].value[0, 0] > 0.9


def test_positives_split_by_sentence_start():
    texts = ["I", " think", " so", ".", " Wait", ",", " no", " and", " wait", "\n", "But", " ok"]
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1])
    assert (
        starts_sentence(texts, 4) and not starts_sentence(texts, 8) and starts_sentence(texts, 10)
    )
    starting, inside = sentence_start_labels([y], [texts])
    assert starting[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 0, -1, 0, 1, 1]
    assert inside[0].tolist() == [0, 0, 0, 0, -1, -1, -1, 0, 1, 0, -1, -1]


def test_probes_evaluate_other_labels_and_save(source, fitted, tmp_path):
    starting = [torch.where(y == 1, -1, y) if i % 2 else y for i, y in enumerate(source.labels)]
    scores = fitted.probes.evaluate(
        source, fitted.split.test, labels=starting, bootstrap=0, device="cpu"
    )
    assert int(scores.n_positive.sum()) < int(fitted.test.n_positive.sum())
    path = fitted.probes.save(tmp_path / "probes.safetensors")
    again = LagProbes.load(path)
    assert again.layers == ["signal", "noise"] and again.lags == list(LAGS)
    x = torch.randn(2, 5, 16)
    assert torch.allclose(again.logits(x), fitted.probes.logits(x))
    w, b = fitted.probes.activation_weights()
    manual = torch.einsum("fnd,fkd->fnk", x, w) + b[:, None]
    assert torch.allclose(manual, fitted.probes.logits(x), atol=1e-4)
    record = json.loads(json.dumps(fitted.to_dict()))
    assert record["lags"] == list(LAGS) and len(record["test"]["cells"]) == 2 * len(LAGS)
    per = fitted.per_example()
    assert per["tp"].shape == (len(fitted.split.test), 2, len(LAGS))
    assert per["auc_pairs"].shape[-1] == len(fitted.split.test)


def test_score_set_without_bootstrap_has_no_intervals():
    scores = torch.randn(1, 2, 40)
    targets = (torch.arange(80).view(2, 40) % 3 == 0).to(torch.int8)
    metrics, counts, pairs = score_set(
        scores, targets, torch.arange(40) % 4, 4, torch.zeros(1, 2), 0
    )
    assert torch.isnan(metrics["auc"].low).all() and metrics["auc"].samples is None
    assert counts["pos"].sum() == targets.sum() and pairs.shape == (1, 2, 4, 4)


def test_bad_settings_and_data():
    with pytest.raises(UserError, match="distinct"):
        LagProbeConfig(lags=(0, 0))
    with pytest.raises(UserError, match="threshold"):
        LagProbeConfig(threshold="best")
    with pytest.raises(UserError, match="at least 3 chains"):
        split_chains(2)
    src = planted(n=12, t=20, k=8)
    with pytest.raises(UserError, match="at lag 30"):
        fit_lag_probes(src, lags=(0, 30), bootstrap=0, device="cpu")
    split = split_chains(12)
    bad = type(split)(split.train, split.train[:1], split.test)
    with pytest.raises(UserError, match="two sides"):
        fit_lag_probes(src, split=bad, lags=(0,), device="cpu")
    with pytest.raises(UserError, match="chain 1: features"):
        y = torch.zeros(5, dtype=torch.long)
        TensorChains([torch.zeros(2, 5, 3), torch.zeros(2, 4, 3)], [y, y])
    with pytest.raises(UserError, match="1-D integer"):
        TensorChains([torch.zeros(1, 5, 3)], [torch.zeros(5)])


def test_plots(fitted, tmp_path):
    assert fitted.plot(tmp_path / "auc.png").stat().st_size > 1000
    assert fitted.plot(tmp_path / "f1.png", metric="f1").is_file()
    assert fitted.heatmap(tmp_path / "heat.png").is_file()
