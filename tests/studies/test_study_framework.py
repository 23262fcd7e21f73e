"""The study framework through the CLI: the registry's commands, re-rendering a report from a
finished run's files, and refusals that write nothing."""

from __future__ import annotations

import pytest

from reasonlens.errors import UserError
from reasonlens.studies import Settings, get_study, run_study
from reasonlens.studies.planning import presets
from reasonlens.testing import run_cli


def test_study_list_names_every_study_and_preset(capsys):
    code, out, _ = run_cli(["study", "list"], capsys)
    assert code == 0
    for name in ("planning", *presets.PRESETS):
        assert name in out


def test_report_rerenders_a_finished_run_from_its_files(
    tiny_study, capsys, monkeypatch, tiny_preset
):
    out, _ = tiny_study
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny_preset)
    before = {n: (out / n).read_text() for n in ("report.md", "summary.md", "results.json")}
    for name in ("report.md", "report.html", "summary.md"):
        (out / name).unlink()
    code, _, err = run_cli(["report", out], capsys)
    assert code == 0, err
    assert {n: (out / n).read_text() for n in before} == before
    assert (out / "report.html").is_file()


def test_report_refuses_what_is_not_a_finished_study(tmp_path, capsys):
    code, _, err = run_cli(["report", tmp_path], capsys)
    assert code == 2 and "not a reasonlens run directory" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope"], "unknown planning preset 'nope'"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_study_input_exits_2_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "study"
    code, _, err = run_cli(["study", "planning", "-o", out, "--quiet", *argv], capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_finished_stage_refuses_a_changed_setting_naming_it(
    tiny_study, tiny_dir, monkeypatch, tiny_preset
):
    out, _ = tiny_study
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny_preset)
    settings = Settings(preset="tiny", model=tiny_dir, seed=1, progress=False)
    said = r"was made with seed 0 \(you asked for seed 1\), which its finished stage 'data'"
    with pytest.raises(UserError, match=said):
        run_study(get_study("planning"), settings, out)


def test_a_study_interrupted_inside_a_stage_resumes_to_the_same_outputs(
    run_tiny_study, tiny_dir, tmp_path, monkeypatch
):
    """Killed during the analyses (extraction and flow written, masking not): the same command
    finishes the run, and every output equals the uninterrupted run's snapshot."""
    from test_planning_golden import GOLDEN, _dump, _golden_path, snapshot

    from reasonlens.studies.planning import analyses

    real = analyses.run_masking

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "study"
    monkeypatch.setattr(analyses, "run_masking", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_tiny_study(out)
    assert (out / "analyses" / "flow.json").is_file()
    assert not (out / "analyses" / "masking.json").exists()
    monkeypatch.setattr(analyses, "run_masking", real)
    run_tiny_study(out)
    snap = snapshot(out, [str(out), str(tiny_dir)])
    assert GOLDEN.is_dir()
    for name, content in snap.items():
        assert _dump(name, content) == _golden_path(name).read_text(), name


def test_a_study_refuses_to_resume_on_other_base_weights(
    tiny_study, tiny_dir, monkeypatch, tiny_preset
):
    """The model at the same path now has other weights (retrained in place): the finished
    stages that read it refuse, naming the weights."""
    from reasonlens.models import fingerprint
    from reasonlens.studies.base import open_study

    out, _ = tiny_study
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny_preset)
    monkeypatch.setattr(fingerprint, "weights_fingerprint", lambda source: "sha256:other")
    settings = Settings(preset="tiny", model=tiny_dir, progress=False)
    with pytest.raises(UserError, match=r"stage 'train' was finished with other settings.*weights"):
        open_study(get_study("planning"), settings, out)
