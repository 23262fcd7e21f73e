"""Candidate scoring with the prompt's cache reused equals scoring each full text alone."""

from __future__ import annotations

import pytest
import torch

from reasonlens.evaluate.continuations import continuation_ids, continuation_logprobs
from reasonlens.models.prompts import tokenize


def _full_text_logprob(model, prompt: str, cand: str) -> float:
    ids = tokenize(model.tokenizer, prompt + cand)
    n = len(tokenize(model.tokenizer, prompt))
    with torch.no_grad():
        logits = model.hf(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return sum(lp[k - 1, ids[k]].item() for k in range(n, len(ids)))


def test_cached_scores_equal_full_forward_passes(tiny_llama):
    prompt = "The weights are "
    cands = ["-40,", "0,", "100,", "-100}", "7"]
    got = continuation_logprobs(tiny_llama, prompt, cands, batch_size=2)  # several batches
    want = [_full_text_logprob(tiny_llama, prompt, c) for c in cands]
    assert got == pytest.approx(want, abs=1e-4)
    # candidates of different lengths: padding never leaks into a shorter one's score
    assert len({len(x) for x in continuation_ids(tiny_llama.tokenizer, prompt, cands)}) > 1


def test_a_candidate_that_adds_nothing_is_refused(tiny_llama):
    with pytest.raises(ValueError, match="adds none"):
        continuation_ids(tiny_llama.tokenizer, "abc", [""])
