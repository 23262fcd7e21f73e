"""`reasonlens eval`: a run directory with results on good input, one clear line on bad."""

from __future__ import annotations

import json

import pytest

from reasonlens.tasks.blocksworld import generate_problems, write_examples
from reasonlens.testing import run_cli as run

RATES = ("parsed", "legal", "goal_reached", "optimal", "exact_match", "S_step", "S_plan")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    write_examples(path / "L1_test.jsonl", generate_problems(4, 1, 3, unique=True))
    write_examples(path / "L2_test.jsonl", generate_problems(5, 2, 3, unique=True))
    return path


def _check_run(out, n_examples, mode="both"):
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == mode and results["totals"]["n"] == n_examples
    for scores in [results["totals"], *results["by_level"].values()]:
        for key in RATES:
            assert scores[key] is None or 0.0 <= scores[key] <= 1.0
    lines = (out / "examples.jsonl").read_text().splitlines()
    assert len(lines) == n_examples
    record = json.loads(lines[0])
    assert {"id", "level", "n_blocks", "prompt", "gold"} <= set(record)
    assert json.loads((out / "run.json").read_text())["kind"] == "eval"
    assert "S_plan" in (out / "summary.md").read_text()
    return results, [json.loads(line) for line in lines]


def test_eval_writes_a_run_directory(tiny_dir, data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["eval", "-m", tiny_dir, "--data", data / "L1_test.jsonl", data / "L2_test.jsonl"]
    argv += ["--out", out, "--batch-size", 2, "--limit", 2, "--max-new-tokens", 8]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    results, records = _check_run(out, 4)
    assert set(results["by_level"]) == {"L1", "L2"} and set(results["by_blocks"]) == {"4", "5"}
    assert results["data"] == [str(data / "L1_test.jsonl"), str(data / "L2_test.jsonl")]
    assert results["model"]["name"] == str(tiny_dir)
    assert results["settings"]["max_new_tokens"] == 8
    assert {"model_load_s", "generation_tokens_per_s", "teacher_forced_s"} <= set(
        results["timings"]
    )
    assert all(r["n_generated_tokens"] <= 8 for r in records)
    assert all(len(r["teacher_forced"]["steps"]) == r["n_steps"] for r in records)
    assert "S_step" in stdout and "results:" in stdout

    # the same command reopens the same run; a different one is refused unless --overwrite
    assert run(argv, capsys)[0] == 0
    code, _, err = run([*argv[:-2], "--max-new-tokens", 9], capsys)
    assert code == 2 and "already holds a different eval run" in err
    code, _, err = run(
        [*argv[:-2], "--max-new-tokens", 9, "--mode", "teacher-forced", "--overwrite"], capsys
    )
    assert code == 0, err
    results, records = _check_run(out, 4, "teacher-forced")
    assert results["totals"]["parsed"] is None and "verdicts" not in records[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("NOT-JSON", "bad.jsonl:2: invalid JSON"),
        ('{"question": "2+2?", "answer": "4"}', "bad.jsonl:2: a record needs 'prompt'"),
        ('{"prompt": "Rule:\\nx\\nPlan:\\n", "completion": "step 1: pick-up red"}', "bad.jsonl:2:"),
    ],
)
def test_a_file_in_the_wrong_format_is_one_line_naming_file_and_line(
    tiny_dir, data, tmp_path, capsys, content, message
):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((data / "L1_test.jsonl").read_text().splitlines()[0] + "\n" + content + "\n")
    code, _, err = run(["eval", "-m", tiny_dir, "--data", bad, "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert message in err and "expected Blocksworld JSONL" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("missing", [], "data file not found"),
        ("empty", [], "holds no examples (empty file)"),
        ("good", ["--mode", "sample"], "unknown mode 'sample'"),
        ("good", ["-m", "no-such-model"], "unknown model 'no-such-model'"),
    ],
)
def test_bad_input_exits_2_with_one_line(data, tmp_path, capsys, setup, extra, message):
    path = {"missing": tmp_path / "nope.jsonl", "empty": tmp_path / "empty.jsonl"}.get(
        setup, data / "L1_test.jsonl"
    )
    if setup == "empty":
        path.write_text("\n")
    code, _, err = run(["eval", "--data", path, "--out", tmp_path / "o", *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_default_model_end_to_end(tmp_path, capsys):
    data = tmp_path / "L1_test.jsonl"
    write_examples(data, generate_problems(4, 1, 4, unique=True, seed=2))
    out = tmp_path / "run"
    code, stdout, err = run(
        ["eval", "--data", data, "--out", out, "--device", "cpu", "--max-new-tokens", 24], capsys
    )
    assert code == 0, err
    results, records = _check_run(out, 4)
    assert results["model"]["name"] == "smollm2-135m"
    assert results["totals"]["multi_token_answers"] == 0  # one token per answer
    assert all(r["teacher_forced"]["steps"][0]["gold"].startswith(" ") for r in records)
    assert results["timings"]["generated_tokens"] > 0


def test_an_eval_killed_before_its_results_finishes_on_the_same_command(
    tiny_dir, data, tmp_path, capsys, monkeypatch
):
    """Killed mid-run (after the run directory and its inputs were written, before any result):
    the same command finishes, with results equal to an uninterrupted run's."""
    from reasonlens.evaluate import task_eval

    files = [data / "L1_test.jsonl", data / "L2_test.jsonl"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run(["eval", "-m", tiny_dir, "--data", *files, "-o", whole], capsys)[0] == 0
    real = task_eval.write_eval

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(task_eval, "write_eval", die)
    code, _, err = run(["eval", "-m", tiny_dir, "--data", *files, "-o", killed], capsys)
    assert code == 130  # Ctrl-C: 128 + SIGINT
    assert (killed / "run.json").is_file() and not (killed / "results.json").exists()
    monkeypatch.setattr(task_eval, "write_eval", real)
    assert run(["eval", "-m", tiny_dir, "--data", *files, "-o", killed], capsys)[0] == 0

    def records(out):
        return [
            {k: v for k, v in json.loads(line).items() if k != "timings"}
            for line in (out / "examples.jsonl").read_text().splitlines()
        ]

    assert records(killed) == records(whole)
    totals = [json.loads((o / "results.json").read_text())["totals"] for o in (whole, killed)]
    assert totals[0] == totals[1]
