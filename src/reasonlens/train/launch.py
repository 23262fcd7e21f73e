"""A training run launched across several processes from a program that is itself one
process (a study's training stage): `reasonlens train` under `accelerate launch`, on the same
global batch as the 1-process run, so the steps see the same examples and the loss curve is
the 1-process one within float tolerance (tests/train/test_train_parallel.py).

    train_launched(config, "runs/x/train", processes=2)

On GPUs each process takes one; on a machine with none they run on the CPU (gloo).
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path

import yaml

from reasonlens.errors import UserError
from reasonlens.train.config import TrainConfig


def split_batch(batch_size: int, processes: int, what: str = "the batch") -> int:
    """The per-process batch that keeps the global batch: ``batch_size`` must split evenly."""
    if batch_size % processes:
        raise UserError(
            f"{what} of {batch_size} does not split across {processes} processes: give a "
            f"number of processes that divides {batch_size}"
        )
    return batch_size // processes


def per_process(config: TrainConfig, processes: int) -> TrainConfig:
    """``config`` as each of ``processes`` processes runs it: the same global batch (SFT:
    batch x processes; GRPO: the same completions a step, batched as one process batches)."""
    batch = split_batch(config.batch_size, processes)
    return dataclasses.replace(config, batch_size=batch)


def train_launched(
    config: TrainConfig, out: str | Path, processes: int, progress: bool = True
) -> None:
    """Run ``config`` into ``out`` under ``accelerate launch`` of ``processes`` processes;
    their output goes to this terminal. A failed launch is a RuntimeError naming the log."""
    from reasonlens.parallel import launch_command

    mine = per_process(config, processes)
    with tempfile.TemporaryDirectory(prefix="reasonlens-launch-") as tmp:
        path = Path(tmp) / "train.yaml"
        path.write_text(yaml.safe_dump(mine.to_dict(), sort_keys=False), encoding="utf-8")
        args = ["-m", "reasonlens", "train", "--config", str(path), "-o", str(out)]
        done = subprocess.run(launch_command(args + ([] if progress else ["-q"]), processes))
    if done.returncode != 0:
        raise RuntimeError(
            f"training into {out} under accelerate launch of {processes} processes failed "
            f"(exit code {done.returncode}); its error is above, its log in {out}/train.log"
        )
