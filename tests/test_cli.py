"""The CLI: exit code 2 and one clear line on bad input; real output on good input."""

import json

import pytest

from reasonlens.testing import run_cli as run
from reasonlens.trace import ActivationStore


def test_trace_writes_a_store(tiny_dir, tmp_path, capsys):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "hello"}\n{"text": "world wide", "positions": [0, -1]}\n')
    code, _, err = run(
        [
            "trace",
            "-m",
            tiny_dir,
            "-s",
            "layers.*.resid_post",
            "-i",
            str(inputs),
            "-o",
            str(tmp_path / "s"),
        ],
        capsys,
    )
    assert code == 0, err
    store = ActivationStore(tmp_path / "s")
    assert store.n_examples == 2 and store.get("layers.1.resid_post").shape[1] == 64
    assert "2 examples, 2 sites" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["trace", "-s", "layers.0.resid_post", "-t", "x", "-o", "OUT", "-m", "nope"],
            "unknown model 'nope'",
        ),
        (
            ["trace", "-s", "layers.7.resid_post", "-t", "x", "-o", "OUT", "-m", "TINY"],
            "layer 7 does not exist",
        ),
        (
            ["trace", "-s", "layers.0.bogus", "-t", "x", "-o", "OUT", "-m", "TINY"],
            "unknown site 'bogus'",
        ),
        (
            ["trace", "-s", "layers.0.k", "-i", "BAD", "-o", "OUT", "-m", "TINY"],
            "bad.jsonl:2: not valid JSON",
        ),
        (["trace", "-s", "layers.0.k", "-o", "OUT", "-m", "TINY"], "give either --input"),
        (
            [
                "trace",
                "-s",
                "layers.0.k",
                "-t",
                "x",
                "-o",
                "OUT",
                "-m",
                "TINY",
                "--positions",
                "first",
            ],
            "unknown positions 'first'",
        ),
        (["models", "info", "gpt-17"], "unknown model 'gpt-17'"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, tiny_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{nope\n')
    swap = {"OUT": str(tmp_path / "out"), "TINY": tiny_dir, "BAD": str(bad)}
    code, _, err = run([swap.get(a, a) for a in argv], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_trace_refuses_to_overwrite_a_different_store(tiny_dir, tmp_path, capsys):
    out = str(tmp_path / "s")
    assert run(["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "a", "-o", out], capsys)[0] == 0
    code, _, err = run(["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "b", "-o", out], capsys)
    assert code == 2 and "already holds a different capture" in err
    code, _, _ = run(
        ["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "b", "-o", out, "--overwrite"], capsys
    )
    assert code == 0


def test_models_info_json(tiny_dir, capsys):
    code, out, _ = run(["models", "info", tiny_dir, "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["architecture"] == "llama" and info["layers"] == 2


def test_usage_errors_exit_2(capsys):
    code, _, err = run(["trace", "--no-such-flag"], capsys)
    assert code == 2 and "No such option" in err
