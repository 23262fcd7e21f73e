"""GRPO speed on the CPU: steps per minute and the share of a step spent generating.

    uv run python benchmarks/bench_grpo.py [--model smollm2-135m] [--steps 3] [--prompts 4]
        [--generations 4] [--length 64] [--threads N]

Runs `train --method grpo` (LoRA) for a few steps on Blocksworld L2/L3 prompts (4 blocks) and
reads train_log.jsonl: per step its wall time, the seconds inside the one batched `generate`
(all prompts x generations of a step), and how many generate calls the step made (1 means
batched). The first step is reported apart (it warms up caches and allocators).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    a = parser.parse_args()

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from reasonlens.tasks.blocksworld import generate_dataset, resolve_config, write_examples
    from reasonlens.train import TrainConfig, train
    from reasonlens.train.callbacks import read_log

    with tempfile.TemporaryDirectory() as tmp:
        files = generate_dataset(
            resolve_config("paper", levels=[2, 3], blocks=[4], train=16, test=0)
        )
        data = Path(tmp) / "bw.jsonl"
        write_examples(data, files["L2_train.jsonl"] + files["L3_train.jsonl"])
        config = TrainConfig(
            data=[str(data)], model=a.model, method="grpo", weights="lora", max_steps=a.steps,
            prompts_per_step=a.prompts, num_generations=a.generations,
            max_completion_length=a.length, batch_size=a.prompts * a.generations,
            learning_rate=1e-4, save_steps=10_000, device="cpu",
        )  # fmt: skip
        start = time.perf_counter()
        result = train(config, Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - start
        log = read_log(result.run_dir / "train_log.jsonl")
    later = log[1:] or log
    step_s = sum(r["step_time"] for r in later) / len(later)
    gen_s = sum(r["generate_time"] for r in later) / len(later)
    report = {
        "model": a.model,
        "threads": torch.get_num_threads(),
        "completions_per_step": a.prompts * a.generations,
        "max_completion_length": a.length,
        "mean_completion_length": sum(r["completion_length"] for r in log) / len(log),
        "first_step_s": round(log[0]["step_time"], 2),
        "step_s": round(step_s, 2),
        "steps_per_minute": round(60 / step_s, 2),
        "generate_share": round(gen_s / step_s, 3),
        "generate_calls_per_step": [r["generate_calls"] for r in log],
        "wall_s_incl_load_and_save": round(wall, 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
