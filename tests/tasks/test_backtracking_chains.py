"""External chains: the source layout's inline markup, the plain span layout, token labels."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonlens.errors import UserError
from reasonlens.tasks.backtracking import (
    Chain,
    LabelledSpan,
    TraceConfig,
    generate_traces,
    label_chain,
    label_chains,
    parse_annotated,
    parse_markup,
    read_chains,
    read_labels,
    record_chain,
    span_records,
    to_record,
    write_labels,
)

CHAIN = (
    "<think>\nOkay, so I need to find x.  Let me try x = 2.\n\n"
    "That gives 5, not 4. Wait, maybe I should subtract first."
)
ANNOTATED = (
    '["initializing"]Okay, so I need to find x.["end-section"] '
    '["example-testing"]Let me try x = 2.\n["end-section"]'
    '["deduction"]That gives 5, not 4.["end-section"] '
    '["backtracking"]Wait, maybe I should\nsubtract first.["end-section"]'
)
SOURCE = [{"task_id": 7, "problem": "Solve x + 2 = 4.", "reasoning_chain": CHAIN,
           "annotated_chain": ANNOTATED}]  # fmt: skip


@pytest.fixture(scope="module")
def tok():
    from reasonlens.models import load_tokenizer

    return load_tokenizer("smollm2-135m")  # the default model's tokenizer, no weights


def test_markup_becomes_spans_of_the_reasoning_chain():
    (chain,) = parse_annotated(SOURCE, "all.json")
    assert chain.id == "7" and chain.problem == "Solve x + 2 = 4."
    got = [(s.label, CHAIN[s.start : s.end]) for s in chain.spans]
    assert got == [
        ("initializing", "Okay, so I need to find x."),
        ("example-testing", "Let me try x = 2."),
        ("deduction", "That gives 5, not 4."),
        ("backtracking", "Wait, maybe I should subtract first."),  # "\n" matched " "
    ]


def test_markup_pieces_keep_text_outside_sections():
    pieces = parse_markup('intro ["a"]one["end-section"] mid ["realization"]two["end-section"]')
    assert pieces == [(None, "intro "), ("a", "one"), (None, " mid "), ("realization", "two")]


@pytest.mark.parametrize(
    ("annotated", "message"),
    [
        ('["deduction"]Okay, so I need', "is never closed"),
        ('Okay["end-section"]', "closes no section"),
        ('["deduction"]Okay, ["backtracking"]so["end-section"]', "is not closed before"),
        ('[""]Okay["end-section"]', "empty label"),
        ('["deduction"]Okay, so I need to find y.["end-section"]', "differs from reasoning_chain"),
    ],
)
def test_bad_markup_is_one_line_naming_the_chain(annotated, message):
    bad = [{**SOURCE[0], "annotated_chain": annotated}]
    with pytest.raises(UserError, match=message) as err:
        parse_annotated(bad, "all.json")
    assert "chain 7" in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=50, deadline=None)
@given(
    sections=st.lists(
        st.tuples(
            st.sampled_from(["deduction", "backtracking", "uncertainty-estimation"]),
            st.text(st.sampled_from("ab .,?\n"), min_size=1, max_size=12).filter(str.strip),
        ),
        min_size=1,
        max_size=6,
    ),
    gaps=st.lists(st.sampled_from([" ", "\n\n", "  ", ""]), min_size=6, max_size=6),
)
def test_markup_round_trip(sections, gaps):
    """Sections written into a chain with any whitespace are found back exactly."""
    chain, annotated, want = "", "", []
    for (label, text), gap in zip(sections, gaps, strict=False):
        core = text.strip()
        chain += gap + " "
        want.append((label, len(chain), len(chain) + len(core)))
        chain += core
        annotated += f'["{label}"]{core}["end-section"]' + gap
    (got,) = parse_annotated([{"task_id": "c", "reasoning_chain": chain,
                               "annotated_chain": annotated}])  # fmt: skip
    assert [(s.label, s.start, s.end) for s in got.spans] == want


def test_plain_layout_and_both_file_layouts(tmp_path):
    (chain,) = parse_annotated(SOURCE)
    plain = tmp_path / "chains.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in span_records([chain])))
    assert read_chains(plain) == [chain]
    source = tmp_path / "all_annotated_chains.json"
    source.write_text(json.dumps(SOURCE))
    assert read_chains(source) == [chain]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(span_records([chain])))
    assert read_chains(listed) == [chain]


@pytest.mark.parametrize(
    ("span", "message"),
    [
        ({"start": 5, "end": 500, "label": "backtracking"}, "out of range"),
        ({"start": -1, "end": 3, "label": "backtracking"}, "out of range"),
        ({"start": 4, "end": 4, "label": "backtracking"}, "out of range"),
        ({"start": 1, "end": 3}, "label"),
        ({"start": "1", "end": 3, "label": "x"}, "integer"),
    ],
)
def test_spans_that_do_not_fit_the_text_name_the_chain(tmp_path, span, message):
    path = tmp_path / "c.jsonl"
    good = {"id": "a", "text": "Fine so far.", "spans": []}
    bad = {"id": "b2", "text": "Wait, no.", "spans": [span]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(UserError, match=message) as err:
        read_chains(path)
    assert "c.jsonl:2 (chain b2)" in str(err.value)


def test_duplicate_ids_and_bad_files(tmp_path):
    path = tmp_path / "c.jsonl"
    rec = json.dumps({"id": "a", "text": "x", "spans": []})
    path.write_text(rec + "\n" + rec + "\n")
    with pytest.raises(UserError, match="'a' occurs twice"):
        read_chains(path)
    with pytest.raises(UserError, match="not found"):
        read_chains(tmp_path / "missing.json")
    path.write_text("[1, 2")
    with pytest.raises(UserError, match="invalid JSON"):
        read_chains(path)


def test_tokens_overlapping_a_span_are_positive_even_across_a_merge(tok):
    # "hello" is one token: a span that starts inside it still labels it; " Wait" carries
    # the space before the span; "." before the span and " there" after it are outside
    text = "I said hello there. Wait, no"
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert "Ġhello" in pieces and "ĠWait" in pieces  # the merges this test relies on
    llo = text.index("hello") + 2
    chain = Chain("m", text, (LabelledSpan(llo, llo + 3, "x"), LabelledSpan(20, 24, "x")))
    row = label_chain(tok, chain, "x", template="none")
    pieces = tok.convert_ids_to_tokens(row.input_ids)
    positive = [p for p, y in zip(pieces, row.labels, strict=True) if y]
    assert positive == ["Ġhello", "ĠWait"]
    # a span ending inside a token ("Wai" of " Wait") takes the whole token too
    cut = Chain("m", text, (LabelledSpan(20, 23, "x"),))
    assert sum(label_chain(tok, cut, "x", template="none").labels) == 1


def test_chat_template_prompt_gets_no_labels_and_offsets_shift(tok):
    (chain,) = parse_annotated(SOURCE)
    plain = label_chain(tok, chain, template="none")
    chat = label_chain(tok, chain, template="chat")
    assert plain.start == 0 and chat.start > 20
    assert not any(chat.labels[: chat.start])
    assert chat.labels[chat.start :] == plain.labels  # the chain tokenises alike after the turn
    assert chat.input_ids[chat.start :] == plain.input_ids
    text = tok.decode([t for t, y in zip(chat.input_ids, chat.labels, strict=True) if y])
    assert text == " Wait, maybe I should subtract first."
    jinja = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A: "
    custom = label_chain(tok, chain, template=jinja)
    # " <" merges the prompt's last space with the chain's "<think>": a prompt token
    assert tok.decode(custom.input_ids[: custom.start]) == "Q: Solve x + 2 = 4.\nA: <"
    assert custom.labels[custom.start :] == plain.labels[1:]


def test_generated_traces_label_their_backtracks(tok):
    trace = generate_traces(1, seed=0, config=TraceConfig(min_backtracks=2))[0]
    chain, prompt = record_chain(to_record(trace, "t0"))
    row = label_chain(tok, chain, prompt=prompt)
    assert row.start > 0 and not any(row.labels[: row.start])
    words = tok.decode([t for t, y in zip(row.input_ids, row.labels, strict=True) if y])
    assert words.count("Back to") == len(trace.backtracks)


def test_bad_chains_for_labelling_name_the_chain(tok, tmp_path):
    (chain,) = parse_annotated(SOURCE)
    with pytest.raises(UserError, match=r"chain '7': \d+ tokens, fewer than the minimum 500"):
        label_chains(tok, [chain], min_tokens=500)
    with pytest.raises(UserError, match="'adding-knowledge' occurs in none of the 1 chains"):
        label_chains(tok, [chain], "adding-knowledge")
    no_problem = Chain("p", "Wait.", (LabelledSpan(0, 5, "backtracking"),))
    with pytest.raises(UserError, match="chain 'p': a chat template needs"):
        label_chain(tok, no_problem, template="chat")
    rows = label_chains(tok, [chain], "deduction")
    path = write_labels(tmp_path / "labels.jsonl", rows)
    assert read_labels(path) == rows
    path.write_text('{"id": "x", "input_ids": [1, 2], "labels": [0]}\n')
    with pytest.raises(UserError, match="labels.jsonl:1"):
        read_labels(path)
