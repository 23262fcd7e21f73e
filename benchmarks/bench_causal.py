"""Time the causal toolkit on the default model: alpha sweeps, the CKA matrix, patching grids.

    uv run python benchmarks/bench_causal.py [--only sweep,cka,patching] [--threads 2]
                                             [--json out.json]

1. Alpha sweep: 9 alphas x 32 chat prompts x 64 new tokens (greedy) on SmolLM2-135M, steering
   a random direction at layers.10.resid_post: `alpha_sweep` (one generate call, 288 rows)
   against 9 separate batched generations (one per alpha, 32 rows each), alternated in one
   run. Target: the one batched generation at least 3x faster.
2. CKA: two 576-wide models (SmolLM2-135M and a randomly initialised copy of its
   architecture) captured at resid_post of all 30 layers on the same 2,000 token rows into
   two activation stores; `cka_matrix` (30 x 30, both with and without the first and
   massive-activation tokens, plus the shuffled-rows control; float32 products, float64 sums,
   the default) and the bare 30 x 30 matrix (`cka_all_pairs`) with float32 and with float64
   products. Target: under 5 s.
3. Patching: one clean/corrupt pair of 32 tokens, resid_pre at 30 layers x 32 positions
   (960 cells), denoising: cells per second of `activation_patching` (each cell a row of a
   batch; rows grouped by position continue the target's KV cache from there) against one
   full forward per cell (timed on a sample of cells, whose values are checked against the
   grid's).

Times are wall-clock seconds from one run; on a shared machine they move with the load (the
load average is printed beside them), so compare figures from the same run only. Beside them,
the process's CPU seconds: with one torch thread (`--threads 1`, the right setting when other
jobs share the cores: two OpenMP threads on an oversubscribed machine wait on each other) they
are what each call costs on a core of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from reasonlens.analyses.effects import logit_difference
from reasonlens.analyses.patching import Cell, _cached, _forward, _Patches, activation_patching
from reasonlens.analyses.similarity import cka_all_pairs, cka_matrix
from reasonlens.analyses.steering import alpha_sweep, steering
from reasonlens.evaluate.generation import generate_tokens
from reasonlens.models import load_model
from reasonlens.models.loading import LoadedModel
from reasonlens.trace import TraceInput, capture

TOPICS = [
    "the boiling point of water",
    "why the sky is blue",
    "how bees make honey",
    "the French revolution",
    "prime numbers",
    "photosynthesis",
    "how a bicycle stays upright",
    "black holes",
]
STYLES = ["Explain", "Give three facts about", "Write a short poem about", "Ask a question about"]


def _load() -> tuple[float, float, float]:
    return os.getloadavg()


CPU: dict[str, float] = {}  # CPU seconds of this process for the last timed call, by name


def _timed(fn, name: str | None = None):
    """Wall seconds and the result; with `name`, the process's CPU seconds are kept in CPU
    (on a shared machine, with one torch thread, CPU time is what the call costs unshared)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if name is not None:
        CPU[name] = round(time.process_time() - cpu, 2)
    return time.perf_counter() - start, out


def sweep(model: LoadedModel, n_prompts: int, tokens: int, n_alphas: int) -> dict:
    prompts = [f"{s} {t}." for s in STYLES for t in TOPICS][:n_prompts]
    direction = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    direction = direction / direction.norm() * 4.0
    alphas = [float(a) for a in torch.linspace(-8, 8, n_alphas).tolist()]
    site = "layers.10.resid_post"

    def wait_rate(text: str) -> float:
        words = max(len(text.split()), 1)
        return 100.0 * (text.lower().count("wait") + text.lower().count("hmm")) / words

    def batched():
        return alpha_sweep(
            model, prompts, direction, site, alphas, wait_rate, max_new_tokens=tokens, n_random=0
        )

    def separate():
        texts = []
        for alpha in alphas:
            with steering(model, site, direction, alpha):
                ids = generate_tokens(model, prompts, tokens, batch_size=len(prompts))
            texts.append(model.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return texts

    load = _load()
    t_sep, texts = _timed(separate, "separate")
    t_batch, result = _timed(batched, "batched")
    same = sum(
        a == b
        for row_a, row_b in zip(result.texts[0], texts, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )
    return {
        "prompts": len(prompts),
        "alphas": len(alphas),
        "new_tokens": tokens,
        "rows_in_one_generate": result.settings["rows"],
        "separate_9_generations_s": round(t_sep, 1),
        "one_batched_generation_s": round(t_batch, 1),
        "ratio": round(t_sep / t_batch, 2),
        "separate_cpu_s": CPU["separate"],
        "batched_cpu_s": CPU["batched"],
        "cpu_ratio": round(CPU["separate"] / CPU["batched"], 2),
        "generated_tokens": int(result.length.sum()),
        "completions_identical_to_separate": f"{same}/{len(prompts) * len(alphas)}",
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in _load()],
    }


def _random_copy(model: LoadedModel) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    hf = AutoModelForCausalLM.from_config(model.hf.config, dtype=torch.float32).eval()
    return LoadedModel(f"{model.name} (random init)", hf, model.tokenizer, model.arch, "random")


def cka(model: LoadedModel, rows: int, seq: int) -> dict:
    n = rows // seq
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, model.vocab_size - 100, (n, seq), generator=gen)
    inputs = [TraceInput(input_ids=tuple(row.tolist())) for row in ids]
    other = _random_copy(model)
    with tempfile.TemporaryDirectory() as tmp:
        store_a = capture(
            model, inputs, "layers.*.resid_post", out=Path(tmp) / "a", batch_size=8, progress=False
        )
        store_b = capture(
            other, inputs, "layers.*.resid_post", out=Path(tmp) / "b", batch_size=8, progress=False
        )
        load = _load()
        xs = [store_a.layer(x) for x in range(model.n_layers)]
        ys = [store_b.layer(x) for x in range(other.n_layers)]
        t_exact, exact = _timed(lambda: cka_all_pairs(xs, ys, exact=True), "exact")
        t_fast, fast = _timed(lambda: cka_all_pairs(xs, ys), "fast")
        t_full, result = _timed(lambda: cka_matrix(store_a, store_b), "full")
        t_self, itself = _timed(lambda: cka_matrix(store_a, store_a))
    return {
        "rows": n * seq,
        "width": model.d_model,
        "matrix": f"{len(xs)} x {len(ys)}",
        "all_pairs_float64_s": round(t_exact, 2),
        "all_pairs_float32_products_s": round(t_fast, 2),
        "float32_products_max_abs_difference": float((fast - exact).abs().max()),
        "cka_matrix_s (read stores, both variants, control; default)": round(t_full, 2),
        "cpu_s": {
            "all_pairs_float64": CPU["exact"],
            "all_pairs_float32_products": CPU["fast"],
            "cka_matrix": CPU["full"],
        },
        "massive_rows_excluded": result.excluded["massive_rows"],
        "first_token_rows_excluded": result.excluded["first_token_rows"],
        "trained_vs_random_diagonal_mean": float(result.matrix.diagonal().mean()),
        "trained_vs_random_diagonal_mean_trimmed": float(result.matrix_trimmed.diagonal().mean()),
        "self_offdiagonal_mean": float(itself.matrix.mean()),
        "self_offdiagonal_mean_trimmed": float(itself.matrix_trimmed.mean()),
        "shuffled_rows_control": itself.shuffled,
        "cka_matrix_self_s": round(t_self, 2),
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in _load()],
    }


def patching(model: LoadedModel, length: int, sample: int, batch_sizes: list[int]) -> dict:
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(100, model.vocab_size - 100, (1, length), generator=gen)
    corrupt = clean.clone()
    corrupt[0, length // 2] = (clean[0, length // 2] + 1) % model.vocab_size
    metric = logit_difference([1000], [2000])
    cells = model.n_layers * length
    out = {"cells": cells, "pairs": 1, "tokens": length, "site": "resid_pre"}
    load = _load()
    grids = {}
    for size in batch_sizes:
        t, result = _timed(
            lambda size=size: activation_patching(
                model,
                clean.tolist(),
                corrupt.tolist(),
                metric,
                sites=["resid_pre"],
                directions=["denoise"],
                batch_size=size,
                control=False,
            ),
            f"b{size}",
        )
        grids[size] = result
        out[f"batched_{size}_rows_cells_per_s"] = round(cells / t, 1)
        out[f"batched_{size}_rows_cells_per_cpu_s"] = round(cells / CPU[f"b{size}"], 1)
    # One forward per cell, on a sample of cells spread over the grid.
    names = [f"layers.{x}.resid_pre" for x in range(model.n_layers)]
    _, source = _cached(model, clean, names, length - 1, 8)
    picks = torch.linspace(0, cells - 1, sample).round().long().tolist()
    rows = [[Cell("resid_pre", i // length, i % length)] for i in picks]
    patches = _Patches(model, source)
    pair = torch.zeros(1, dtype=torch.long)

    def one_per_cell():  # the usual way: the whole sequence, one forward per cell
        out = []
        for row in rows:
            logits, _ = _forward(model, corrupt, patches.hooks([row], pair), length - 1)
            out.append(float(metric(logits, pair)[0]))
        return torch.tensor(out, dtype=torch.float64)

    t, values = _timed(one_per_cell, "single")
    out["one_forward_per_cell_cells_per_s"] = round(len(rows) / t, 1)
    out["one_forward_per_cell_cells_per_cpu_s"] = round(len(rows) / CPU["single"], 1)
    best = max(batch_sizes, key=lambda s: out[f"batched_{s}_rows_cells_per_s"])
    out["ratio_best_batched_to_one_per_cell"] = round(
        out[f"batched_{best}_rows_cells_per_s"] / out["one_forward_per_cell_cells_per_s"], 2
    )
    grid = grids[best].values["denoise"][:, 0]
    out["sample_max_abs_difference_vs_grid"] = float((grid[picks] - values).abs().max())
    out["load_average_before"] = [round(x, 2) for x in load]
    out["load_average_after"] = [round(x, 2) for x in _load()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="sweep,cka,patching")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--alphas", type=int, default=9)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--patch-length", type=int, default=32)
    parser.add_argument("--patch-sample", type=int, default=64)
    parser.add_argument("--batch-sizes", default="32,64")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("smollm2-135m", device="cpu", dtype="float32")
    report: dict = {
        "model": model.name,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    parts = args.only.split(",")
    if "cka" in parts:
        report["cka"] = cka(model, args.rows, 125)
        print(json.dumps(report["cka"], indent=2), flush=True)
    if "patching" in parts:
        sizes = [int(s) for s in args.batch_sizes.split(",")]
        report["patching"] = patching(model, args.patch_length, args.patch_sample, sizes)
        print(json.dumps(report["patching"], indent=2), flush=True)
    if "sweep" in parts:
        report["sweep"] = sweep(model, args.prompts, args.tokens, args.alphas)
        print(json.dumps(report["sweep"], indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
