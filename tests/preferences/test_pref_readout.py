"""The decision read-out: one batched forward pass gives the greedy reply and logit(A) -
logit(B) at the answer position; anything but exactly "A" or "B" is invalid; a tokenizer that
does not give "A" and "B" single tokens there is refused."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from reasonlens.errors import UserError
from reasonlens.evaluate.choice import choice_tokens, read_choices
from reasonlens.evaluate.generation import generate
from reasonlens.models.prompts import tokenize
from reasonlens.models.tiny import SPECIALS, tiny_model
from reasonlens.studies.preferences.readout import decide, decision_prompts
from reasonlens.studies.preferences.weights import choice_agreement
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=1)


@pytest.fixture(scope="module")
def trials():
    catalogue = load_catalogue()
    names = list(catalogue)[:3]
    out = []
    for name in names:
        s = catalogue[name]
        out += T.draw_trials(s, T.draw_targets(s, 0), 4, 0, "test")
    return {n: catalogue[n] for n in names}, out


def test_the_logit_difference_is_hfs_at_the_answer_position(model, trials):
    scenarios, ts = trials
    prompts = decision_prompts(model.tokenizer, scenarios, ts)
    a, b = choice_tokens(model.tokenizer, prompts)
    assert (model.tokenizer.decode([a]), model.tokenizer.decode([b])) == ("A", "B")
    outs = read_choices(model, prompts, batch_size=5)  # padded, sorted by length, restored
    for prompt, out in zip(prompts, outs, strict=True):
        ids = torch.tensor([tokenize(model.tokenizer, prompt)])
        with torch.no_grad():
            logits = model.hf(input_ids=ids).logits[0, -1]
        assert out.logit_diff == pytest.approx(float(logits[a] - logits[b]), abs=1e-4)
        assert out.logits == pytest.approx((float(logits[a]), float(logits[b])), abs=1e-4)
    one = read_choices(model, prompts, batch_size=1)
    assert [o.reply for o in one] == [o.reply for o in outs]
    assert [o.logit_diff for o in one] == pytest.approx([o.logit_diff for o in outs], abs=1e-4)


def test_the_reply_is_the_greedy_continuation(model, trials):
    scenarios, ts = trials
    prompts = decision_prompts(model.tokenizer, scenarios, ts)
    outs = read_choices(model, prompts, batch_size=4, max_new_tokens=4)
    assert [o.reply for o in outs] == generate(model, prompts, 4, batch_size=4, chat=False)


def _always(model, token: int):
    """A copy of the model whose every next token is `token` (the LM head is a bias)."""
    import copy

    forced = copy.deepcopy(model)
    head = forced.hf.lm_head
    bias = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        bias.weight.zero_()
        bias.bias.fill_(-10.0)
        bias.bias[token] = 10.0
    forced.hf.lm_head = bias
    return forced


def test_replies_that_are_not_exactly_a_letter_are_counted_invalid(model, trials):
    scenarios, ts = trials
    targets = {n: T.draw_targets(s, 0) for n, s in scenarios.items()}
    random_replies = decide(model, scenarios, ts, "tiny")
    a = model.tokenizer.convert_tokens_to_ids("A")
    eos = model.tokenizer.eos_token_id
    repeats = decide(_always(model, a), scenarios, ts, "AAAA")  # "AAAA": starts with A, not A
    empty = decide(_always(model, eos), scenarios, ts, "silent")  # ends at once: ""
    assert {d.reply for d in repeats} == {"AAAA"} and {d.reply for d in empty} == {""}
    for decisions in (random_replies, repeats, empty):
        agreement = choice_agreement(scenarios, targets, decisions)
        invalid = sum(d.choice is None for d in decisions)
        assert agreement.n_invalid == invalid and agreement.n_trials == len(ts)
    assert choice_agreement(scenarios, targets, repeats).n_invalid == len(ts)
    assert choice_agreement(scenarios, targets, repeats).share_a is None  # never read as "A"
    # the logit difference is read whatever the reply: here A is forced, 20 logits above B
    assert all(d.logit_diff == pytest.approx(20.0) for d in repeats)


def merging_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer that merges a newline with the letter after it ("\\nA")."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for char in sorted(alphabet):
        vocab[char] = len(vocab)
    vocab["ĊA"], vocab["ĊB"] = len(vocab), len(vocab) + 1
    core = Tokenizer(models.BPE(vocab=vocab, merges=[("Ċ", "A"), ("Ċ", "B")]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def test_a_tokenizer_without_single_letter_tokens_at_the_answer_is_refused(trials):
    scenarios, ts = trials
    tok = merging_tokenizer()
    prompts = decision_prompts(tok, scenarios, ts[:2])
    with pytest.raises(UserError, match="does not give 'A' a single token at the answer"):
        choice_tokens(tok, prompts)
    with pytest.raises(UserError, match="no prompts"):
        choice_tokens(tok, [])
