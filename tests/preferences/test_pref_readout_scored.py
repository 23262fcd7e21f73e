"""The scored self-report: each attribute's weight is the expected value of the grid under the
scores of its continuations, read in the scenario's attribute order."""

from __future__ import annotations

import math

import pytest

from reasonlens.studies.preferences import readout
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue


def test_scored_weights_are_the_expected_value_of_the_planted_scores(tiny_llama, monkeypatch):
    scenario = next(iter(load_catalogue().values()))
    grid = (-100, 0, 100)
    # planted: attribute k puts p(100) = k/4 and p(-100) = 1 - k/4 (nothing on 0)
    planted = [k / 4 for k in range(5)]

    def scores(model, prompt, cands, batch_size=64):
        assert cands[0].startswith('{"' + scenario.names[0] + '": ')
        out = []
        for k in range(5):
            hi = planted[k]
            out += [math.log(1 - hi + 1e-300), -1e9, math.log(hi + 1e-300)]
        return out

    monkeypatch.setattr("reasonlens.evaluate.continuations.continuation_logprobs", scores)
    trial = T.Trial(scenario.short_name, (1.0,) * 5, (2.0,) * 5, "A")
    (report,) = readout.score_reports(
        tiny_llama, {scenario.short_name: scenario}, [trial], "m", "v", grid
    )
    assert report.weights == pytest.approx([200 * h - 100 for h in planted], abs=1e-6)
    assert report.reply is None and (report.model, report.version) == ("m", "v")


def test_scored_reports_on_a_real_forward_pass_stay_in_the_grid(tiny_llama):
    scenario = next(iter(load_catalogue().values()))
    trial = T.Trial(scenario.short_name, (1.0,) * 5, (2.0,) * 5, "A")
    (report,) = readout.score_reports(
        tiny_llama, {scenario.short_name: scenario}, [trial], "m", "v"
    )
    assert len(report.weights) == 5
    assert all(-100 <= w <= 100 for w in report.weights)


def test_a_preset_without_the_scored_read_out_writes_and_reports_none(
    tiny_dir, preferences_tiny_preset, tmp_path, monkeypatch
):
    import dataclasses

    from reasonlens.studies import Settings, get_study, run_study
    from reasonlens.studies.preferences import presets

    preset = dataclasses.replace(preferences_tiny_preset, scored_reports=False)
    monkeypatch.setitem(presets.PRESETS, "tiny", preset)
    out = tmp_path / "run"
    results = run_study(get_study("preferences"), Settings("tiny", tiny_dir, progress=False), out)
    assert results["experiment2"]["scored"] is None
    assert results["experiment3"]["scored"] is None
    assert not list(out.glob("reports_*/*_scored.csv"))
    assert "constrained choice): r > 0" not in (out / "report.md").read_text()
