"""Every answer word is one token for every built-in model, so each blank has one answer token."""

from __future__ import annotations

import pytest

from reasonlens.models import BUILTIN_MODELS, load_tokenizer
from reasonlens.tasks.blocksworld import DEFAULT_COLORS, PAPER_COLORS, TABLE


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_colours_and_table_are_single_tokens_after_a_space(name):
    tok = load_tokenizer(name)
    words = sorted({*DEFAULT_COLORS, *PAPER_COLORS, TABLE})
    split = {w: tok.encode(" " + w, add_special_tokens=False) for w in words}
    assert {w: ids for w, ids in split.items() if len(ids) != 1} == {}
    assert len({ids[0] for ids in split.values()}) == len(words)
