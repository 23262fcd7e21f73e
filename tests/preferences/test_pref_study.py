"""`reasonlens study preferences` end to end on a tiny random model (a tiny preset patched in),
its files readable by `reasonlens preferences analyse`, and a finished run resumed from its
files without recomputing anything."""

from __future__ import annotations

import json

import pytest

from reasonlens.studies import Settings, get_study, render_report, run_study
from reasonlens.studies.preferences import presets
from reasonlens.studies.preferences.presets import PreferencesPreset
from reasonlens.testing import run_cli


def test_the_study_writes_results_report_and_every_stage(preferences_study):
    out, results = preferences_study
    for key in ("r_learned_target", "agreement", "share_a", "n_scenarios", "r_report_learned"):
        assert key in results
    assert results == json.loads((out / "results.json").read_text())
    for name in ("report.md", "report.html", "summary.md", "config.yaml", "stages.json"):
        assert (out / name).is_file(), name
    stages = json.loads((out / "stages.json").read_text())
    assert all(s["state"] == "finished" for s in stages.values()) and len(stages) == 9
    e1 = results["experiment1"]
    # the random model's replies are not letters: counted invalid, never read as "A"
    assert e1["base"]["n_invalid"] == e1["base"]["n_trials"] == 4 * 8
    assert e1["instilled"]["n_trials"] == 32
    assert e1["instilled"]["logit_linear"]["n_scenarios"] == 4  # every trial has a logit
    assert results["data"]["counts"] == {
        "train": 24,
        "val": 8,
        "test": 32,
        "native": 16,
        "report": 12,
        "introspect": 4,
    }
    assert set(results["experiment3"]) >= {"held_out_before", "held_out_after", "native_after"}
    report = (out / "report.md").read_text()
    assert "0.843" in report and "0.10, 0.07, -0.00, 0.05" in report
    assert "untrained model (control)" in report
    # the held-out curve: the untrained model at step 0, then the last step (6 of 6)
    curve = [json.loads(x) for x in (out / "instil" / "validation_curve.jsonl").open()]
    assert [p["step"] for p in curve] == [0, 6] and curve[0]["train_loss"] is None
    assert all(p["n_trials"] == 8 for p in curve) and curve[-1]["examples"] == 24
    assert results["experiment1"]["validation_curve"] == curve
    for png in ("learning_curves.png", "decision_curves.png", "instilled/learned_vs_target.png"):
        assert (out / "analysis" / png).is_file(), png


def test_the_decisions_are_in_the_release_layout_that_preferences_analyse_reads(
    preferences_study, tmp_path, capsys
):
    out, results = preferences_study
    code, stdout, stderr = run_cli(
        [
            "preferences",
            "analyse",
            "--scenarios",
            out / "data" / "scenarios.json",
            "--targets",
            out / "data" / "targets.csv",
            "--decisions",
            out / "decide_instilled" / "test.csv",
            "--reports",
            out / "reports_instilled" / "instilled.csv",
            "--n-boot",
            "50",
            "--out",
            tmp_path / "analyse",
        ],
        capsys,
    )
    assert code == 0, stderr
    again = json.loads((tmp_path / "analyse" / "results.json").read_text())
    inst = results["experiment1"]["instilled"]
    assert again["agreement"] == inst["agreement"] and again["n_scenarios"] == inst["n_scenarios"]
    assert again["logit_diff"] == inst["logit_diff"]
    header = (out / "decide_instilled" / "test.csv").read_text().split("\n")[0]
    assert header.endswith(",logit_diff") and "A_attribute_1" in header


def test_a_finished_run_is_read_back_not_recomputed(
    preferences_study, run_preferences_study, preferences_tiny_preset, monkeypatch
):
    out, results = preferences_study
    import reasonlens.studies.preferences.readout as readout
    import reasonlens.train

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(reasonlens.train, "train", refuse)
    monkeypatch.setattr(readout, "decide", refuse)
    monkeypatch.setattr(readout, "ask_reports", refuse)
    again = run_preferences_study(out)
    assert {k: v for k, v in again.items() if k != "timings_s"} == {
        k: v for k, v in results.items() if k != "timings_s"
    }
    with monkeypatch.context() as mp:
        mp.setitem(presets.PRESETS, "tiny", preferences_tiny_preset)
        render_report(out)
    assert (out / "report.md").is_file()


def test_other_settings_in_the_same_run_are_refused(
    preferences_study, preferences_tiny_preset, tiny_dir
):
    from reasonlens.errors import UserError

    out, _ = preferences_study
    changed = PreferencesPreset(**{**preferences_tiny_preset.__dict__, "train_trials": 7})
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(presets.PRESETS, "tiny", changed)
        with pytest.raises(UserError, match="stage 'data' was finished with other settings"):
            run_study(get_study("preferences"), Settings("tiny", tiny_dir, progress=False), out)
