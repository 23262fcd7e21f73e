"""Scoring candidate continuations of one prompt: log p(continuation | prompt) for each.

A constrained-choice read-out (which of these answers does the model find most likely?) needs
many candidates after the same prompt. The prompt goes through the model once; its KV cache is
copied for each batch of candidates, so a candidate costs only its own few tokens.

A candidate is tokenized together with the prompt (``prompt + candidate``), so that a merge at
the boundary is what the model would see; a candidate whose tokens would change the prompt's
own tokens is refused rather than scored on a different prompt.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from reasonlens.models import LoadedModel
from reasonlens.models.prompts import pad_batch, tokenize


def continuation_ids(tokenizer, prompt: str, candidates: Sequence[str]) -> list[list[int]]:
    """Each candidate's token ids after `prompt`, as ``prompt + candidate`` tokenizes."""
    base = tokenize(tokenizer, prompt)
    out = []
    for cand in candidates:
        full = tokenize(tokenizer, prompt + cand)
        if full[: len(base)] != base or len(full) == len(base):
            raise ValueError(
                f"the candidate {cand!r} changes the prompt's last tokens or adds none; "
                "end the shared prompt before the candidates' first character"
            )
        out.append(full[len(base) :])
    return out


@torch.inference_mode()
def continuation_logprobs(
    model: LoadedModel, prompt: str, candidates: Sequence[str], batch_size: int = 64
) -> list[float]:
    """log p(candidate | prompt), summed over the candidate's tokens, for each candidate."""
    if not candidates:
        return []
    tok = model.tokenizer
    prompt_ids = tokenize(tok, prompt)
    conts = continuation_ids(tok, prompt, candidates)
    out = model.hf(input_ids=torch.tensor([prompt_ids], device=model.device), use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
    cache = out.past_key_values
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    scores: list[float] = []
    for start in range(0, len(conts), batch_size):
        chunk = conts[start : start + batch_size]
        batch = pad_batch(chunk, pad_id, "right")
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(len(chunk))
        mask = torch.cat(
            [torch.ones(len(chunk), len(prompt_ids), dtype=torch.long), batch["attention_mask"]],
            dim=1,
        )
        logits = model.hf(
            input_ids=batch["input_ids"].to(model.device),
            attention_mask=mask.to(model.device),
            past_key_values=past,
            use_cache=True,
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, ids in enumerate(chunk):
            total = first[ids[0]].item()
            for k in range(1, len(ids)):
                total += logprobs[row, k - 1, ids[k]].item()
            scores.append(total)
    return scores
