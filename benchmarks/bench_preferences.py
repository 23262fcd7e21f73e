"""Preferences study speed: the decision read-out and the recovery of learned weights.

    uv run python benchmarks/bench_preferences.py [--model smollm2-135m] [--n 32] [--batch-size 16]

1. Read-out. The study's decision prompts (catalogue scenarios, chat template) are read by
   `evaluate.choice.read_choices`: the greedy reply and logit(A) - logit(B) at the answer
   position. A forward hook counts the model's passes and the tokens each covers: a batch of
   trials costs exactly one pass over its prompts (the logits come from that pass); the
   reply's remaining tokens are single-token steps on the KV cache. Batched is timed against
   one trial at a time (before and after, averaged, so a change in a shared machine's load
   hits both sides alike), and the two must agree.
2. Recovery. 100 scenarios x 50 trials of decisions simulated from known weights through a
   logistic choice rule; one L2 logistic regression per scenario, rescaling, pooled r with a
   1,000-resample bootstrap CI, and the logit-difference least-squares recovery. Target:
   under a second (imports, done once a process, are left out).
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import time

import torch

from reasonlens.evaluate.choice import read_choices
from reasonlens.models import load_model
from reasonlens.studies.preferences.readout import decision_prompts
from reasonlens.studies.preferences.weights import pooled_correlation, recover_weights, utility
from reasonlens.studies.preferences.weights.logits import recover_from_logits
from reasonlens.tasks.preferences import Decision
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue


class PassCounter:
    """Counts forward passes of the decoder and the positions each one covers."""

    def __init__(self, model):
        self.widths: list[int] = []
        self.handle = model.hf.get_decoder().register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        shape = ids.shape if ids is not None else embeds.shape
        self.widths.append(int(shape[1]))

    def close(self) -> None:
        self.handle.remove()


def trials(n: int):
    catalogue = load_catalogue()
    names = list(catalogue)[:8]
    out = []
    for k in range(n):
        s = catalogue[names[k % len(names)]]
        out.append(T.draw_trials(s, T.draw_targets(s, 0), k // len(names) + 1, 0, "test")[-1])
    return catalogue, out


def bench_readout(model_name: str, n: int, batch_size: int) -> None:
    model = load_model(model_name, device="cpu", dtype="float32")
    catalogue, ts = trials(n)
    prompts = decision_prompts(model.tokenizer, catalogue, ts)
    print(
        f"{model_name}, CPU fp32, {torch.get_num_threads()} threads, {platform.processor()}; "
        f"{len(prompts)} decision prompts"
    )
    read_choices(model, prompts[:2], batch_size=2)  # warm-up
    counter = PassCounter(model)
    start = time.perf_counter()
    batched = read_choices(model, prompts, batch_size=batch_size)
    t_before = time.perf_counter() - start
    widths = counter.widths
    counter.widths = []
    n_batches = math.ceil(len(prompts) / batch_size)
    prompt_passes = [w for w in widths if w > 1]
    start = time.perf_counter()
    single = read_choices(model, prompts, batch_size=1)
    t_single = time.perf_counter() - start
    start = time.perf_counter()
    read_choices(model, prompts, batch_size=batch_size)
    t_after = time.perf_counter() - start
    counter.close()
    t_batch = (t_before + t_after) / 2
    same_reply = sum(a.reply == b.reply for a, b in zip(batched, single, strict=True))
    gap = max(abs(a.logit_diff - b.logit_diff) for a, b in zip(batched, single, strict=True))
    print(
        f"batched (batch {batch_size}): {n_batches} batches, {len(prompt_passes)} passes over "
        f"the prompts (one per batch: {len(prompt_passes) == n_batches}), "
        f"{len(widths) - len(prompt_passes)} one-token reply steps; "
        f"{t_batch:.2f} s = {len(prompts) / t_batch:.1f} trials/s "
        f"(runs: {t_before:.2f} s before, {t_after:.2f} s after)"
    )
    print(
        f"one at a time: {t_single:.2f} s = {len(prompts) / t_single:.1f} trials/s; speed-up "
        f"{t_single / t_batch:.1f}x; replies identical {same_reply}/{len(prompts)}, largest "
        f"logit-difference gap {gap:.2e}"
    )


def simulated(n_scenarios: int, n_trials: int, seed: int = 0):
    """Decisions from known weights through a logistic rule on the utility difference."""
    catalogue = load_catalogue()
    names = list(catalogue)[:n_scenarios]
    rng = random.Random(seed)
    scenarios = {n: catalogue[n] for n in names}
    targets, decisions = {}, []
    for name in names:
        s = scenarios[name]
        w = T.draw_targets(s, seed)
        targets[name] = w
        for t in T.draw_trials(s, w, n_trials, seed, "test"):
            du = (utility(s, w, t.a) - utility(s, w, t.b)) / 20
            p = 1 / (1 + math.exp(-du))
            reply = "A" if rng.random() < p else "B"
            decisions.append(Decision(name, reply, t.a, t.b, du + rng.gauss(0, 1)))
    return scenarios, targets, decisions


def bench_recovery(n_scenarios: int, n_trials: int) -> None:
    scenarios, targets, decisions = simulated(n_scenarios, n_trials)
    warm = recover_weights(scenarios, decisions[:100])  # warm-up: imports (sklearn, scipy)
    pooled_correlation(warm.learned, targets, n_boot=10)
    start = time.perf_counter()
    recovery = recover_weights(scenarios, decisions)
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    r = pooled_correlation(recovery.learned, targets, n_boot=1000)
    t_r = time.perf_counter() - start
    start = time.perf_counter()
    linear = recover_from_logits(scenarios, decisions)
    t_linear = time.perf_counter() - start
    r_linear = pooled_correlation(linear.learned, targets, n_boot=1000)
    total = t_fit + t_r
    print(
        f"recovery: {n_scenarios} scenarios x {n_trials} trials, L2 logistic per scenario "
        f"{t_fit:.3f} s + pooled r with 1,000 bootstrap resamples {t_r:.3f} s = {total:.3f} s "
        f"(target < 1 s: {total < 1}); r = {r.r:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}], "
        f"{len(recovery.separable)} separable scenarios"
    )
    print(
        f"logit-difference least squares: {t_linear:.3f} s, r = {r_linear.r:.3f} "
        f"[{r_linear.ci_low:.3f}, {r_linear.ci_high:.3f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=32, help="decision trials to read")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--skip-readout", action="store_true")
    args = parser.parse_args()
    if not args.skip_readout:
        bench_readout(args.model, args.n, args.batch_size)
    bench_recovery(args.scenarios, args.trials)


if __name__ == "__main__":
    main()
