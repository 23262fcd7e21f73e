"""`reasonlens train` and `reasonlens train-merge`: a real run, and exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest

from reasonlens.models.tiny import tiny_model
from reasonlens.testing import run_cli as run


def test_train_then_merge_from_the_command_line(tiny_dir, generic_file, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {tiny_dir}\nmethod: lora\nmax_steps: 5\nbatch_size: 4\ndevice: cpu\n")
    out = tmp_path / "run"
    argv = ["train", "-c", str(cfg), "-d", generic_file, "-o", str(out), "--max-steps", "2", "-q"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert "2 steps, final loss" in err
    assert json.loads((out / "run.json").read_text())["config"]["max_steps"] == 2  # flag wins
    assert (out / "model" / "config.json").is_file()

    merged = tmp_path / "merged"
    code, _, err = run(["train-merge", str(out / "adapter"), "-o", str(merged)], capsys)
    assert code == 0, err
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gpt2")
    model = tiny_model("gpt2")
    model.hf.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-wide")
    model = tiny_model("llama", d_model=96)
    model.hf.save_pretrained(path)
    model.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_dir, bw_file):
    from reasonlens.train import TrainConfig, train

    config = TrainConfig(data=[bw_file], model=tiny_dir, method="lora", max_steps=1, device="cpu")
    return str(train(config, tmp_path_factory.mktemp("runs") / "a", progress=False).adapter_dir)


@pytest.mark.parametrize("base", ["gpt2_dir", "wide_dir"])
def test_merging_into_a_base_the_adapter_does_not_fit_exits_2(
    request, base, adapter_dir, tmp_path, capsys
):
    base_dir = request.getfixturevalue(base)
    argv = ["train-merge", adapter_dir, "--base", base_dir, "-o", str(tmp_path / "m")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "does not match the base model" in err and "Traceback" not in err


def test_bad_input_exits_2_with_one_line(tiny_dir, bw_file, tmp_path, capsys):
    bad_cfg = tmp_path / "cfg.yaml"
    bad_cfg.write_text("batch_sise: 4\n")
    bad_data = tmp_path / "bad.jsonl"
    bad_data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    cases = [
        (["-c", str(bad_cfg), "-d", bw_file], "did you mean 'batch_size'"),
        (["-d", str(bad_data), "-m", tiny_dir], "bad.jsonl:2: expected a JSON object"),
        (["-d", bw_file, "-m", tiny_dir, "--method", "qlora"], "unknown method 'qlora'"),
        (["-m", tiny_dir], "no training data"),
    ]
    for args, message in cases:
        code, _, err = run(["train", "-o", str(tmp_path / "r"), *args], capsys)
        assert code == 2, (args, err)
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing is created for input that is refused
