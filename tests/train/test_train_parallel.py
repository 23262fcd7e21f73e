"""Training under `accelerate launch --num_processes 2` (DDP on gloo, 2 CPU processes): the
1-process loss curve with the same global batch, one process writes the run directory, a run
killed mid-way resumes. FSDP: see README 'On several GPUs' (not on CPU here)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasonlens.testing import launch, run_cli

pytestmark = pytest.mark.skipif(
    not Path(sys.executable).with_name("accelerate").exists(), reason="no accelerate CLI"
)
KILL_AT_STEP = 4
KILLER = f"""
import os, signal, sys
from reasonlens.train.trainer import GroupedSFTTrainer
real = GroupedSFTTrainer.training_step
def step(self, *args, **kwargs):
    if self.state.global_step == {KILL_AT_STEP} and os.environ.get("RANK") == "0":
        os.kill(os.getpid(), signal.SIGKILL)  # rank 0 dies; the launcher ends rank 1
    return real(self, *args, **kwargs)
GroupedSFTTrainer.training_step = step
from reasonlens.cli import main
main(sys.argv[1:])
"""


def _train(model, data, batch, *extra):
    return [
        "train", "-d", data, "-m", model, "--method", "full", "--max-steps", 6, "--save-steps",
        3, "--batch-size", batch, "--lr", 1e-3, "--device", "cpu", "-q", *extra,
    ]  # fmt: skip


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


def test_training_two_processes_follow_one_process_and_resume_after_a_kill(
    tiny_dir, bw_file, tmp_path, capsys
):
    """2 processes x batch 2 against 1 process x batch 4: the same examples in every step, the
    same loss curve and weights within float tolerance. Then rank 0 is killed (SIGKILL) in
    step 5, after checkpoint-3: the same launch resumes (taking over the dead process's lock)
    and ends on the uninterrupted curve."""
    code, _, err = run_cli([*_train(tiny_dir, bw_file, 4), "-o", tmp_path / "one"], capsys)
    assert code == 0, err
    done = launch([*_train(tiny_dir, bw_file, 2), "-o", "two"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("6 steps, final loss") == 1  # one summary, from rank 0
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert [r["step"] for r in two] == list(range(1, 7))
    for a, b in zip(one, two, strict=True):
        assert b["num_tokens"] == a["num_tokens"]  # the same examples, step by step
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4), (a, b)
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["device"].startswith("2 x ")
    w1, w2 = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("one", "two"))
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], atol=1e-4, rtol=1e-3, msg=name)

    (tmp_path / "killer.py").write_text(KILLER)
    killed = launch(["killer.py", *_train(tiny_dir, bw_file, 2), "-o", "killed"], tmp_path)
    assert killed.returncode != 0
    run = tmp_path / "killed"
    assert not (run / "results.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-3"]
    resumed = launch([*_train(tiny_dir, bw_file, 2), "-o", "killed"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["resumed_from_step"] == 3
    again = _log(run)
    assert [r["step"] for r in again] == list(range(1, 7))
    for a, b in zip(two, again, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5), (a, b)
    assert not (run / ".reasonlens.lock").exists()
    shutil.rmtree(run / "checkpoints")  # keep the tmp directory small
