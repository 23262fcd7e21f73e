"""The stage runner: a study resumes after any interrupted stage, refuses to mix settings, and
keeps its timings and results (known-answer cases on stages that count their runs)."""

from __future__ import annotations

import json

import pytest

from reasonlens.errors import UserError
from reasonlens.runs import Stage, StageRunner, open_staged_run


class Boom(RuntimeError):
    pass


def make_stages(calls: list[str], settings: dict, fail: str | None = None) -> list[Stage]:
    """Three stages; each writes a file whose content depends on its inputs and upstream."""

    def runner(name: str):
        def run(directory, upstream):
            calls.append(name)
            if name == fail:
                directory.mkdir(parents=True, exist_ok=True)
                (directory / "partial").write_text("half")
                raise Boom(name)
            directory.mkdir(parents=True, exist_ok=True)
            value = {"inputs": settings[name], "upstream": sorted(upstream)}
            (directory / "out.json").write_text(json.dumps(value))

        return run

    def load(directory):
        return json.loads((directory / "out.json").read_text())

    return [Stage(name, {"value": settings[name]}, runner(name), load) for name in ("a", "b", "c")]


def config(settings: dict) -> dict:
    return {"settings": settings}


def run_all(path, settings, calls, fail=None, overwrite=False):
    stages = make_stages(calls, settings, fail)
    runner = open_staged_run(path, "job", config(settings), stages, overwrite=overwrite)
    return runner, runner.execute()


def test_stages_run_in_order_and_pass_upstream_results(tmp_path):
    calls: list[str] = []
    runner, results = run_all(tmp_path / "run", {"a": 1, "b": 2, "c": 3}, calls)
    assert calls == ["a", "b", "c"]
    assert results["c"] == {"inputs": 3, "upstream": ["a", "b"]}
    record = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert {k: v["state"] for k, v in record.items()} == dict.fromkeys("abc", "finished")
    assert set(runner.timings()) == {"a_s", "b_s", "c_s"}


def test_an_interrupted_stage_resumes_and_finished_ones_are_not_rerun(tmp_path):
    settings = {"a": 1, "b": 2, "c": 3}
    calls: list[str] = []
    with pytest.raises(Boom):
        run_all(tmp_path / "run", settings, calls, fail="b")
    assert calls == ["a", "b"]
    record = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert record["a"]["state"] == "finished" and record["b"]["state"] == "started"
    calls.clear()
    _, results = run_all(tmp_path / "run", settings, calls)
    assert calls == ["b", "c"], "the finished stage ran again, or the started one did not"
    assert results["a"]["inputs"] == 1 and results["c"]["upstream"] == ["a", "b"]
    calls.clear()
    run_all(tmp_path / "run", settings, calls)
    assert calls == []


def test_changing_a_setting_a_finished_stage_used_is_refused_naming_it(tmp_path):
    calls: list[str] = []
    run_all(tmp_path / "run", {"a": 1, "b": 2, "c": 3}, calls)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=r"stage 'b' was finished with other settings \(value: 2"):
        run_all(tmp_path / "run", {"a": 1, "b": 5, "c": 3}, calls)
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert before == after, "a refused run changed the files"


def test_a_setting_no_started_stage_used_may_change(tmp_path):
    calls: list[str] = []
    with pytest.raises(Boom):
        run_all(tmp_path / "run", {"a": 1, "b": 2, "c": 3}, calls, fail="b")
    calls.clear()
    # c has not started: its setting may change, and the new config is what the run records
    _, results = run_all(tmp_path / "run", {"a": 1, "b": 2, "c": 7}, calls)
    assert calls == ["b", "c"] and results["c"]["inputs"] == 7
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert recorded == {"settings": {"a": 1, "b": 2, "c": 7}}


def test_a_started_stage_with_other_settings_is_refused(tmp_path):
    calls: list[str] = []
    with pytest.raises(Boom):
        run_all(tmp_path / "run", {"a": 1, "b": 2, "c": 3}, calls, fail="b")
    with pytest.raises(UserError, match="stage 'b' was started with other settings"):
        run_all(tmp_path / "run", {"a": 1, "b": 9, "c": 3}, calls)


def test_load_finished_reads_results_without_running_and_refuses_unfinished(tmp_path):
    calls: list[str] = []
    settings = {"a": 1, "b": 2, "c": 3}
    runner, results = run_all(tmp_path / "run", settings, calls)
    calls.clear()
    fresh = StageRunner(runner.run, make_stages(calls, settings))
    assert fresh.load_finished() == results and calls == []
    with pytest.raises(Boom):
        run_all(tmp_path / "other", settings, calls, fail="c")
    unfinished = StageRunner(runner.run.open(tmp_path / "other"), make_stages(calls, settings))
    with pytest.raises(UserError, match="stage 'c' has not finished"):
        unfinished.load_finished()


def test_timings_add_up_over_sessions(tmp_path):
    calls: list[str] = []
    settings = {"a": 1, "b": 2, "c": 3}
    runner, _ = run_all(tmp_path / "run", settings, calls)
    first = runner.timings()
    runner, _ = run_all(tmp_path / "run", settings, calls)
    again = runner.timings()
    assert all(again[k] >= first[k] for k in first)


def test_a_stage_run_on_other_upstream_outputs_is_refused(tmp_path):
    """A stage that depends on what an earlier stage produced (retrained weights) refuses to
    resume once that output changed, naming it."""
    produced = {"weights": "w1"}

    def stages():
        return [
            Stage("make", {}, lambda d, up: d.mkdir(), lambda d: dict(produced)),
            Stage(
                "use",
                {},
                lambda d, up: d.mkdir(),
                lambda d: "used",
                depends=lambda up: {"weights": up["make"]["weights"]},
            ),
        ]

    runner = open_staged_run(tmp_path / "run", "job", {}, stages())
    runner.execute()
    record = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert record["use"]["depends"] == {"weights": "w1"}
    produced["weights"] = "w2"  # the first stage's output changed under the same settings
    with pytest.raises(UserError, match=r"stage 'use' was finished on other outputs.*weights"):
        open_staged_run(tmp_path / "run", "job", {}, stages()).execute()
