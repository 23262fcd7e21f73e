"""Training data: completion-only labels, the two file kinds, and clear errors on bad files."""

from __future__ import annotations

import json

import pytest
from tokenizers import processors

from reasonlens.errors import UserError
from reasonlens.models.tiny import tiny_tokenizer
from reasonlens.train.data import IGNORE, Pair, read_pairs, tokenize_pair, tokenize_pairs


def _check_completion_only(tok, pair: Pair) -> None:
    t = tokenize_pair(tok, pair)
    enc = tok(pair.prompt + pair.completion, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    n_text = len(offsets)
    labelled = [i for i, lab in enumerate(t.labels) if lab != IGNORE]
    # every prompt token carries -100; every completion token is labelled with itself
    for i, (start, _) in enumerate(offsets):
        if start < len(pair.prompt):
            assert t.labels[i] == IGNORE, (i, offsets[i])
        else:
            assert t.labels[i] == t.input_ids[i]
    # and the last token is EOS, labelled: the model learns to stop after the plan
    assert t.input_ids[-1] == t.labels[-1] == tok.eos_token_id
    assert len(t.input_ids) == n_text + 1
    assert tok.decode([t.input_ids[i] for i in labelled[:-1]]) == pair.completion


def test_only_completion_tokens_and_eos_carry_labels(bw_examples):
    tok = tiny_tokenizer()
    for ex in bw_examples[:4]:
        assert ex.prompt.endswith("Plan:\n")
        _check_completion_only(tok, Pair(ex.prompt, ex.completion))
    t = tokenize_pair(tok, Pair(bw_examples[0].prompt, bw_examples[0].completion))
    n_prompt = len(bw_examples[0].prompt)  # byte-level: one token per character here
    assert t.labels[:n_prompt] == [IGNORE] * n_prompt
    assert all(x != IGNORE for x in t.labels[n_prompt:])


def test_a_bos_the_tokenizer_adds_is_never_a_label():
    tok = tiny_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    t = tokenize_pair(tok, Pair("", "abc"))  # empty prompt: only the BOS precedes the answer
    assert t.input_ids[0] == tok.bos_token_id and t.labels[0] == IGNORE
    assert t.labels[1:] == t.input_ids[1:]


@pytest.mark.slow
def test_completion_boundary_with_the_default_tokenizer(bw_examples):
    from reasonlens.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    for ex in bw_examples[:3]:
        _check_completion_only(tok, Pair(ex.prompt, ex.completion))


def test_blocksworld_and_generic_files(bw_file, generic_file):
    pairs, files = read_pairs([bw_file, generic_file])
    assert [f.kind for f in files] == ["blocksworld", "prompt-completion"]
    assert [f.examples for f in files] == [16, 12]
    assert pairs[0].prompt.endswith("Plan:\n") and pairs[0].completion.startswith("step 1:")
    assert pairs[16] == Pair("Q: 0 plus one?\nA:", " 1")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "completion": "b"}', "{not json"], ":2: invalid JSON"),
        (['{"prompt": "a", "completion": "b"}', '{"prompt": "a"}'], ":2: expected a JSON object"),
        (['{"prompt": "a", "completion": 3}'], "'completion' is int"),
        (['["a", "b"]'], ":1: expected a JSON object with string fields 'prompt'"),
        (['{"prompt": "a", "completion": ""}'], ":1: 'completion' is empty"),
        ([""], "no examples"),
        # a Blocksworld record is checked as one: its text must parse
        (['{"format": "paper", "prompt": "x", "completion": "y"}'], ":1: field 'prompt' must end"),
    ],
)
def test_bad_files_name_file_line_and_what_was_expected(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="bad.jsonl") as err:
        read_pairs([path])
    assert message in str(err.value)


def test_too_long_examples_are_refused_not_truncated():
    tok = tiny_tokenizer()
    pairs = [Pair("p" * 10, "c" * 10), Pair("p", "c")]
    assert len(tokenize_pairs(tok, pairs, max_length=21)) == 2
    with pytest.raises(UserError, match="1 of 2 examples are longer than max_length=20"):
        tokenize_pairs(tok, pairs, max_length=20)


def test_generic_records_keep_their_text_exactly(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "  lead\n", "completion": "tail  \n", "id": 7}) + "\n")
    assert read_pairs([path])[0] == [Pair("  lead\n", "tail  \n")]
