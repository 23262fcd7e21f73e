"""Fuzzing the parsers of user input: any input gives a result or a UserError, never a crash.

Blocksworld text (`parse_text`, `parse_plan`) and records (`example_from_record`), site
addresses (`parse_sites`), and the JSONL readers (trace inputs, training data, Blocksworld
files). Inputs are random, and also near-misses: real texts and records with parts changed,
which reach deeper into each parser than noise does. Each test is bounded (200 examples) so
the file runs in seconds.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonlens.errors import UserError
from reasonlens.tasks.blocksworld import (
    example_from_record,
    make_example,
    make_problem,
    optimal_plan,
    parse_plan,
    parse_text,
)
from reasonlens.tasks.blocksworld.formats import FORMATS

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # write nothing into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

_PROBLEM = make_problem([["red", "blue"], ["green"]], [["blue", "red", "green"]], slots=3)
EXAMPLES = {fmt: make_example(_PROBLEM, optimal_plan(_PROBLEM), fmt) for fmt in FORMATS}
RECORDS = {fmt: ex.to_record() for fmt, ex in EXAMPLES.items()}
TEXT_LINES = sorted({line for ex in EXAMPLES.values() for line in ex.text.split("\n")})

# Characters that break naive parsers: line and paragraph separators, CR, NUL, brackets, digits
# of other scripts, a lone surrogate.
TRICKY = "\n\r\u2028\u2029\x85\x0b\x0c\x1c\x00<>:-.,;* \t٣\ud800"
text_chars = st.text(alphabet=st.characters(codec=None) | st.sampled_from(TRICKY), max_size=80)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters() | st.sampled_from(TRICKY), max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _lines_of(draw_lines: list[str]) -> str:
    return "\n".join(draw_lines)


# A text made of the real example lines, shuffled, dropped, repeated, or mixed with noise.
near_texts = st.lists(st.sampled_from(TEXT_LINES) | text_chars, max_size=25).map(_lines_of)


@st.composite
def edited_texts(draw) -> str:
    """A real example text with one edit: a character replaced, inserted or deleted."""
    text = EXAMPLES[draw(st.sampled_from(FORMATS))].text
    at = draw(st.integers(0, len(text)))
    kind = draw(st.sampled_from(["replace", "insert", "delete"]))
    piece = draw(st.text(alphabet=st.sampled_from(TRICKY + string.ascii_letters), max_size=3))
    if kind == "insert":
        return text[:at] + piece + text[at:]
    if kind == "delete":
        return text[:at] + text[at + len(piece) + 1 :]
    return text[:at] + piece + text[at + 1 :]


@st.composite
def edited_records(draw) -> dict:
    """A real record with fields removed, replaced by random JSON, or added."""
    record = dict(RECORDS[draw(st.sampled_from(FORMATS))])
    for key in draw(st.lists(st.sampled_from(sorted(record)), max_size=3)):
        if draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = draw(json_values)
    record.update(draw(st.dictionaries(st.sampled_from(["format", "slots", "x"]), json_values)))
    return record


# --- Blocksworld text ---------------------------------------------------------------------


@FUZZ
@given(text=near_texts | edited_texts() | text_chars, fmt=st.sampled_from(FORMATS))
def test_parse_text_gives_a_result_or_a_user_error(text, fmt):
    try:
        parsed = parse_text(text, fmt)
    except UserError as err:
        assert str(err)
        return
    assert parsed.init and parsed.goal


@FUZZ
@given(
    text=st.lists(
        st.sampled_from(["Plan:", "step 1: pick-up red", "step 2: stack red on-top-of table"])
        | st.from_regex(r"\s*step [0-9٣]{1,3}: (pick-up|stack) \S+( on-top-of \S+)?\s*")
        | text_chars,
        max_size=8,
    ).map(_lines_of)
)
def test_parse_plan_gives_a_result_or_a_user_error(text):
    try:
        plan = parse_plan(text)
    except UserError as err:
        assert str(err)
        return
    assert all(str(action) for action in plan)


# --- Blocksworld records ------------------------------------------------------------------


@FUZZ
@given(record=edited_records() | json_values | st.dictionaries(st.text(max_size=8), json_values))
def test_example_from_record_gives_an_example_or_a_user_error(record):
    try:
        example = example_from_record(record)
    except UserError as err:
        assert str(err)
        return
    # what is accepted reads back the same from its own record
    assert example_from_record(example.to_record()) == example


# --- site addresses -----------------------------------------------------------------------


site_words = st.sampled_from(["resid_pre", "resid_post", "attn_out", "mlp_out", "k", "q", "v"])


@st.composite
def site_specs(draw) -> tuple[object, int]:
    """(spec, n_layers): addresses whose layers are mostly near the model's layer count (so
    ranges come out reversed, out of range and in range), huge numbers, and noise."""
    n_layers = draw(st.integers(1, 40))
    number = st.integers(0, n_layers + 1).map(str) | st.from_regex(r"-?[0-9]{1,14}", fullmatch=True)
    part = number | st.builds("{}-{}".format, number, number)
    layers = (
        st.just("*")
        | st.lists(part, min_size=1, max_size=3).map(",".join)
        | st.from_regex(r"[0-9*,\-]{1,8}", fullmatch=True)
    )
    address = st.builds("layers.{}.{}".format, layers, site_words)
    spec = draw(
        st.lists(address, min_size=1, max_size=2).map(" ".join)
        | st.lists(address | text_chars, max_size=4).map(" ; ".join)
        | st.lists(address | text_chars, max_size=4)
        | text_chars
    )
    return spec, n_layers


@FUZZ
@given(case=site_specs())
def test_parse_sites_gives_sites_or_a_user_error(case):
    from reasonlens.trace import parse_sites

    spec, n_layers = case
    try:
        refs = parse_sites(spec, n_layers)
    except UserError as err:
        assert str(err)
        return
    assert refs and all(0 <= r.layer < n_layers for r in refs)
    assert refs == sorted(set(refs))


# --- JSONL readers ------------------------------------------------------------------------


def _line(value, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


json_lines = st.lists(
    st.builds(_line, json_values | edited_records(), st.booleans())
    | st.sampled_from(['{"text": "hi"}', '{"input_ids": [1, 2]}', '{"text": "a", "positions": []}'])
    | st.sampled_from(['{"prompt": "a", "completion": "b"}', "[" * 5000 + "]" * 5000])
    | text_chars,
    max_size=6,
).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))
jsonl_bytes = json_lines | st.binary(max_size=200)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "input.jsonl"


def _reads_or_refuses(read, path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        read(path)
    except UserError as err:
        assert str(err)


@FUZZ
@given(data=jsonl_bytes)
def test_trace_inputs_reader(scratch, data):
    from reasonlens.trace import JsonlInputs

    _reads_or_refuses(lambda p: list(JsonlInputs(p)), scratch, data)


@FUZZ
@given(data=jsonl_bytes)
def test_train_data_reader(scratch, data):
    from reasonlens.train.data import read_pairs

    _reads_or_refuses(lambda p: read_pairs([p]), scratch, data)


@FUZZ
@given(data=jsonl_bytes)
def test_blocksworld_file_readers(scratch, data):
    from reasonlens.tasks import get_task
    from reasonlens.tasks.blocksworld import read_examples, validate_file

    _reads_or_refuses(read_examples, scratch, data)
    _reads_or_refuses(get_task("blocksworld").read, scratch, data)
    _reads_or_refuses(validate_file, scratch, data)  # bad lines are findings, not errors
