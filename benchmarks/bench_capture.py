"""Capture overhead, store throughput and memory, on the default model.

    uv run python benchmarks/bench_capture.py [--repeats 5] [--skip-memory]

1. Overhead: a bare HF forward pass vs `capture` of resid_post at all 30 layers and all
   positions, batch 8 x 160 tokens, alternated in one run; the ratio of medians is reported
   (target: at most 1.05).
2. Streaming: the same capture written to an activation store; MB/s of the writer thread and
   the end-to-end ratio to the bare forward.
3. Memory: peak RSS of capturing one site at all positions into a store, for a dataset and for
   one 4x larger, each in a fresh process: bounded by the batch, it should not grow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from reasonlens.models import load_model
from reasonlens.trace import CaptureStats, TraceInput, capture

BATCH, SEQ = 8, 160


def _inputs(model, n: int, seq: int, seed: int = 0) -> list[TraceInput]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, model.vocab_size - 100, (n, seq), generator=gen)
    return [TraceInput(input_ids=tuple(row.tolist())) for row in ids]


def overhead(repeats: int) -> dict:
    model = load_model("smollm2-135m", device="cpu")
    inputs = _inputs(model, BATCH, SEQ)
    batch = {
        "input_ids": torch.tensor([x.input_ids for x in inputs]),
        "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long),
    }
    sites = "layers.*.resid_post"

    def bare():
        with torch.inference_mode():
            model.hf(**batch, use_cache=False)

    def captured():
        capture(model, inputs, sites, positions="all", batch_size=BATCH, progress=False)

    store_stats: list[CaptureStats] = []

    def stored():
        stats = CaptureStats()
        with tempfile.TemporaryDirectory() as tmp:
            capture(
                model,
                inputs,
                sites,
                batch_size=BATCH,
                out=Path(tmp) / "s",
                progress=False,
                stats=stats,
            )
        store_stats.append(stats)

    times: dict[str, list[float]] = {"bare": [], "capture": [], "store": []}
    for fn in (bare, captured, stored):  # warm-up
        fn()
    store_stats.clear()
    for _ in range(repeats):
        for name, fn in (("bare", bare), ("capture", captured), ("store", stored)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    written = sum(s.bytes_written for s in store_stats)
    writing = sum(s.seconds_writing for s in store_stats)
    return {
        "batch": f"{BATCH}x{SEQ}",
        "median_s": med,
        "capture_ratio": med["capture"] / med["bare"],
        "store_ratio": med["store"] / med["bare"],
        "store_MB_per_batch": written / len(store_stats) / 1e6,
        "writer_MB_per_s": written / writing / 1e6,
        "all_times_s": times,
    }


def _peak_rss_child(n: int, seq: int, batch: int) -> None:
    import resource

    model = load_model("smollm2-135m", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inputs.jsonl"
        gen = torch.Generator().manual_seed(1)
        with path.open("w") as handle:
            for _ in range(n):
                ids = torch.randint(100, 40000, (seq,), generator=gen).tolist()
                handle.write(json.dumps({"input_ids": ids}) + "\n")
        from reasonlens.trace import JsonlInputs

        stats = CaptureStats()
        store = capture(
            model,
            JsonlInputs(path),
            "layers.5.resid_post",
            batch_size=batch,
            out=Path(tmp) / "s",
            progress=False,
            stats=stats,
        )
        size = sum(p.stat().st_size for p in (Path(tmp) / "s").iterdir())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    "examples": store.n_examples,
                    "store_MB": size / 1e6,
                    "peak_rss_MB": peak,
                    "seconds": stats.seconds,
                }
            )
        )


def memory(sizes: tuple[int, ...], seq: int = 64, batch: int = 32) -> list[dict]:
    results = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n), str(seq), str(batch)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _peak_rss_child(*args.memory_child)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32")
    res = overhead(args.repeats)
    med = res["median_s"]
    print(f"\n[overhead] SmolLM2-135M, batch {res['batch']}, resid_post x 30 layers, all positions")
    print(f"  bare forward          {med['bare']:.3f} s   1.000")
    ratio = res["capture_ratio"]
    print(f"  capture (in memory)   {med['capture']:.3f} s   {ratio:.3f}  (target <= 1.05)")
    print(f"  capture -> store      {med['store']:.3f} s   {res['store_ratio']:.3f}")
    per_batch, rate = res["store_MB_per_batch"], res["writer_MB_per_s"]
    print(f"  store: {per_batch:.1f} MB per batch, writer {rate:.0f} MB/s")
    if not args.skip_memory:
        print("\n[memory] one site (layers.5.resid_post), all positions, 64 tokens, batch 32")
        for row in memory((1000, 4000)):
            print(
                f"  {row['examples']:>6} examples  store {row['store_MB']:8.1f} MB  "
                f"peak RSS {row['peak_rss_MB']:7.1f} MB  ({row['seconds']:.1f} s)"
            )


if __name__ == "__main__":
    main()
