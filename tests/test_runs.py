"""Run directories never lose finished work and reopen the same run for resuming."""

import json

import pytest

from reasonlens.errors import UserError
from reasonlens.runs import RunDir


def test_same_run_reopens_and_keeps_its_files(tmp_path):
    run = RunDir.create(tmp_path / "r", "eval", {"model": "m", "n": 3})
    run.write_json("results.json", {"score": 0.5})
    again = RunDir.create(tmp_path / "r", "eval", {"model": "m", "n": 3})
    assert json.loads(again.file("results.json").read_text()) == {"score": 0.5}
    record = json.loads(again.file("run.json").read_text())
    assert record["kind"] == "eval" and "torch" in record["versions"]
    assert (tmp_path / "r" / "config.yaml").read_text() == "model: m\nn: 3\n"


def test_a_different_run_is_refused_unless_overwrite(tmp_path):
    run = RunDir.create(tmp_path / "r", "eval", {"model": "m", "n": 3})
    run.write_json("results.json", {"score": 0.5})
    with pytest.raises(UserError, match=r"different eval run \(differs in: n\)"):
        RunDir.create(tmp_path / "r", "eval", {"model": "m", "n": 4})
    with pytest.raises(UserError, match="run of another kind"):
        RunDir.create(tmp_path / "r", "train", {"model": "m", "n": 3})
    assert run.file("results.json").exists()
    RunDir.create(tmp_path / "r", "eval", {"model": "m", "n": 4}, overwrite=True)
    assert not run.file("results.json").exists()


def test_foreign_directories_are_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a reasonlens run"):
        RunDir.create(tmp_path / "d", "eval", {})
    with pytest.raises(UserError, match="not a reasonlens run directory"):
        RunDir.open(tmp_path / "d")
    run = RunDir.create(tmp_path / "e", "eval", {})
    with pytest.raises(UserError, match="is not a train run"):
        RunDir.open(run.path, "train")
