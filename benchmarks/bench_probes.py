"""Batched probe training vs scikit-learn, one probe at a time, on the planning study's shape.

Shape: 30 layers x 14 positions of d=576 features (SmolLM2-135M), 400 examples split 320/80,
12 heads x 8 classes (the block-state probe). Features are synthetic but shaped like real
residual-stream activations at one prompt position: a steep eigenvalue spectrum
(lambda_k ~ k^-2, as measured on SmolLM2 at a fixed Blocksworld position), a random rotation per
layer, and class signal planted along that spectrum with a strength that rises with depth and
falls for later positions. Labels are skewed the way block states are ("sky"/"table" common).

Both sides fit the same objective: multinomial logistic regression on standardised features,
L2 with C = 1 / (l2 * n_train), stopping at max |gradient| <= 1e-4. scikit-learn runs in its
fastest setting here (LogisticRegression(lbfgs) with one BLAS thread; its default thread pool is
several times slower on this 2-core machine) on a fixed subset of probes (every 4th layer, the
paper's plotted layers); reasonlens fits the same subset, then the full grid. Everything runs on
one thread (torch and BLAS alike); timings are wall clock and CPU time of this process, and the
load average is printed because the machine may be shared.

Run: uv run python benchmarks/bench_probes.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np
import torch

from reasonlens.analyses.probes import fit_probes, train_test_split

LAYERS, POSITIONS, N, D, HEADS, CLASSES = 30, 14, 400, 576, 12, 8
L2 = 1e-2
CLASS_SHARES = torch.tensor([0.30, 0.20, 0.10, 0.10, 0.09, 0.08, 0.07, 0.06])  # sky/table first


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [LAYERS, POSITIONS, N, D] and per-position labels [LAYERS, POSITIONS, N, H]."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(CLASS_SHARES, POSITIONS * N * HEADS, True, generator=gen)
    labels = labels.view(POSITIONS, N, HEADS)
    spectrum = torch.arange(1, D + 1, dtype=torch.float32).reciprocal()  # std ~ k^-1
    means = torch.randn(HEADS, CLASSES, D, generator=gen) / math.sqrt(HEADS)
    feats = torch.empty(LAYERS, POSITIONS, N, D)
    for layer in range(LAYERS):
        rotation = torch.linalg.qr(torch.randn(D, D, generator=gen))[0]
        depth = min(1.0, layer / 16)
        for pos in range(POSITIONS):
            strength = 0.25 + 1.6 * depth * (1.0 - 0.5 * pos / POSITIONS)
            signal = means[torch.arange(HEADS), labels[pos]].sum(1)  # [N, D]
            noise = torch.randn(N, D, generator=gen)
            feats[layer, pos] = ((noise + strength * signal) * spectrum) @ rotation
    return feats, labels[None].expand(LAYERS, -1, -1, -1)


def sklearn_fits(feats, labels, train, test, probes) -> tuple[np.ndarray, float, float, int]:
    """Accuracy [len(probes), H] from one LogisticRegression per (probe, head)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    acc = np.zeros((len(probes), HEADS))
    unconverged = 0
    tr, te = train.numpy(), test.numpy()
    wall, cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, (layer, pos) in enumerate(probes):
            x = feats[layer, pos].numpy()
            y = labels[layer, pos].numpy()
            scaler = StandardScaler().fit(x[tr])
            x_tr, x_te = scaler.transform(x[tr]), scaler.transform(x[te])
            for h in range(HEADS):
                model = LogisticRegression(C=1 / (L2 * len(tr)), max_iter=1000, tol=1e-4)
                model.fit(x_tr, y[tr, h])
                unconverged += int(model.n_iter_[0] >= 1000)
                acc[i, h] = (model.predict(x_te) == y[te, h]).mean()
    return acc, time.perf_counter() - wall, time.process_time() - cpu, unconverged


def ours(feats, labels, train, test, **opts):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit_probes(feats, labels, train, test, l2=L2, threads=1, **opts)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 positions for sklearn (smoke)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    feats, labels = make_data()
    train, test = train_test_split(N, 0.2, seed=0)
    print(
        f"data: {LAYERS} layers x {POSITIONS} positions x {N} rows x d={D}, {HEADS} heads x "
        f"{CLASSES} classes, split {len(train)}/{len(test)} ({time.perf_counter() - t0:.1f} s)"
    )
    layers = list(range(0, LAYERS, 4))
    positions = list(range(2 if args.quick else POSITIONS))
    probes = [(layer, pos) for layer in layers for pos in positions]
    n_fits = len(probes) * HEADS

    sk_acc, sk_wall, sk_cpu, sk_bad = sklearn_fits(feats, labels, train, test, probes)
    sub = feats[layers][:, positions]
    sub_labels = labels[layers][:, positions]
    res, wall, cpu = ours(sub, sub_labels, train, test, control=False, bootstrap=0)
    acc = res.score("probe", "accuracy").value.numpy()  # keys in the same (layer, pos) order
    diff = np.abs(acc - sk_acc)
    print(f"\nsame {len(probes)} probes x {HEADS} heads = {n_fits} logistic regressions")
    print(
        f"  scikit-learn, one by one: {sk_wall:7.1f} s wall, {sk_cpu:7.1f} s CPU "
        f"({1e3 * sk_wall / n_fits:.1f} ms per fit; {sk_bad} hit max_iter)"
    )
    print(
        f"  reasonlens, batched     : {wall:7.1f} s wall, {cpu:7.1f} s CPU "
        f"(mean {res.iterations.float().mean():.0f} L-BFGS steps, "
        f"{res.converged.float().mean():.1%} converged)"
    )
    print(f"  speed-up: {sk_wall / wall:.1f}x wall, {sk_cpu / cpu:.1f}x CPU")
    print(
        f"  accuracy: scikit-learn {sk_acc.mean():.4f}, reasonlens {acc.mean():.4f}; "
        f"mean |difference| {diff.mean():.4f}, max {diff.max():.4f}, "
        f"identical on {(diff < 1e-6).mean():.1%} of heads"
    )
    verdict = "PASS" if sk_wall / wall >= 10 and diff.mean() <= 0.01 else "FAIL"
    print(f"  requirement (>= 10x, mean |acc diff| <= 0.01): {verdict}")

    _, wall, cpu = ours(feats, labels, train, test, control=False, bootstrap=0)
    print(f"\nfull grid, {LAYERS * POSITIONS} probes x {HEADS} heads (all layers x positions):")
    print(f"  reasonlens: {wall:.1f} s wall, {cpu:.1f} s CPU")
    opts = dict(metric="weighted_f1", control=True, bootstrap=1000)
    full, wall, cpu = ours(sub, sub_labels, train, test, **opts)
    print(f"the {len(probes)} probes again, with shuffled-label controls and 1000 bootstrap")
    print(f"resamples (weighted F1): {wall:.1f} s wall, {cpu:.1f} s CPU")
    score, base, ctrl = (full.score(w).mean for w in ("probe", "baseline", "control"))
    print(
        f"  mean over probes: probe {score.mean():.3f}, majority baseline {base.mean():.3f}, "
        f"control {ctrl.mean():.3f}; best of layers {layers[0]}..{layers[-1]} per position:"
    )
    best = full.best(x=0)
    print("  " + ", ".join(f"p{pos}: L{layers[i]} {v:.2f}" for pos, (i, v) in best.items()))
    print(
        f"\nload average at end: {os.getloadavg()[0]:.1f}; total {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
