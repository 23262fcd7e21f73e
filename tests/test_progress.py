"""Progress on every long stage: the stage runner says which stage runs and when it is done,
and bars opened inside one another share one display, each leaving a line when it closes."""

from __future__ import annotations

from reasonlens.progress import Progress, say
from reasonlens.runs import RunDir, Stage, StageRunner


def test_nested_bars_share_one_display_and_leave_a_line_each(capsys):
    with Progress(True, 2, "outer") as outer:
        with Progress(True, 3, "inner") as inner:  # a second live display would raise
            inner.advance(3)
        outer.label("now doing the second half")
        outer.advance(2)
    err = capsys.readouterr().err
    assert "inner: 3 of 3 in" in err
    assert "outer: 2 of 2 in" in err  # the line keeps the label the bar opened with


def test_a_disabled_or_transient_bar_prints_nothing(capsys):
    with Progress(False, 2, "hidden") as bar:
        bar.advance(2)
    with Progress(True, 1, "passing", transient=True) as bar:
        bar.advance()
    assert "hidden" not in capsys.readouterr().err
    say("a line")
    assert "a line" in capsys.readouterr().err


def test_the_stage_runner_announces_each_stage(tmp_path, capsys):
    def stage(name: str) -> Stage:
        return Stage(name, {}, lambda d, up: d.mkdir(), lambda d: name)

    run = RunDir.create(tmp_path / "run", "test", {})
    runner = StageRunner(run, [stage("first"), stage("second")], announce=True)
    runner.execute()
    err = capsys.readouterr().err
    for line in ("stage 1/2 first: running", "stage 1/2 first: done in", "stage 2/2 second:"):
        assert line in err
    StageRunner(run, [stage("first"), stage("second")], announce=True).execute()
    assert "stage 1/2 first: finished earlier, read back" in capsys.readouterr().err
    StageRunner(run, [stage("first"), stage("second")]).execute()  # quiet by default
    assert capsys.readouterr().err == ""
