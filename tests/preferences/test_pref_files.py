"""Readers of weights, decisions and reports: round trips and one-line errors naming the file,
the row (and scenario) and the column."""

from __future__ import annotations

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks.preferences import (
    Decision,
    Report,
    load_scenarios,
    read_decisions,
    read_regression_results,
    read_reports,
    read_weights,
    write_decisions,
    write_reports,
    write_weights,
)


@pytest.fixture
def scenarios(release):
    return load_scenarios(release["paths"]["scenarios"], units=release["paths"]["units"])


def test_weights_and_decisions_round_trip(release, scenarios, tmp_path):
    assert read_weights(release["paths"]["targets"], scenarios) == release["weights"]
    decisions = read_decisions(release["paths"]["decisions"], scenarios)
    assert decisions == release["decisions"]
    learned = {"thing_0": (1.5, -100.0, 0.25, 3.0, 4.0)}
    path = write_weights(tmp_path / "learned.csv", learned)
    assert path.read_text().splitlines()[0] == "scenario,b_attr1,b_attr2,b_attr3,b_attr4,b_attr5"
    assert read_regression_results(path, scenarios) == learned


def test_decisions_keep_raw_replies_and_logit_diff(scenarios, tmp_path):
    def values(name):  # each attribute's lowest value (values must lie in its range)
        return tuple(a.low for a in scenarios[name].attributes)

    decisions = [
        Decision("thing_0", " A\n", values("thing_0"), values("thing_0"), 2.5),
        Decision("thing_1", "maybe", values("thing_1"), values("thing_1"), None),
        Decision("thing_1", "", values("thing_1"), values("thing_1"), -1.0),
    ]
    path = write_decisions(tmp_path / "d.csv", decisions)
    back = read_decisions(path, scenarios)
    assert [d.reply for d in back] == [" A\n", "maybe", ""]
    assert [d.choice for d in back] == ["A", None, None]
    assert [d.logit_diff for d in back] == [2.5, None, -1.0]


def _rewrite(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


def test_weights_file_whose_scenarios_do_not_match(release, scenarios, tmp_path):
    path = release["paths"]["targets"]
    _rewrite(path, "thing_3,", "thing_33,")
    with pytest.raises(UserError) as err:
        read_weights(path, scenarios)
    message = str(err.value)
    assert "instilled_weights.csv row 4" in message and "'thing_33'" in message
    assert "column scenario" in message and "\n" not in message
    _rewrite(path, "thing_33,", "thing_2,")
    with pytest.raises(UserError, match="row 4: column scenario 'thing_2' occurs twice"):
        read_weights(path, scenarios)
    _rewrite(path, "thing_2,", "thing_3,")
    text = path.read_text().splitlines()
    text[2] = text[2].rsplit(",", 1)[0] + ",heavy"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(UserError, match=r"row 2 \(scenario 'thing_1'\): column attr5 is 'heavy'"):
        read_weights(path, scenarios)


def test_decisions_with_unknown_scenarios_or_missing_columns(release, scenarios):
    path = release["paths"]["decisions"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *lines[1:5], lines[5].replace("thing_0", "thing_99")]))
    with pytest.raises(UserError, match=r"sim_instilled_selections.csv row 5: column scenario "):
        read_decisions(path, scenarios)
    path.write_text("\n".join([lines[0].replace("B_attribute_4", "B_attr_4"), *lines[1:3]]))
    with pytest.raises(UserError, match="missing column B_attribute_4"):
        read_decisions(path, scenarios)
    path.write_text("\n".join([lines[0].replace("selection", "choice"), *lines[1:3]]))
    with pytest.raises(UserError, match="missing column selection"):
        read_decisions(path, scenarios)
    cells = lines[1].split(",")
    cells[4] = "n/a"
    path.write_text("\n".join([lines[0], ",".join(cells)]))
    with pytest.raises(UserError, match=r"row 1 \(scenario 'thing_0'\): column A_attribute_2"):
        read_decisions(path, scenarios)


def test_reports_parsed_and_raw(release, scenarios, tmp_path):
    parsed = read_reports(release["paths"]["reports"], scenarios)
    assert len(parsed) == 36 and all(r.weights is not None for r in parsed)
    names = scenarios["thing_0"].names
    good = "```json\n" + ", ".join(f'"{n}": {k}' for k, n in enumerate(names)).join("{}") + "\n```"
    raw = [
        Report("thing_0", None, good, "m", "v"),
        Report("thing_0", None, '{"only": 1}', "m", "v"),
        Report("thing_1", None, "I weighted them evenly", "m", "v"),
    ]
    back = read_reports(write_reports(tmp_path / "raw.csv", raw), scenarios)
    assert [r.weights for r in back] == [(0.0, 1.0, 2.0, 3.0, 4.0), None, None]
    assert back[0].reply == good


def test_reports_file_mixing_versions_is_refused(release, scenarios, synth, tmp_path):
    path = release["paths"]["reports"]
    _rewrite(path, "ft:sim,v,thing_4", "ft:sim,other,thing_4")
    with pytest.raises(UserError, match="2 different pairs"):
        read_reports(path, scenarios)


def test_reports_file_with_neither_layout(scenarios, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("scenario,weights\nthing_0,1\n")
    with pytest.raises(UserError, match="missing columns report_attr1"):
        read_reports(path, scenarios)
