"""Batched lag probes vs the same probes fitted one at a time, on random activations.

The backtracking study's grid: every (layer, lag) probe, 5 layers x 15 lags (-8..48 by 4) = 75
probes (the seed reports 70 = 5 x 14 for the same range; 15 is what -8..48 by 4 holds),
class-weighted BCE + L2, Adam on minibatches of chains. Both sides run the same code
(`fit_lag_probes`) for the same fixed number of epochs (early stopping off, so both do the
same work): once with the whole grid in one batched tensor, and once per probe on one layer's
features with one lag. One-at-a-time is timed on `--single` probes and scaled to the grid; the
two fits of those probes must agree (a probe's path does not depend on its batch).

Activations are random, shaped like the study's data: `--chains` chains of `--tokens` tokens,
`--width` features per layer, held in memory on the device (bf16 on a GPU, float32 on a CPU),
with ~2% of tokens labelled in spans of ~10 tokens and a planted direction in the 16 tokens
before each span (stronger in later layers), so the probes have something to find. This times
the probes, not disk reads (the activation store streams from disk in the study).

Sizes (`--size`):
  small  60 chains x 200 tokens x 576   (a smoke run)
  quick  200 chains x 400 tokens x 576  (about the quick preset's data: target <= 5 min, 2-core CPU)
  seed   800 chains x 500 tokens x 4096 (the seed study's shape: target <= 2 min on one GPU)

Run: uv run python benchmarks/bench_lag_probes.py [--size small|quick|seed] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from reasonlens.analyses.lag_probes import (
    DEFAULT_LAGS,
    FeatureSubset,
    TensorChains,
    fit_lag_probes,
)

SIZES = {"small": (60, 200, 576), "quick": (200, 400, 576), "seed": (800, 500, 4096)}
LAYERS = 5


def make_source(chains: int, tokens: int, width: int, device: str, seed: int = 0):
    gen = torch.Generator(device=device).manual_seed(seed)
    cpu = torch.Generator().manual_seed(seed)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    direction = torch.randn(width, generator=gen, device=device)
    direction /= direction.norm()
    feats, labels = [], []
    for _ in range(chains):
        y = torch.zeros(tokens, dtype=torch.long)
        n_spans = int(torch.poisson(torch.tensor(tokens * 0.002), generator=cpu))
        ahead = torch.zeros(tokens, device=device)
        for s in torch.randint(20, tokens - 10, (n_spans,), generator=cpu).tolist():
            y[s : s + 10] = 1
            ahead[max(0, s - 16) : s] = 1.0
        x = torch.randn(LAYERS, tokens, width, generator=gen, device=device)
        strength = torch.linspace(0.5, 3.0, LAYERS, device=device)[:, None, None]
        x += strength * ahead[None, :, None] * direction
        feats.append(x.to(dtype))
        labels.append(y)
    return TensorChains(feats, labels, layers=list(range(LAYERS)))


def timed(source, **opts):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fit_lag_probes(source, **opts)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--chains", type=int)
    parser.add_argument("--tokens", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--single", type=int, default=3, help="probes fitted one at a time")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-gb", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chains, tokens, width = SIZES[args.size]
    chains, tokens, width = args.chains or chains, args.tokens or tokens, args.width or width
    t0 = time.perf_counter()
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    dev = args.device
    if dev.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name(0)}")
    source = make_source(chains, tokens, width, dev)
    lags = DEFAULT_LAGS
    n_probes = LAYERS * len(lags)
    gb = chains * tokens * LAYERS * width * (2 if dev.startswith("cuda") else 4) / 2**30
    positives = float(torch.cat(source.labels).float().mean())
    print(
        f"data: {chains} chains x {tokens} tokens x {LAYERS} layers x width {width} "
        f"({gb:.2f} GiB in memory on {dev}), {positives:.1%} positive; grid {LAYERS} layers x "
        f"{len(lags)} lags = {n_probes} probes; {args.epochs} epochs each "
        f"({time.perf_counter() - t0:.1f} s to make)"
    )
    opts = dict(
        max_epochs=args.epochs,
        patience=args.epochs,
        device=dev,
        cache_bytes=int(args.cache_gb * 2**30),
        threads=args.threads,
    )
    grid, wall, cpu = timed(source, lags=lags, bootstrap=args.bootstrap, **opts)
    train_s = sum(h["seconds"] for h in grid.history)
    print(f"\nbatched grid, {n_probes} probes together:")
    print(
        f"  {wall:7.1f} s wall, {cpu:7.1f} s CPU: training + validation {train_s:.1f} s "
        f"({train_s / grid.epochs:.2f} s per epoch), test metrics with {args.bootstrap} "
        f"chain resamples {wall - train_s:.1f} s"
    )
    best = grid.best_per_lag("auc")
    print("  test AUC of the layer chosen on validation, by lag:")
    print("  " + ", ".join(f"{r['lag']:+d}: {r['value']:.2f}" for r in best))

    picks = [(f, k) for f in (LAYERS - 1, 0) for k in range(len(lags))][: args.single]
    walls, diffs = [], []
    for f, k in picks:
        alone, w, _ = timed(FeatureSubset(source, [f]), lags=(lags[k],), bootstrap=0,
                            split=grid.split, **opts)  # fmt: skip
        walls.append(w)
        diffs.append(abs(float(alone.val["auc"].value[0, 0] - grid.val["auc"].value[f, k])))
    per = sum(walls) / len(walls)
    print(f"\none at a time ({len(picks)} probes, no bootstrap; scaled to the grid):")
    print(
        f"  {per:.2f} s per probe -> {per * n_probes:.1f} s for {n_probes} probes; "
        f"speed-up of the batched grid: {per * n_probes / wall:.1f}x wall (with its test "
        f"metrics), {per * n_probes / train_s:.1f}x on training alone"
    )
    print(f"  same probes, batched vs alone: max |validation AUC difference| {max(diffs):.2e}")
    target = {"seed": 120.0, "quick": 300.0}.get(args.size)
    if target:
        verdict = "PASS" if wall <= target else "FAIL"
        print(f"  target: the grid within {target:.0f} s: {verdict} ({wall:.0f} s)")
    print(
        f"\nload average at end: {os.getloadavg()[0]:.1f}; total {time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
