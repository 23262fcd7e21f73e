"""The strict reply parsers: anything but "A"/"B" is invalid (never "A"), and a report is a
JSON object with exactly the five attribute names and numeric values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonlens.tasks.preferences import parse_choice, parse_report

NAMES = ("size", "cost", "speed", "weight", "colour")


@pytest.mark.parametrize(
    ("reply", "choice"), [("A", "A"), ("B", "B"), (" B\n", "B"), ("\tA ", "A")]
)
def test_valid_choices(reply, choice):
    assert parse_choice(reply) == choice


@pytest.mark.parametrize("reply", ["maybe", "", "a", "b", "A.", "Option A", "AB", "A B", None])
def test_invalid_choices_are_none(reply):
    assert parse_choice(reply) is None


@given(st.text())
def test_parse_choice_is_a_or_b_only_for_those_letters(text):
    assert parse_choice(text) == (text.strip() if text.strip() in ("A", "B") else None)


GOOD = '{"size": 10, "cost": -100, "speed": 0.5, "weight": 30, "colour": 2388}'


@pytest.mark.parametrize(
    "reply",
    [GOOD, f"```json\n{GOOD}\n```", f"```\n{GOOD}\n```", f"  ```json {GOOD}```  ", f"\n{GOOD}\n"],
)
def test_good_reports(reply):
    assert parse_report(reply, NAMES) == (10.0, -100.0, 0.5, 30.0, 2388.0)  # not clipped


@pytest.mark.parametrize(
    "reply",
    [
        "not json",
        "[1, 2, 3, 4, 5]",
        '{"size": 10, "cost": -100, "speed": 0.5, "weight": 30}',
        GOOD[:-1] + ', "extra": 1}',
        GOOD.replace('"colour"', '"color"'),
        GOOD.replace("2388", '"high"'),
        GOOD.replace("2388", "true"),
        GOOD.replace("2388", "NaN"),
        GOOD.replace("2388", "1e999"),
        GOOD.replace("2388", "1" + "0" * 400),
        GOOD[:-1] + ', "size": 11}',  # a repeated key
        f"Here you go: {GOOD}",
        "",
        None,
    ],
)
def test_bad_reports_are_none(reply):
    assert parse_report(reply, NAMES) is None


@given(st.text())
def test_parse_report_never_raises(text):
    result = parse_report(text, NAMES)
    assert result is None or len(result) == 5
