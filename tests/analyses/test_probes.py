"""Known-answer tests for reasonlens.analyses.probes (small CPU problems, seconds in all)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from reasonlens.analyses.probes import (
    accuracy,
    fit_probes,
    train_test_split,
    weighted_f1,
)
from reasonlens.analyses.probes import metrics as M
from reasonlens.analyses.stats import resample_weights
from reasonlens.errors import UserError

N = 400


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny problems: a second (often busy) core only adds waiting; keep the numbers fixed too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _split():
    return train_test_split(N, 0.2, seed=0)


def _planted(seed: int = 0, d: int = 24, classes: int = 4, probes: int = 3):
    """Features [probes, N, d]; labels = argmax of `classes` directions of probe 1's features."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(probes, N, d, generator=gen)
    dirs = torch.randn(classes, d, generator=gen)
    y = (x[1] @ dirs.T).argmax(1)
    return x, y


def _standardise(x: torch.Tensor, train: torch.Tensor) -> np.ndarray:
    z = x.double().numpy()
    mu, sd = z[train.numpy()].mean(0), z[train.numpy()].std(0)
    return (z - mu) / sd


def test_planted_linear_feature_is_recovered_and_the_control_stays_at_chance():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, N, 24, generator=gen)
    y = torch.arange(N) % 4  # 4 balanced classes
    means = torch.randn(4, 24, generator=gen)
    x[1] += 1.5 * means[y]  # planted in probe 1 only
    train, test = _split()
    r = fit_probes(x, y, train, test)
    acc = r.score("probe", "accuracy")
    assert acc.value[1, 0] >= 0.95
    assert acc.value[[0, 2], 0].max() < 0.45  # probes 0 and 2 see unrelated features
    ctrl = r.score("control", "accuracy")
    chance = 0.25
    assert float(ctrl.low[1, 0]) <= chance <= float(ctrl.high[1, 0])
    assert float(ctrl.high[1, 0]) < float(acc.low[1, 0])
    assert r.selectivity()[1, 0] > 0.5
    for s in (acc, ctrl):
        assert bool(((s.low <= s.value) & (s.value <= s.high)).all())


def test_mlp_decodes_xor_that_the_linear_probe_cannot():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, 6, generator=gen)
    u, v = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
    y = ((x @ u > 0) ^ (x @ v > 0)).long()
    train, test = _split()
    lin = fit_probes(x[None], y, train, test, control=False, bootstrap=0)
    mlp = fit_probes(x[None], y, train, test, kind="mlp", hidden=32, control=False, bootstrap=0)
    assert float(lin.score().value) < 0.65
    assert float(mlp.score().value) > 0.85
    assert mlp.weight is None and lin.weight is not None


def test_linear_probe_is_sklearn_logistic_regression():
    """Same objective: weights match LogisticRegression(C = 1 / (l2 n)) (multinomial) and
    C = 2 / (l2 n) for two classes (a softmax pair halves the penalty on w1 - w0)."""
    x, y4 = _planted(d=12)
    y2 = (x[1, :, 0] + 0.5 * x[1, :, 1] > 0).long()
    train, test = _split()
    l2 = 1e-2
    z = _standardise(x[1], train)
    for y, c in ((y4, 1 / (l2 * len(train))), (y2, 2 / (l2 * len(train)))):
        r = fit_probes(x[1:2], y, train, test, l2=l2, tol=1e-6, control=False, bootstrap=0)
        sk = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(z[train], y[train].numpy())
        scale = x[1][train].double().std(0, correction=0)
        w = r.weight[0, 0].double() * scale  # back to standardised features
        coef = torch.from_numpy(sk.coef_)
        if coef.shape[0] == 1:
            w = (w[1] - w[0])[None]
        assert torch.allclose(w, coef, rtol=2e-3, atol=2e-3)
        assert float(r.score().value) == pytest.approx(
            (sk.predict(z[test]) == y[test].numpy()).mean()
        )


@pytest.mark.parametrize("d", [8, 60])  # n_train > d (feature basis) and n_train < d (row span)
def test_predictions_match_sklearn_in_both_bases(d):
    x, y = _planted(seed=3, d=d, classes=5)
    train, test = train_test_split(N, 0.2, seed=1)
    if d == 60:
        train, test = train[:50], test
    r = fit_probes(x, y, train, test, l2=1e-2, control=False, bootstrap=0)
    for p in range(3):
        z = _standardise(x[p], train)
        sk = LogisticRegression(C=1 / (1e-2 * len(train)), tol=1e-8, max_iter=10_000)
        sk.fit(z[train], y[train].numpy())
        want = (sk.predict(z[test]) == y[test].numpy()).mean()
        assert float(r.score().value[p, 0]) == pytest.approx(want, abs=1 / len(test) + 1e-6)


def test_balanced_class_weight_matches_sklearn():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, N, 10, generator=gen)
    score = x[0, :, 0] + 0.8 * torch.randn(N, generator=gen)
    y = (score > 1.2).long() + (score > 2.0).long()  # rare classes 1 and 2
    train, test = _split()
    r = fit_probes(x, y, train, test, class_weight="balanced", tol=1e-6, control=False, bootstrap=0)
    z = _standardise(x[0], train)
    sk = LogisticRegression(C=1 / (1e-2 * len(train)), class_weight="balanced", tol=1e-10)
    sk.fit(z[train], y[train].numpy())
    w = r.weight[0, 0].double() * x[0][train].double().std(0, correction=0)
    assert torch.allclose(w, torch.from_numpy(sk.coef_), rtol=2e-3, atol=2e-3)


def test_missing_labels_are_ignored_in_training_scoring_and_baseline():
    x, y = _planted(seed=5, d=10, classes=3)
    train, test = _split()
    y2 = y.clone()
    gen = torch.Generator().manual_seed(0)
    missing = torch.rand(N, generator=gen) < 0.4
    y2[missing] = -1
    labels = torch.stack([y, y2], 1)
    r = fit_probes(x, labels, train, test, tol=1e-6, control=False, bootstrap=0)
    assert r.n_train[0].tolist() == [len(train), int((y2[train] >= 0).sum())]
    # head 1 is a logistic regression on its labelled training rows only
    keep = train[y2[train] >= 0]
    z = _standardise(x[1], train)
    sk = LogisticRegression(C=1 / (1e-2 * len(keep)), tol=1e-10, max_iter=10_000)
    sk.fit(z[keep], y2[keep].numpy())
    w = r.weight[1, 1].double() * x[1][train].double().std(0, correction=0)
    assert torch.allclose(w, torch.from_numpy(sk.coef_), rtol=2e-3, atol=2e-3)
    # ... scored on its labelled test rows only
    scored = test[y2[test] >= 0]
    want = (sk.predict(z[scored]) == y2[scored].numpy()).mean()
    assert float(r.score().value[1, 1]) == pytest.approx(want, abs=1e-6)
    # ... and heads do not influence each other
    y3 = labels.clone()
    y3[missing, 0] = -1
    r3 = fit_probes(x, y3, train, test, tol=1e-6, control=False, bootstrap=0)
    assert torch.equal(r3.weight[:, 1], r.weight[:, 1])


def test_majority_baseline_is_the_known_majority_share():
    x = torch.randn(2, N, 5)
    y = torch.zeros(N, dtype=torch.long)
    train, test = torch.arange(320), torch.arange(320, N)
    y[:200] = 2  # class 2 is the training majority (200 of 320)
    y[320:350] = 2  # 30 of the 80 test rows are class 2
    y[350:] = 1
    y[::97] = -1  # a few unlabelled rows, on both sides
    r = fit_probes(x, y, train, test, bootstrap=0, control=False)
    labelled = y[test] >= 0
    share = float((y[test][labelled] == 2).float().mean())
    assert r.score("baseline", "accuracy").value[:, 0].tolist() == pytest.approx([share, share])
    truth = y[test][labelled].numpy()
    want_f1 = f1_score(truth, np.full_like(truth, 2), average="weighted")
    assert float(r.score("baseline", "weighted_f1").value[0, 0]) == pytest.approx(want_f1)


def test_weighted_f1_and_accuracy_match_sklearn():
    gen = torch.Generator().manual_seed(6)
    target = torch.randint(-1, 6, (40, 70), generator=gen)
    noise = torch.randint(0, 7, (40, 70), generator=gen)
    pred = torch.where(torch.rand(40, 70, generator=gen) < 0.5, target.clamp(min=0), noise)
    target[3] = torch.where(target[3] >= 0, 4, -1)  # a row with a single true class
    ours_f1 = weighted_f1(pred, target, n_classes=8)
    ours_acc = accuracy(pred, target)
    for k in range(40):
        keep = target[k] >= 0
        t, p = target[k][keep].numpy(), pred[k][keep].numpy()
        assert float(ours_f1[k]) == pytest.approx(f1_score(t, p, average="weighted"), abs=1e-6)
        assert float(ours_acc[k]) == pytest.approx((t == p).mean(), abs=1e-6)
    assert math.isnan(float(weighted_f1(pred[:1], torch.full((1, 70), -1), 8)[0]))


def test_vectorised_bootstrap_equals_resampling_rows():
    gen = torch.Generator().manual_seed(7)
    target = torch.randint(0, 4, (5, 30), generator=gen)
    pred = torch.randint(0, 4, (5, 30), generator=gen)
    counts = torch.from_numpy(resample_weights(30, 20, seed=0, draw="torch"))
    boot = M.bootstrap_scores(pred, target, 4, counts)
    idx = torch.cat([torch.arange(30).repeat_interleave(c) for c in counts.long()]).view(20, 30)
    for b in range(20):
        rows = idx[b]
        assert torch.allclose(boot["accuracy"][b], accuracy(pred[:, rows], target[:, rows]))
        assert torch.allclose(
            boot["weighted_f1"][b], weighted_f1(pred[:, rows], target[:, rows], 4)
        )


def test_batched_training_equals_training_each_probe_alone():
    x, y = _planted(seed=8, d=40)
    per_probe = torch.stack([y, (x[0, :, 3] > 0).long() * 3, y.flip(0)])[..., None]  # [P, N, 1]
    train, test = _split()
    for kind in ("linear", "mlp"):
        opts = dict(kind=kind, hidden=16, max_iter=60, bootstrap=50, seed=3)
        together = fit_probes(x, per_probe, train, test, **opts)
        for p in range(3):
            alone = fit_probes(x[p : p + 1], per_probe[p : p + 1], train, test, **opts)
            for which in ("probe", "control"):
                assert torch.equal(together.score(which).value[p], alone.score(which).value[0]), (
                    kind,
                    which,
                    p,
                )
            if kind == "linear":
                assert torch.allclose(together.weight[p], alone.weight[0], atol=1e-5)
        chunked = fit_probes(x, per_probe, train, test, chunk_size=2, **opts)
        assert torch.equal(chunked.score().value, together.score().value)


def test_same_seed_same_numbers():
    x, y = _planted(seed=9)
    train, test = _split()
    a = fit_probes(x, y, train, test, kind="mlp", hidden=8, max_iter=40, bootstrap=100)
    b = fit_probes(x, y, train, test, kind="mlp", hidden=8, max_iter=40, bootstrap=100)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    c = fit_probes(x, y, train, test, kind="mlp", hidden=8, max_iter=40, bootstrap=100, seed=1)
    assert json.dumps(c.to_dict()) != json.dumps(a.to_dict())


def test_activation_space_weights_reproduce_predictions_and_give_directions():
    x, _ = _planted(seed=10, d=16)
    x = x * torch.linspace(0.5, 3, 16) + 2.0  # unstandardised activations
    y = (x[1, :, 5] > 2.0).long()
    train, test = _split()
    r = fit_probes(x, y, train, test, control=False, bootstrap=0)
    logits = torch.einsum("phcd,pnd->pnhc", r.weight, x[:, test]) + r.bias[:, None]
    acc = (logits.argmax(-1)[..., 0] == y[test]).float().mean(1)
    assert torch.allclose(acc, r.score().value[:, 0])
    v = r.direction(1, head=0, cls=1)
    assert float(v.norm()) == pytest.approx(1.0)
    assert abs(float(v[5])) > 0.95  # the planted feature
    assert float(v[5]) > 0  # pointing toward class 1


def test_unseen_classes_are_never_predicted_and_degenerate_features_fall_back_to_majority():
    x = torch.randn(2, N, 6)
    x[1] = 1.0  # a constant feature set (e.g. layer 0 at a fixed token)
    y = (x[0, :, 0] > 0).long()  # classes 0 and 1 of n_classes=5
    train, test = _split()
    r = fit_probes(x, y, train, test, n_classes=5, bootstrap=0)
    assert torch.isinf(r.bias[:, 0, 2:]).all() and torch.isfinite(r.bias[:, 0, :2]).all()
    assert float(r.score().value[1, 0]) == pytest.approx(float(r.score("baseline").value[1, 0]))
    with pytest.raises(UserError):
        r.direction(0, cls=3)


def test_grid_keys_reductions_json_and_plot(tmp_path):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(4, 2, N, 8, generator=gen)  # [layers, positions, N, d]
    x[2:, 1, :, 0] += 3 * (torch.arange(N) % 2)  # position 1 becomes decodable from layer 2
    y = (torch.arange(N) % 2)[:, None].repeat(1, 2)
    train, test = _split()
    r = fit_probes(x, y, train, test, heads=["a", "b"], metric="weighted_f1", bootstrap=200)
    assert r.keys[:3] == [(0, 0), (0, 1), (1, 0)]
    best = r.best(x=0)
    assert best[1][0] in (2, 3) and best[1][1] > 0.95
    xs, val, low, high = r.curves(x=0)[1]
    assert xs == [0, 1, 2, 3] and val.shape == (4,) and bool((low <= val).all())
    text = json.dumps(r.to_dict(), allow_nan=False)
    assert json.loads(text)["probes"][0]["key"] == [0, 0]
    png = r.plot(tmp_path / "curves.png", title="toy")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_train_test_split_is_seeded_and_grouped():
    a = train_test_split(100, 0.2, seed=0)
    b = train_test_split(100, 0.2, seed=0)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert len(a[1]) == 20 and len(torch.unique(torch.cat(a))) == 100
    groups = [f"prompt{i // 7}" for i in range(100)]
    train, test = train_test_split(100, 0.25, seed=2, groups=groups)
    assert not {groups[i] for i in train.tolist()} & {groups[i] for i in test.tolist()}
    assert 20 <= len(test) <= 32 and len(train) + len(test) == 100


def test_bad_input_is_a_user_error():
    x, y = _planted()
    train, test = _split()
    with pytest.raises(UserError, match="share rows"):
        fit_probes(x, y, train, torch.cat([test, train[:1]]))
    with pytest.raises(UserError, match="probe kind"):
        fit_probes(x, y, train, test, kind="svm")
    with pytest.raises(UserError, match="out of range"):
        fit_probes(x, y, train, test, n_classes=2)
    with pytest.raises(UserError, match="rows"):
        fit_probes(x, y[:-1], train, test)
    with pytest.raises(UserError, match="no control"):
        fit_probes(x, y, train, test, control=False, bootstrap=0).score("control")


def test_per_probe_labels_with_unscored_heads_like_future_decisions():
    """Dict features and labels; a probe at step k scores only the heads of later steps."""
    gen = torch.Generator().manual_seed(12)
    answers = torch.randint(0, 3, (N, 3), generator=gen)  # the answer at steps 1..3
    feats, labels = {}, {}
    for step in (1, 2):
        for layer in (0, 1):
            x = torch.randn(N, 8, generator=gen)
            x[:, :3] += 4.0 * torch.nn.functional.one_hot(answers[:, 2], 3) * layer
            feats[(layer, f"s{step}")] = x
            future = answers.clone()
            future[:, :step] = -1  # steps up to the current one are not "future"
            labels[(layer, f"s{step}")] = future
    train, test = _split()
    r = fit_probes(feats, labels, train, test, bootstrap=100, threads=1)
    i = r.index((1, "s2"))
    assert r.n_train[i].tolist() == [0, 0, len(train)]
    assert torch.isnan(r.score().value[i, :2]).all() and r.score().value[i, 2] > 0.9
    assert float(r.score().mean[i]) == pytest.approx(float(r.score().value[i, 2]))
    entry = json.loads(json.dumps(r.to_dict(), allow_nan=False))["probes"][i]
    assert entry["key"] == [1, "s2"] and entry["probe"]["accuracy"]["value"][0] is None
    assert r.best(x=0)["s2"][0] == 1
    assert torch.get_num_threads() == 1  # `threads` restores the caller's setting
    with pytest.raises(UserError, match="threads"):
        fit_probes(feats, labels, train, test, threads=0)
