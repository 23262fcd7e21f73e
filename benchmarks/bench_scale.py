"""Memory and time at scale: capturing every residual stream of 1.5B- and 7B-shaped models.

    nice -n 5 uv run python benchmarks/bench_scale.py [--models 1.5b 7b] [--tokens 256]

Random-weight models built from the real configs (Qwen2.5-1.5B and -7B, the shapes of the
DeepSeek-R1-Distill-Qwen models; no download), in bf16, batch 1. Each model runs in a fresh
process, so its peak RSS is its own: the weights, plus one forward pass, plus the rows kept.
For each: time per token of a bare forward and of `capture` of `layers.*.resid_post` into an
activation store, the store's bytes per token, and peak memory. Then what the figures imply
for other widths and depths and for a 32B model on 2 GPUs (printed, and in --json).

Scaling (what the measurements check): weights = 2 bytes x parameters; forward time per token
~ 2 x parameters FLOPs; the store holds layers x d_model x 2 bytes per token (bf16) plus 8
bytes of token id and position; the rows kept for one batch are that times batch x tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

#: The real configs' shapes (config.json of Qwen/Qwen2.5-*), vocabularies included.
SHAPES = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                 tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
               num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
               tie_word_embeddings=False),
    "32b": dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                tie_word_embeddings=False),
}  # fmt: skip


def parameters(shape: dict) -> int:
    d, f, n = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    head = d // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head
    attn = d * d * 2 + d * kv * 2 + d + 2 * kv  # q, o; k, v; q/k/v biases (Qwen2)
    layer = attn + 3 * d * f + 2 * d
    embed = shape["vocab_size"] * d * (1 if shape["tie_word_embeddings"] else 2)
    return n * layer + embed + d


def store_bytes_per_token(shape: dict, dtype_bytes: int = 2) -> int:
    return shape["num_hidden_layers"] * shape["hidden_size"] * dtype_bytes + 16


def one(name: str, tokens: int, repeats: int) -> dict:
    """Runs in its own process: build, time a bare forward and a capture, peak RSS."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from reasonlens.models.architectures import architecture_for
    from reasonlens.models.loading import LoadedModel
    from reasonlens.models.tiny import tiny_tokenizer
    from reasonlens.trace import CaptureStats, TraceInput, capture

    torch.manual_seed(0)
    rss_start = _rss()
    start = time.perf_counter()
    config = Qwen2Config(**SHAPES[name], max_position_embeddings=4096)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    build_s = time.perf_counter() - start
    model = LoadedModel(name, hf, tiny_tokenizer(), architecture_for(hf), source="random")
    rss_weights = _rss()
    ids = torch.randint(100, config.vocab_size - 100, (1, tokens))
    inputs = [TraceInput(input_ids=tuple(ids[0].tolist()))]

    def bare() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            hf(input_ids=ids, use_cache=False)
        return time.perf_counter() - t

    bare_s = min(bare() for _ in range(repeats))
    rss_bare = _rss()
    times, stats = [], CaptureStats()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):
            t = time.perf_counter()
            store = capture(
                model, inputs, "layers.*.resid_post", batch_size=1, out=f"{tmp}/s{k}",
                progress=False, stats=stats,
            )  # fmt: skip
            times.append(time.perf_counter() - t)
        shard = os.path.join(store.path, "shard-00000.safetensors")
        shard_bytes = os.path.getsize(shard)
    return {
        "model": name,
        "parameters": sum(p.numel() for p in hf.parameters()),
        "parameters_formula": parameters(SHAPES[name]),
        "layers": config.num_hidden_layers,
        "d_model": config.hidden_size,
        "tokens": tokens,
        "build_s": round(build_s, 1),
        "rss_before_gib": round(rss_start / 2**30, 2),
        "rss_after_build_gib": round(rss_weights / 2**30, 2),
        "peak_rss_bare_gib": round(rss_bare / 2**30, 2),
        "peak_rss_capture_gib": round(_rss() / 2**30, 2),
        "bare_forward_s": round(bare_s, 2),
        "bare_ms_per_token": round(1000 * bare_s / tokens, 1),
        "capture_s": round(min(times), 2),
        "capture_ms_per_token": round(1000 * min(times) / tokens, 1),
        "capture_over_bare": round(min(times) / bare_s, 3),
        "store_shard_bytes": shard_bytes,
        "store_bytes_per_token": round(shard_bytes / tokens),
        "store_bytes_per_token_formula": store_bytes_per_token(SHAPES[name]),
        "threads": torch.get_num_threads(),
    }


def _rss() -> int:
    """Peak resident memory of this process so far (bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def projections(measured: list[dict]) -> dict:
    """What the measurements imply for the 32B shape and for 2 GPUs."""
    shape = SHAPES["32b"]
    n = parameters(shape)
    per_token = store_bytes_per_token(shape)
    out = {
        "32b_parameters": n,
        "32b_weights_gib_bf16": round(2 * n / 2**30, 1),
        "32b_store_bytes_per_token": per_token,
        "32b_store_gib_per_1m_tokens": round(per_token * 1e6 / 2**30, 1),
        "32b_kept_rows_gib_batch8_x_2048": round(per_token * 8 * 2048 / 2**30, 2),
        "32b_on_2_gpus": (
            "--device-map auto --max-memory 0=70GiB,1=70GiB (A100/H100 80GB): ~"
            f"{2 * n / 2**30 / 2:.0f} GiB of weights a GPU, 32 layers each; the rows kept "
            "for a batch are moved to CPU memory at the end of the pass (8 x 2048 tokens: "
            f"{per_token * 8 * 2048 / 2**30:.1f} GiB); a 2x40GB pair needs --max-memory with "
            "cpu= and some layers offloaded"
        ),
    }
    if measured:
        best = max(measured, key=lambda r: r["parameters"])
        flops_rate = 2 * best["parameters"] / (best["bare_ms_per_token"] / 1000)
        out["cpu_gflops_measured"] = round(flops_rate / 1e9, 1)
        out["32b_cpu_s_per_token_projected"] = round(2 * n / flops_rate, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["1.5b", "7b"], choices=["1.5b", "7b"])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="Write the figures to this file too.")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.tokens, args.repeats)))
        return
    rows = []
    for name in args.models:
        cmd = [sys.executable, __file__, "--one", name, "--tokens", str(args.tokens)]
        cmd += ["--repeats", str(args.repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed ({done.returncode}): {done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1], indent=1), flush=True)
    result = {"measured": rows, "projected": projections(rows)}
    print(json.dumps(result["projected"], indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
