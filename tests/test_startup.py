"""Commands that need no model start fast: they never import torch, transformers and friends.

Each case runs the CLI in a fresh interpreter (this test process has torch loaded already) and
reports which of the heavy modules ended up in `sys.modules`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "safetensors.torch")

_CHILD = """
import json, sys
from reasonlens.cli import main
argv, report = json.loads(sys.argv[1]), sys.argv[2]
try:
    main(argv)
    code = 0
except SystemExit as exit:
    code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
heavy = [name for name in json.loads(sys.argv[3]) if name in sys.modules]
with open(report, "w") as f:
    json.dump({"code": code, "heavy": heavy}, f)
"""


def run_fresh(argv: list[str], tmp_path: Path) -> tuple[int, list[str], str]:
    """Run `reasonlens ARGV` in a new interpreter: (exit code, heavy modules imported, stdout)."""
    report = tmp_path / "startup-report.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "REASONLENS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(argv), str(report), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert report.is_file(), f"the child did not finish:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(report.read_text())
    return result["code"], result["heavy"], proc.stdout + proc.stderr


def _data_args(out: Path) -> list[str]:
    """A tiny Blocksworld data set: L1, three blocks, two problems per split."""
    sizes = ["--levels", "L1", "--blocks", "3", "--train", "2", "--test", "2"]
    return ["data", "blocksworld", *sizes, "--out", str(out)]


HELP_CASES = [
    ["--help"],
    ["validate", "--help"],
    ["data", "blocksworld", "--help"],
    ["models", "list"],
    ["models", "info", "--help"],
    ["generate", "--help"],
    ["train", "--help"],
    ["train-merge", "--help"],
    ["eval", "--help"],
    ["preferences", "--help"],
    ["preferences", "analyse", "--help"],
    ["trace", "--help"],
    ["study", "--help"],
    ["study", "planning", "--help"],
    ["study", "preferences", "--help"],
    ["study", "list"],
    ["report", "--help"],
]


@pytest.mark.parametrize("argv", HELP_CASES, ids=" ".join)
def test_no_model_commands_skip_torch(argv, tmp_path):
    code, heavy, output = run_fresh(argv, tmp_path)
    assert code == 0, output
    assert heavy == [], f"`reasonlens {' '.join(argv)}` imported {heavy}"


def test_data_blocksworld_skips_torch(tmp_path):
    out = tmp_path / "bw"
    code, heavy, output = run_fresh(_data_args(out), tmp_path)
    assert code == 0, output
    assert (out / "L1_test.jsonl").is_file() and (out / "manifest.json").is_file()
    assert heavy == [], f"`reasonlens data blocksworld` imported {heavy}"


def test_validate_skips_torch(tmp_path, capsys):
    from reasonlens.testing import run_cli

    out = tmp_path / "bw"
    code, _, err = run_cli(_data_args(out), capsys)  # in-process: this process has torch anyway
    assert code == 0, err
    code, heavy, output = run_fresh(["validate", "--strict", str(out / "L1_test.jsonl")], tmp_path)
    assert code == 0, output
    assert "optimal" in output
    assert heavy == [], f"`reasonlens validate FILE` imported {heavy}"
