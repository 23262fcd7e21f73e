"""Self-report accuracy: mean reports per scenario x attribute against learned weights, bad
reports dropped and counted."""

from __future__ import annotations

import json

import pytest

from reasonlens.studies.preferences.weights import mean_reports, self_report
from reasonlens.tasks.preferences import Report, load_scenarios, read_reports, write_reports


def test_reports_equal_to_learned_weights_give_r_1_and_bad_ones_are_counted(release, tmp_path):
    scenarios = load_scenarios(release["paths"]["scenarios"], units=release["paths"]["units"])
    learned = dict(release["weights"])
    raw = []
    for name, w in learned.items():
        exact = dict(zip(scenarios[name].names, w, strict=True))
        raw.append(Report(name, None, "```json\n" + json.dumps(exact) + "\n```", "m", "v"))
        raw.append(Report(name, None, "A", "m", "v"))  # a decision, not a report
    path = write_reports(tmp_path / "raw.csv", raw)
    result = self_report(read_reports(path, scenarios), learned, release["weights"], n_boot=50)
    assert result.n_reports == 24 and result.n_bad == 12
    assert result.vs_learned.r == pytest.approx(1.0)
    assert result.vs_learned.n_scenarios == 12
    assert result.to_dict()["r_report_learned"] == pytest.approx(1.0)


def test_mean_reports_average_per_scenario_and_attribute():
    reports = [
        Report("s", (10.0, 0.0, 0.0, 0.0, -100.0)),
        Report("s", (20.0, 0.0, 0.0, 2.0, 100.0)),
        Report("s", None),
        Report("t", (1.0, 2.0, 3.0, 4.0, 5.0)),
    ]
    assert mean_reports(reports) == {
        "s": (15.0, 0.0, 0.0, 1.0, 0.0),
        "t": (1.0, 2.0, 3.0, 4.0, 5.0),
    }


def test_release_layout_reports_have_no_bad_count(release):
    scenarios = load_scenarios(release["paths"]["scenarios"])
    reports = read_reports(release["paths"]["reports"], scenarios)
    result = self_report(reports, release["weights"], n_boot=0)
    assert result.n_bad is None  # the release kept only the parseable reports
    assert result.vs_learned.r > 0.5 and result.vs_learned.ci_low is None
