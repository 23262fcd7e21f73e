"""A kill during a checkpoint save: the checkpoint never appears half-written, and a resume
takes the newest complete checkpoint, ending with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer

from reasonlens.testing import run_cli
from reasonlens.train.trainer import GroupedSFTTrainer, checkpoint_problem

WEIGHTS = {"lora": "adapter_model.safetensors", "full": "model.safetensors"}


class Killed(BaseException):
    """The process dies here (nothing catches it: not click, not the Trainer)."""


def _argv(tiny_dir, bw_file, out, method):
    return [
        "train", "-d", bw_file, "-m", tiny_dir, "--method", method, "--max-steps", 6,
        "--save-steps", 3, "--batch-size", 2, "--lr", 1e-3, "--device", "cpu", "-q", "-o", out,
    ]  # fmt: skip


def _weights(run):
    return load_file(run / "model" / "model.safetensors")


def _assert_same_weights(run, reference):
    got, want = _weights(run), _weights(reference)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dir, bw_file):
    """Per method: an uninterrupted 6-step run, and one killed after step 4 (checkpoint-3)."""
    made = {}
    capsys = _NoCapture()
    for method in WEIGHTS:
        root = tmp_path_factory.mktemp(f"ckpt-{method}")
        code, _, err = run_cli(_argv(tiny_dir, bw_file, root / "ref", method), capsys)
        assert code == 0, err
        real = GroupedSFTTrainer.training_step

        def killed(self, *args, real=real, **kwargs):
            if self.state.global_step == 4:
                raise Killed
            return real(self, *args, **kwargs)

        GroupedSFTTrainer.training_step = killed
        try:
            with pytest.raises(Killed):
                run_cli(_argv(tiny_dir, bw_file, root / "killed", method), capsys)
        finally:
            GroupedSFTTrainer.training_step = real
        checkpoints = root / "killed" / "checkpoints"
        assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == ["checkpoint-3"]
        made[method] = root
    return made


class _NoCapture:
    """capsys for a module fixture: nothing to read back."""

    def readouterr(self):
        return "", ""


def _only_the_weights(ckpt, good, method):
    ckpt.mkdir()
    shutil.copy(good / WEIGHTS[method], ckpt / WEIGHTS[method])


def _truncated_weights(ckpt, good, method):
    shutil.copytree(good, ckpt)
    data = (good / WEIGHTS[method]).read_bytes()
    (ckpt / WEIGHTS[method]).write_bytes(data[: len(data) // 2])
    state = json.loads((good / "trainer_state.json").read_text())
    (ckpt / "trainer_state.json").write_text(json.dumps({**state, "global_step": 6}))


def _truncated_state(ckpt, good, method):
    shutil.copytree(good, ckpt)
    text = (good / "trainer_state.json").read_text().replace('"global_step": 3', '"global_step": 6')
    (ckpt / "trainer_state.json").write_text(text[: len(text) // 2])


@pytest.mark.parametrize(
    ("method", "damage"),
    [("lora", _only_the_weights), ("full", _truncated_weights), ("full", _truncated_state)],
    ids=["lora-only-weights", "full-truncated-weights", "full-truncated-trainer-state"],
)
def test_a_half_written_checkpoint_is_ignored_and_the_valid_one_resumed(
    runs, method, damage, tiny_dir, bw_file, tmp_path, capsys, caplog
):
    run = tmp_path / "run"
    shutil.copytree(runs[method] / "killed", run)
    checkpoints = run / "checkpoints"
    damage(checkpoints / "checkpoint-6", checkpoints / "checkpoint-3", method)
    assert checkpoint_problem(checkpoints / "checkpoint-6") is not None
    assert checkpoint_problem(checkpoints / "checkpoint-3") is None

    with caplog.at_level(logging.INFO, logger="reasonlens"):
        code, _, err = run_cli(_argv(tiny_dir, bw_file, run, method), capsys)
    assert code == 0, err
    assert "removing incomplete checkpoint" in caplog.text
    assert f"resuming from {checkpoints / 'checkpoint-3'}" in caplog.text
    results = json.loads((run / "results.json").read_text())
    assert results["resumed_from_step"] == 3 and results["steps"] == 6
    assert checkpoint_problem(checkpoints / "checkpoint-6") is None  # saved again, whole
    _assert_same_weights(run, runs[method] / "ref")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_kill_during_a_checkpoint_save_leaves_no_checkpoint_behind(
    runs, method, tiny_dir, bw_file, tmp_path, capsys, monkeypatch
):
    """Killed after the weights and the optimizer of checkpoint-6 are written, before the
    RNG and trainer state: no checkpoint-6 appears, and the re-run resumes from step 3."""
    run = tmp_path / "run"
    shutil.copytree(runs[method] / "killed", run)
    real = Trainer._save_rng_state

    def killed(self, output_dir):
        if self.state.global_step == 6:
            raise Killed
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", killed)
    with pytest.raises(Killed):
        run_cli(_argv(tiny_dir, bw_file, run, method), capsys)
    checkpoints = run / "checkpoints"
    assert not (checkpoints / "checkpoint-6").exists()
    assert (checkpoints / ".partial" / "checkpoint-6" / WEIGHTS[method]).is_file()

    monkeypatch.setattr(Trainer, "_save_rng_state", real)
    code, _, err = run_cli(_argv(tiny_dir, bw_file, run, method), capsys)
    assert code == 0, err
    assert not (checkpoints / ".partial").exists()
    assert json.loads((run / "results.json").read_text())["resumed_from_step"] == 3
    _assert_same_weights(run, runs[method] / "ref")


def test_checkpoints_beyond_the_limit_are_still_rotated(quick, tmp_path):
    """Renamed into place, checkpoints are still rotated by the Trainer's save_total_limit."""
    from reasonlens.train import train

    config = quick(method="full", max_steps=3, save_steps=1, save_total_limit=1)
    train(config, tmp_path / "run", progress=False)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["README.md", "checkpoint-3"]
