"""Evaluation speed on the default model (CPU, fp32): batched vs one-at-a-time generation.

    uv run python benchmarks/bench_eval.py [--n 16] [--batch-size 16] [--max-new-tokens 32]

The same Blocksworld problems (L1 and L2 mixed, so prompts differ in length) are generated
greedily with the same token limit, in batches (left padding, KV cache) and one problem at a time
(what a public reproduction did). Both run to EOS or the limit, without the end-of-plan stop rule:
the untrained base model ends its "plan" after a few tokens, which would time little more than
the prompt pass, whereas a trained model writes the whole plan. Tokens/s counts the tokens each
output keeps (up to EOS); a row that ends early in a batch still costs compute there. The batched
run is timed before and after the one-at-a-time run and averaged, so a change in machine load
during the run (a shared CPU) hits both sides alike. The speed-up target is at least 5x. Then
teacher-forced scoring throughput (problems/s, one forward pass per problem).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from reasonlens.evaluate.generation import generate_tokens
from reasonlens.evaluate.teacher_forcing import score_blanks
from reasonlens.models import load_model
from reasonlens.tasks.blocksworld import generate_problems
from reasonlens.tasks.blocksworld.tokens import encode_example


def problems(n: int):
    """``n`` unique-optimal test problems: half L1 with 4 blocks, half L2 with 5 blocks."""
    half = n // 2
    return generate_problems(4, 1, half, unique=True, seed=7) + generate_problems(
        5, 2, n - half, unique=True, seed=7
    )


def timed_generation(model, prompts, max_new_tokens: int, batch_size: int):
    start = time.perf_counter()
    out = generate_tokens(model, prompts, max_new_tokens, batch_size, chat=False)
    seconds = time.perf_counter() - start
    return out, seconds, sum(len(ids) for ids in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16, help="problems")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    model = load_model("smollm2-135m", device="cpu", dtype="float32")
    examples = problems(args.n)
    prompts = [ex.prompt for ex in examples]
    print(
        f"smollm2-135m, CPU fp32, {torch.get_num_threads()} threads, {platform.processor()}; "
        f"{len(prompts)} problems, max_new_tokens={args.max_new_tokens}"
    )
    generate_tokens(model, prompts[:2], 2, 2, chat=False)  # warm-up

    batched, t_before, n_batch = timed_generation(
        model, prompts, args.max_new_tokens, args.batch_size
    )
    single, t_single, n_single = timed_generation(model, prompts, args.max_new_tokens, 1)
    again, t_after, _ = timed_generation(model, prompts, args.max_new_tokens, args.batch_size)
    t_batch = (t_before + t_after) / 2
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    rate_batch, rate_single = n_batch / t_batch, n_single / t_single
    print(
        f"batched (batch {args.batch_size}): {n_batch} tokens in {t_batch:.1f} s "
        f"(runs: {t_before:.1f} s before, {t_after:.1f} s after) = {rate_batch:.1f} tokens/s"
    )
    print(f"one at a time: {n_single} tokens in {t_single:.1f} s = {rate_single:.1f} tokens/s")
    print(
        f"speed-up: {rate_batch / rate_single:.1f}x in tokens/s, "
        f"{t_single / t_batch:.1f}x in wall time (target >= 5x); "
        f"identical outputs: {same}/{len(prompts)}, batched runs agree: {again == batched}"
    )

    encoded = [encode_example(model.tokenizer, ex) for ex in examples]
    score_blanks(model, encoded[:2], batch_size=2)  # warm-up
    start = time.perf_counter()
    blanks = score_blanks(model, encoded, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    n_tokens = sum(len(e) for e in encoded)
    print(
        f"teacher forcing: {len(encoded)} problems ({sum(map(len, blanks))} blanks, {n_tokens} "
        f"tokens) in {seconds:.1f} s = {len(encoded) / seconds:.2f} problems/s, "
        f"{n_tokens / seconds:.0f} tokens/s"
    )


if __name__ == "__main__":
    main()
