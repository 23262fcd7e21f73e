"""`reasonlens data blocksworld` and `reasonlens validate`, called through the real entry point."""

from __future__ import annotations

import json

import pytest

from reasonlens.cli import main
from reasonlens.tasks.blocksworld import generate_problems, read_examples


def run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_data_blocksworld_writes_levels_and_manifest(tmp_path, capsys):
    out = tmp_path / "bw"
    argv = [
        "data",
        "blocksworld",
        "--out",
        str(out),
        "--levels",
        "L1",
        "L3",
        "--blocks",
        "4",
        "5",
        "--train",
        "3",
        "--test",
        "6",
        "--seed",
        "2",
        "--format",
        "seed",
    ]
    assert run(argv) == 0
    assert "L3_test.jsonl" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["levels"] == ["L1", "L3"] and manifest["config"]["blocks"] == [4, 5]
    assert manifest["config"]["format"] == "seed" and manifest["config"]["seed"] == 2
    assert manifest["totals"] == {"train": 12, "test": 24}
    assert manifest["files"]["L3_test.jsonl"]["by_blocks"] == {"4": 6, "5": 6}
    tests = read_examples(out / "L3_test.jsonl")
    assert [ex.n_blocks for ex in tests] == [4] * 6 + [5] * 6
    assert all(ex.format == "seed" and ex.n_steps == 6 for ex in tests)

    before = (out / "L3_test.jsonl").read_bytes()
    assert run(argv) == 0  # the same data set again: same bytes
    assert (out / "L3_test.jsonl").read_bytes() == before

    other = [
        "data",
        "blocksworld",
        "--out",
        str(out),
        "--levels",
        "L2",
        "--blocks",
        "4",
        "--train",
        "1",
        "--test",
        "1",
    ]
    assert run(other) == 2
    assert "already holds a different Blocksworld data set" in capsys.readouterr().err
    assert run([*other, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "L2_test.jsonl",
        "L2_train.jsonl",
        "config.yaml",
        "manifest.json",
        "run.json",
    ]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [
        ".reasonlens-owned"  # what reasonlens wrote there; the lock is gone with the command
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--blocks", "3", "--levels", "L2", "--test", "5000"], "only 960 distinct problems"),
        (["--levels", "L6"], "unknown level 'L6'"),
        (["--preset", "papr"], "did you mean 'paper'"),
        (["--blocks", "7"], "Table 1 has no counts for L1 with 7 blocks"),
        (["--blocks", "7", "--train", "1", "--test", "1"], "palette has 6"),
        (["extra"], "unexpected argument 'extra'"),
    ],
)
def test_data_blocksworld_bad_requests_exit_2_with_one_line(tmp_path, capsys, args, message):
    assert run(["data", "blocksworld", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_validate_json_prints_only_the_totals(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(ex.to_json() + "\n" for ex in generate_problems(4, 2, 5)) + "oops\n")
    findings = tmp_path / "findings.jsonl"
    assert run(["validate", str(path), "--json", "--findings", str(findings)]) == 0
    captured = capsys.readouterr()
    totals = json.loads(captured.out)
    assert captured.out == json.dumps(totals) + "\n"
    assert {
        k: totals[k] for k in ("total", "parsed", "legal", "goal_reached", "optimal", "trivial")
    } == {"total": 6, "parsed": 5, "legal": 5, "goal_reached": 5, "optimal": 5, "trivial": 0}
    assert f"{path}:6: invalid JSON" in captured.err
    rows = [json.loads(line) for line in findings.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[0]["optimal"] is True
    assert rows[5]["parsed"] is False and rows[5]["issues"]

    assert run(["validate", str(path), "--strict", "--json"]) == 1
    capsys.readouterr()
    assert run(["validate", str(path)]) == 0
    assert "goal_reached" in capsys.readouterr().out


def test_validate_missing_file_exits_2(tmp_path, capsys):
    assert run(["validate", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
