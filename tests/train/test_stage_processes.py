"""A study's training stage launched across 2 CPU processes (`--processes 2`): the steps see
the examples the 1-process stage sees and the loss curve is its curve within float tolerance;
the stage records how many processes trained it. What cannot be split is refused when the
study is opened, before anything is written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from reasonlens.errors import UserError
from reasonlens.studies import Settings
from reasonlens.studies.kit import train_stage
from reasonlens.testing import run_cli
from reasonlens.train.recipe import Recipe, TrainRecipe

needs_launcher = pytest.mark.skipif(
    not Path(sys.executable).with_name("accelerate").exists(), reason="no accelerate CLI"
)
RECIPE = Recipe(
    TrainRecipe(method="full", epochs=1, batch_size=4, learning_rate=1e-3), save_steps=2
)


def _settings(model: str, processes: int) -> Settings:
    return Settings("test", model, device="cpu", progress=False, processes=processes)


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


@needs_launcher
def test_a_training_stage_on_two_processes_follows_the_one_process_stage(
    tiny_dir, bw_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    runs = {}
    for n in (1, 2):
        stage = train_stage("train", RECIPE, _settings(tiny_dir, n), lambda up: [bw_file], {})
        assert stage.inputs == ({"processes": 2} if n == 2 else {})
        stage.run(tmp_path / str(n), {})
        runs[n] = _log(tmp_path / str(n))
    one, two = runs[1], runs[2]
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4]
    for a, b in zip(one, two, strict=True):
        assert b["num_tokens"] == a["num_tokens"]  # the same examples, step by step
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4), (a, b)
    results = json.loads((tmp_path / "2" / "results.json").read_text())
    assert results["device"].startswith("2 x ")


def test_what_cannot_be_split_is_refused_when_the_stage_is_declared(tiny_dir, bw_file):
    with pytest.raises(UserError, match="batch of 4 does not split across 3 processes"):
        train_stage("train", RECIPE, _settings(tiny_dir, 3), lambda up: [bw_file], {})
    with pytest.raises(UserError, match="from inside its trainer"):
        train_stage(
            "train", RECIPE, _settings(tiny_dir, 2), lambda up: [bw_file], {},
            callbacks=lambda directory, upstream: [],
        )  # fmt: skip


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "planning", "--processes", "0"], "--processes must be a whole number"),
        # the quick pair's SFT batch of 8 does not split into 3
        (["pair", "--task", "maze", "--processes", "3"], "does not split across 3 processes"),
    ],
    ids=["zero", "pair-batch"],
)
def test_bad_process_counts_exit_2_writing_nothing(tiny_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    code, _, err = run_cli([*argv, "-m", tiny_dir, "-o", out, "--quiet"], capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_an_fsdp_launch_on_a_machine_without_gpus_is_refused(
    tiny_dir, bw_file, tmp_path, capsys, monkeypatch
):
    """accelerate runs FSDP on GPUs only: on CPUs the processes would each train the whole
    model (plain DDP), which is not what the config asks for."""
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present: FSDP runs there")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    out = tmp_path / "ft"
    code, _, err = run_cli(["train", "-d", bw_file, "-m", tiny_dir, "-o", out], capsys)
    assert code == 2 and "asks for FSDP, which accelerate runs on GPUs only" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
