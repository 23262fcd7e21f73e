"""GRPO under `accelerate launch --num_processes 2` (DDP on gloo, 2 CPU processes): every
optimizer step takes the prompts a 1-process run takes (each process generates and scores its
half of them), a constant reward moves no weight, one process writes the run directory, and a
step that cannot be split across the processes is refused before anything is written."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasonlens.testing import launch, run_cli

pytestmark = pytest.mark.skipif(
    not Path(sys.executable).with_name("accelerate").exists(), reason="no accelerate CLI"
)

REWARDS = """
import os

def logged(item, completion, verdicts):
    with open(f"calls-{os.environ.get('RANK', '0')}.txt", "a") as handle:
        handle.write(item.id + "\\n")
    return len(completion) / 10

def constant(item, completion, verdicts):
    return 0.5
"""
STEPS, PROMPTS, GROUP, BATCH = 3, 2, 4, 2  # 8 completions a step: 2 processes x 2 batches x 2


def _grpo(model, data, reward, *extra):
    return [
        "train", "--method", "grpo", "-d", data, "-m", model, "--reward", reward,
        "--weights", "full", "--max-steps", STEPS, "--prompts-per-step", PROMPTS,
        "--num-generations", GROUP, "--batch-size", BATCH, "--max-completion-length", 8,
        "--lr", 1e-2, "--beta", 0, "--save-steps", 2, "--device", "cpu", "-q", *extra,
    ]  # fmt: skip


def _steps(calls: list[str], per_step: int) -> list[Counter]:
    return [Counter(calls[i : i + per_step]) for i in range(0, len(calls), per_step)]


def test_grpo_on_two_processes_takes_one_process_prompts_and_writes_one_run(
    tiny_dir, bw_file, tmp_path, capsys, monkeypatch
):
    rewards = tmp_path / "toy_rewards.py"
    rewards.write_text(REWARDS)
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir(), two_dir.mkdir()
    monkeypatch.chdir(one_dir)
    code, _, err = run_cli([*_grpo(tiny_dir, bw_file, f"{rewards}:logged"), "-o", "run"], capsys)
    assert code == 0, err
    done = launch([*_grpo(tiny_dir, bw_file, f"{rewards}:logged"), "-o", "run"], two_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count(f"{STEPS} GRPO steps, reward") == 1  # one summary, from rank 0

    one = (one_dir / "calls-0.txt").read_text().split()
    halves = [(two_dir / f"calls-{r}.txt").read_text().split() for r in (0, 1)]
    per_step = PROMPTS * GROUP
    assert len(one) == STEPS * per_step and [len(h) for h in halves] == [len(one) // 2] * 2
    # step by step, the two processes' completions are of the prompts one process samples
    merged = [a + b for a, b in zip(*(_steps(h, per_step // 2) for h in halves), strict=True)]
    assert merged == _steps(one, per_step)
    results = json.loads((two_dir / "run" / "results.json").read_text())
    assert results["steps"] == STEPS and results["completions_sampled"] == STEPS * per_step
    assert results["device"].startswith("2 x ")
    log = (two_dir / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in log] == list(range(1, STEPS + 1))
    assert not (two_dir / "run" / ".reasonlens.lock").exists()

    still = launch([*_grpo(tiny_dir, bw_file, f"{rewards}:constant"), "-o", "flat"], two_dir)
    assert still.returncode == 0, still.stderr[-3000:]
    start = load_file(str(Path(tiny_dir) / "model.safetensors"))
    end = load_file(str(two_dir / "flat" / "model" / "model.safetensors"))
    assert [k for k in start if not torch.equal(start[k], end[k])] == []


def test_a_step_that_does_not_split_across_the_processes_is_refused(
    tiny_dir, bw_file, tmp_path, capsys, monkeypatch
):
    """8 completions a step cannot be batches of 8 on each of 2 processes: exit 2, one line,
    before anything is written (as each launched process sees it: WORLD_SIZE=2)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = [*_grpo(tiny_dir, bw_file, "blocksworld", "--batch-size", 8), "-o", tmp_path / "x"]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert "do not split into batches of 8 across 2 processes" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
