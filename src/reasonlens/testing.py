"""Helpers for tests of reasonlens and of code built on it: run the CLI, save a tiny model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """Run `reasonlens ARGV` in-process; (exit code, stdout, stderr) via pytest's capsys."""
    from reasonlens.cli import main

    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def save_tiny_model(path: str | Path, arch: str = "llama", **kwargs) -> str:
    """A tiny random model of `arch` saved as a model directory (what --model takes)."""
    from reasonlens.models.tiny import tiny_model

    model = tiny_model(arch, **kwargs)
    model.hf.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return str(path)


def longer_plan(example) -> str:
    """A legal Blocksworld plan that reaches the goal with one useless move first (2 steps
    longer than the gold plan): what a test of the validator or evaluator wants as 'not optimal'."""
    pile = next(p for p in example.problem.init if p)
    below = pile[-2] if len(pile) > 1 else "table"
    actions = [f"pick-up {pile[-1]}", f"stack {pile[-1]} on-top-of {below}"]
    actions += [str(a) for a in example.plan]
    return "\n".join(f"step {k}: {a}" for k, a in enumerate(actions, start=1))


def illegal_plan(example) -> str:
    """The gold first step, then a second pick-up while the hand is full."""
    first = example.plan[0]
    return f"step 1: {first}\nstep 2: pick-up {first.block}"


def launch(args: list, cwd: str | Path, processes: int = 2, timeout: float = 300):
    """`accelerate launch` of `reasonlens ARGS` (or of a script: ARGS[0] ending in .py) in
    `processes` processes on the CPU (gloo), one thread each; the CompletedProcess.

    `--multi_gpu` starts them through torchrun; finding no GPU they use gloo (accelerate 1.x's
    `--cpu` would run one process whatever --num_processes says)."""
    from reasonlens.parallel import launch_command

    script = str(args[0]).endswith(".py")
    target = [str(args[0])] if script else ["-m", "reasonlens"]
    rest = args[1:] if script else args
    cmd = launch_command([*target, *map(str, rest)], processes)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
