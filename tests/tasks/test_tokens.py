"""Character spans map to the tokens that overlap them, for any task's items."""

from __future__ import annotations

import pytest

from reasonlens.models.tiny import tiny_tokenizer
from reasonlens.tasks import TaskItem
from reasonlens.tasks.tokens import TokenLocator, encode_item, encode_text, token_spans

# "<s>" (special, zero width), "Plan", ":\n", " red", " on", "\n"
OFFSETS = [(0, 0), (0, 4), (4, 6), (6, 10), (10, 13), (13, 14)]


@pytest.mark.parametrize(
    ("char_span", "tokens"),
    [
        ((7, 10), (3, 4)),  # "red" lies in " red": the token holding its first character
        ((6, 10), (3, 4)),  # " red" itself
        ((0, 4), (1, 2)),  # the special token at (0, 0) belongs to no span
        ((3, 8), (1, 4)),  # a span cutting through tokens takes every token it overlaps
        ((5, 6), (2, 3)),
        ((0, 14), (1, 6)),
    ],
)
def test_token_spans_on_a_hand_made_offset_mapping(char_span, tokens):
    assert token_spans(OFFSETS, char_span) == tokens


@pytest.mark.parametrize("bad", [(14, 15), (3, 3), (5, 2), (-1, 2)])
def test_a_span_no_token_covers_is_an_error(bad):
    with pytest.raises(ValueError):
        token_spans(OFFSETS, bad)


def test_offsets_out_of_order_are_refused():
    with pytest.raises(ValueError, match="not in text order"):
        TokenLocator([(0, 2), (5, 6), (2, 5)])


def test_encode_text_is_the_tokenizer_with_offsets():
    tok = tiny_tokenizer()
    ids, offsets = encode_text(tok, "Q: 2+3?\nA: 5")
    enc = tok("Q: 2+3?\nA: 5", return_offsets_mapping=True)
    assert ids == tuple(enc["input_ids"]) and offsets == tuple(enc["offset_mapping"])


def test_a_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        encode_text(Slow(), "x")


def test_encode_item_maps_the_completion_and_every_named_span():
    tok = tiny_tokenizer()  # byte-level: one token per character
    item = TaskItem(
        id="q",
        prompt="Q: 2+3? A:",
        completion=" 5, then 7",
        spans={"answers": ((11, 12), (19, 20)), "steps": ((10, 13),)},
    )
    enc = encode_item(tok, item)
    assert enc.input_ids == encode_text(tok, item.text)[0] and len(enc) == len(item.text)
    assert enc.answers == ((11, 12), (19, 20)) and enc.spans["steps"] == ((10, 13),)
    assert enc.completion == (10, 20)
    assert [tok.decode(enc.input_ids[a:b]) for a, b in enc.answers] == ["5", "7"]
    assert encode_item(tok, TaskItem("x", "a", "b")).answers == ()
