"""Scenarios: validation, the JSON layout, the release's scenarios.csv and its join with
candidate_scenarios.json for units."""

from __future__ import annotations

import json

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks.preferences import Attribute, Scenario, load_scenarios, write_scenarios_json


def _attrs(n=5, **change):
    attrs = [Attribute(f"a{k}", 0.0, 10.0, "mm") for k in range(n)]
    for index, attr in change.items():
        attrs[int(index[1:])] = attr
    return tuple(attrs)


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        (_attrs(4), ["'tea'", "4 attributes", "exactly 5"]),
        (_attrs(6), ["'tea'", "6 attributes", "exactly 5"]),
        (_attrs(k2=Attribute("a2", 3.0, 3.0)), ["'tea'", "'a2'", "zero-width", "min < max"]),
        (_attrs(k1=Attribute("a1", 9.0, 2.0)), ["'tea'", "'a1'", "reversed", "min < max"]),
        (_attrs(k4=Attribute("a0", 0.0, 1.0)), ["'tea'", "'a0'", "twice", "distinct"]),
        (_attrs(k3=Attribute("a3", 0.0, float("inf"))), ["'tea'", "'a3'", "not finite"]),
    ],
)
def test_bad_scenarios_are_one_line_user_errors(attributes, words):
    with pytest.raises(UserError) as err:
        Scenario("tea", "Which tea?", attributes)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_json_layout_round_trips(tmp_path, synth):
    scenarios = synth.make_scenarios(3)
    path = write_scenarios_json(tmp_path / "s.json", scenarios)
    loaded = load_scenarios(path)
    assert list(loaded.values()) == scenarios
    assert all(s.has_units for s in loaded.values())
    assert list(loaded) == [s.short_name for s in scenarios]  # file order


def test_json_errors_name_file_and_scenario(tmp_path, synth):
    data = [s.to_dict() for s in synth.make_scenarios(2)]
    data[1]["attributes"][3]["range"] = [5, 5]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"s\.json: scenario 'thing_1', attribute 'dim_1_3'"):
        load_scenarios(path)
    data[1]["attributes"][3]["range"] = [5]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"thing_1.*range must be \[min, max\]"):
        load_scenarios(path)
    path.write_text(json.dumps(data[:1] * 2))
    with pytest.raises(UserError, match="'thing_0' occurs twice"):
        load_scenarios(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_scenarios(path)


def test_csv_has_no_units_until_joined(release):
    paths = release["paths"]
    plain = load_scenarios(paths["scenarios"])
    assert len(plain) == 12
    first = next(iter(plain.values()))
    assert not first.has_units  # never '' by default: the prompt would differ from training
    assert first.question.startswith("Imagine you are Role 0, of Ur. ")
    joined = load_scenarios(paths["scenarios"], units=paths["units"])
    for s, truth in zip(joined.values(), release["scenarios"], strict=True):
        assert s.has_units
        assert [a.units for a in s.attributes] == [a.units for a in truth.attributes]
        assert s.attributes == truth.attributes
        assert s.question.endswith(truth.question)


def test_units_join_refuses_a_mismatch(tmp_path, synth):
    scenarios = synth.make_scenarios(3)
    csv_path = synth.write_scenarios_csv(tmp_path / "scenarios.csv", scenarios)
    other = [s.to_dict() for s in scenarios]
    other[2]["attributes"][1]["range"][1] += 1
    units = tmp_path / "candidates.json"
    units.write_text(json.dumps(other))
    with pytest.raises(UserError, match=r"'thing_2', attribute 'dim_2_1': range .* but"):
        load_scenarios(csv_path, units=units)
    other = [s.to_dict() for s in scenarios]
    other[0]["attributes"][0]["name"] = "renamed"
    units.write_text(json.dumps(other))
    with pytest.raises(UserError, match="'thing_0' has attributes"):
        load_scenarios(csv_path, units=units)
    units.write_text(json.dumps([s.to_dict() for s in scenarios[:2]]))
    with pytest.raises(UserError, match="'thing_2' is not in"):
        load_scenarios(csv_path, units=units)
    other = [s.to_dict() for s in scenarios]
    other[1]["question"] = "Something else?"
    units.write_text(json.dumps(other))
    with pytest.raises(UserError, match="does not end with"):
        load_scenarios(csv_path, units=units)


def test_csv_errors(tmp_path, synth):
    path = synth.write_scenarios_csv(tmp_path / "scenarios.csv", synth.make_scenarios(2))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace(",attr3_max", ",attrX")] + lines[1:]))
    with pytest.raises(UserError, match="missing column attr3_max"):
        load_scenarios(path)
    path.write_text("\n".join([lines[0], lines[1].replace(",Which", ",Which"), lines[2] + ",x"]))
    with pytest.raises(UserError, match="row 2: more cells"):
        load_scenarios(path)
    cells = lines[2].split(",")
    cells[-1] = "lots"
    path.write_text("\n".join([lines[0], lines[1], ",".join(cells)]))
    with pytest.raises(UserError, match=r"row 2 \(scenario 'thing_1'\): column attr5_max"):
        load_scenarios(path)
    with pytest.raises(UserError, match="unknown scenarios file type"):
        load_scenarios(tmp_path / "s.txt")
    with pytest.raises(UserError, match="no such file"):
        load_scenarios(tmp_path / "absent.csv")
    with pytest.raises(UserError, match="--units applies to a scenarios.csv"):
        load_scenarios(tmp_path / "s.json", units=tmp_path / "u.json")
