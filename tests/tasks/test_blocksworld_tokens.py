"""Every chunk of an example maps to its tokens; every answer word is one token for every
built-in model, so each blank has one answer token."""

from __future__ import annotations

import pytest

from reasonlens.models import BUILTIN_MODELS, load_tokenizer
from reasonlens.models.tiny import tiny_tokenizer
from reasonlens.tasks import TASKS
from reasonlens.tasks.blocksworld import DEFAULT_COLORS, PAPER_COLORS, TABLE, generate_problems
from reasonlens.tasks.blocksworld.tokens import encode_example, example_token_spans
from reasonlens.tasks.tokens import encode_item


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_colours_and_table_are_single_tokens_after_a_space(name):
    tok = load_tokenizer(name)
    words = sorted({*DEFAULT_COLORS, *PAPER_COLORS, TABLE})
    split = {w: tok.encode(" " + w, add_special_tokens=False) for w in words}
    assert {w: ids for w, ids in split.items() if len(ids) != 1} == {}
    assert len({ids[0] for ids in split.values()}) == len(words)


def _examples(fmt: str):
    return [
        ex
        for blocks, level in ((4, 1), (5, 2), (6, 3))
        for ex in generate_problems(blocks, level, 3, fmt=fmt, seed=3)
    ]


def _check_chunks(tok, example, enc):
    """Each chunk's tokens decode to its text (BPE may add the leading space, nothing else)."""
    ids, toks, sp = enc.input_ids, enc.tokens, example.spans

    def text(span):
        return tok.decode(ids[span[0] : span[1]])

    def covers(span, char_span):
        return text(span).strip() == example.text[char_span[0] : char_span[1]].strip()

    assert covers(toks.rule, sp.rule) and covers(toks.plan_header, sp.plan_header)
    assert covers(toks.init_state, sp.init_state) and covers(toks.goal_state, sp.goal_state)
    assert all(covers(t, c) for t, c in zip(toks.init_slots, sp.init_slots, strict=True))
    assert all(covers(t, c) for t, c in zip(toks.goal_slots, sp.goal_slots, strict=True))
    assert tok.decode(ids[toks.prompt[0] : toks.prompt[1]], skip_special_tokens=True) == (
        example.prompt
    )
    assert text(toks.completion) == example.completion
    for step, chars in zip(toks.steps, sp.steps, strict=True):
        assert covers(step.step, chars.step) and covers(step.action_prompt, chars.action_prompt)
        assert step.step[0] <= step.action_prompt[0] < step.answer[1] <= step.step[1]
        assert step.readout == step.answer[0] - 1


@pytest.mark.parametrize("fmt", ["paper", "seed"])
def test_every_answer_maps_to_exactly_its_bytes_with_a_byte_level_tokenizer(fmt):
    tok = tiny_tokenizer()
    for ex in _examples(fmt):
        enc = encode_example(tok, ex)
        assert len(enc.tokens.steps) == len(ex.plan)
        for step, action in zip(enc.tokens.steps, ex.plan, strict=True):
            first, last = step.answer
            # one token per byte: the answer word and nothing else, the space excluded
            assert tok.decode(enc.input_ids[first:last]) == action.answer
            assert last - first == len(action.answer.encode())
        _check_chunks(tok, ex, enc)


def test_the_mapping_is_the_one_the_offsets_give():
    tok = tiny_tokenizer()
    ex = _examples("paper")[0]
    enc = tok(ex.text, return_offsets_mapping=True)
    assert example_token_spans(ex, enc["offset_mapping"]) == encode_example(tok, ex).tokens


@pytest.mark.parametrize("fmt", ["paper", "seed"])
def test_the_task_item_encodes_to_the_same_answers_and_steps(fmt):
    """Teacher forcing reads the generic encoding of the item: the same tokens as the example's."""
    tok, task = tiny_tokenizer(), TASKS["blocksworld"]
    for ex in _examples(fmt):
        enc, item = encode_example(tok, ex), encode_item(tok, task.item(ex))
        assert item.input_ids == enc.input_ids and item.answers == enc.answers
        assert enc.answers == tuple(s.answer for s in enc.tokens.steps)
        assert item.spans["steps"] == tuple(s.step for s in enc.tokens.steps)
        assert item.completion == enc.tokens.completion


@pytest.mark.slow
def test_every_answer_is_one_token_with_the_default_model_tokenizer():
    tok = load_tokenizer("smollm2-135m")
    for ex in _examples("paper"):
        enc = encode_example(tok, ex)
        # the prompt ends on a token boundary: generation sees the same prompt tokens
        assert enc.tokens.prompt[1] == enc.tokens.completion[0]
        assert list(enc.input_ids[: enc.tokens.prompt[1]]) == tok(ex.prompt)["input_ids"]
        for step, action in zip(enc.tokens.steps, ex.plan, strict=True):
            first, last = step.answer
            assert last - first == 1
            assert tok.decode(enc.input_ids[first:last]) == " " + action.answer
            assert tok.decode(enc.input_ids[step.readout]) in ("up", "of")
        _check_chunks(tok, ex, enc)
