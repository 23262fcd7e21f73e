"""Several processes under `accelerate launch` (2 CPU processes, gloo): trace and eval write the
same store / results as one process (training: tests/train/test_train_parallel.py).

On a machine with no GPU the processes are started with `accelerate launch --multi_gpu
--num_processes 2` (torchrun underneath; with no GPU they use gloo): accelerate's `--cpu`
runs one process whatever --num_processes says. Each launch costs ~20 s here (imports).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from reasonlens.testing import launch, run_cli

ACCELERATE = Path(sys.executable).with_name("accelerate")
pytestmark = pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate CLI not installed")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bw_file(tmp_path_factory):
    from reasonlens.tasks.blocksworld import generate_dataset, resolve_config, write_examples

    files = generate_dataset(resolve_config("paper", levels=[1, 2], blocks=[4], train=8, test=0))
    path = tmp_path_factory.mktemp("data") / "bw.jsonl"
    write_examples(path, files["L1_train.jsonl"] + files["L2_train.jsonl"])  # 16 examples
    return path


def test_trace_two_processes_write_the_one_process_store(tiny_dir, tmp_path, capsys, monkeypatch):
    lines = [{"text": f"example {i} " + "xy" * i} for i in range(11)]  # 4 batches of 3, 2, ...
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    args = ["trace", "-m", tiny_dir, "-s", "layers.*.resid_post layers.1.k", "-i", "in.jsonl"]
    args += ["-b", "3", "--device", "cpu"]
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli([*args, "-o", tmp_path / "one"], capsys)
    assert code == 0, err
    done = launch([*args[:-2], "-o", "two"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = tmp_path / "one", tmp_path / "two"
    shards = sorted(p.name for p in one.glob("shard-*"))
    assert len(shards) == 4 and shards == sorted(p.name for p in two.glob("shard-*"))
    for name in [*shards, "meta.json"]:  # byte for byte: rows, tokens, order, metadata
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    owned = json.loads((two / ".reasonlens-owned").read_text())
    assert set(shards) <= set(owned["files"])  # shards of rank 1 are the run's too
    assert not (two / ".reasonlens.lock").exists()


def test_eval_two_processes_write_the_one_process_results(tiny_dir, bw_file, tmp_path, capsys):
    args = ["eval", "-d", bw_file, "-m", tiny_dir, "-b", "3", "--max-new-tokens", "6"]
    code, _, err = run_cli([*args, "--device", "cpu", "-o", tmp_path / "one"], capsys)
    assert code == 0, err
    done = launch([*args, "-o", tmp_path / "two"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "examples.jsonl").read_text() == (two / "examples.jsonl").read_text()
    a, b = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert a.pop("timings").get("processes") is None and b.pop("timings")["processes"] == 2
    assert a == b
    rows = [json.loads(x) for x in (two / "examples.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(16))


def test_a_study_under_a_launch_is_refused_before_writing(tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "study"
    argv = ["study", "preferences", "-m", tiny_dir, "-o", out, "--quiet"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "one of 2 launched processes" in err and "--processes 2" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
