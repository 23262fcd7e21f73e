"""The scenario catalogue shipped as package data: enough scenarios, all valid, varied ranges."""

from __future__ import annotations

import json
import math
import re

from reasonlens.tasks.preferences import load_scenarios
from reasonlens.tasks.preferences.catalogue import CATALOGUE, load_catalogue
from reasonlens.tasks.preferences.trials import decimals

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def test_the_catalogue_has_at_least_200_valid_scenarios_with_distinct_names():
    scenarios = load_scenarios(CATALOGUE)  # validates each: 5 attributes, distinct, min < max
    assert len(scenarios) >= 200
    raw = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    assert len({s["short_name"] for s in raw}) == len(raw) == len(scenarios)
    assert len({s["question"] for s in raw}) == len(raw)
    assert load_catalogue() == scenarios


def test_every_attribute_has_a_snake_case_name_units_and_a_finite_range():
    for s in load_catalogue().values():
        assert SNAKE.match(s.short_name), s.short_name
        assert s.question.endswith("?")
        assert len(s.attributes) == 5
        for a in s.attributes:
            assert SNAKE.match(a.name), (s.short_name, a.name)
            assert a.units and a.units.strip() == a.units, (s.short_name, a.name)
            assert math.isfinite(a.low) and math.isfinite(a.high) and a.low < a.high


def test_ranges_exercise_every_rounding_rule():
    spans = [a.span for s in load_catalogue().values() for a in s.attributes]
    rules = [decimals(span) for span in spans]
    assert sum(span < 1 for span in spans) >= 50  # several decimals (0.1 .. 0.0001)
    assert sum(1 <= span < 5 for span in spans) >= 50  # one decimal
    assert sum(span >= 5 for span in spans) >= 500  # whole numbers
    assert {2, 3}.issubset(set(rules)) and max(rules) >= 4


def test_the_catalogue_is_package_data():
    from importlib.resources import files

    shipped = files("reasonlens.tasks.preferences").joinpath("catalogue.json")
    assert shipped.is_file() and json.loads(shipped.read_text(encoding="utf-8"))
