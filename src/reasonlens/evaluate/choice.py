"""Choice read-out: a greedy reply and the logits of the choice tokens at the answer position,
from one batched forward pass over the prompts.

Each batch of prompts (left-padded, sorted by length so that little is padding) goes through
``generate`` with greedy decoding: its first step is one forward pass over the whole prompt,
whose logits at the last prompt position (the answer position) are returned for each choice
token (``output_logits``: the raw logits, before any processor); the few further steps only
finish the reply, one token per row each with the KV cache, and stop when every row has
ended. The reply is what the model wrote (special tokens dropped), for a strict parser to
judge: a reply that is not exactly one choice is invalid, never a default.

:func:`choice_tokens` refuses a tokenizer for which a choice is not exactly one token right
after the prompt (or two choices share one): the logit difference would then compare pieces
of words, not the decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from reasonlens.errors import UserError
from reasonlens.models import LoadedModel
from reasonlens.models.prompts import pad_batch, tokenize


@dataclass(frozen=True)
class Readout:
    """One prompt's greedy reply and the logit of each choice token at the answer position."""

    reply: str
    logits: tuple[float, ...]

    @property
    def logit_diff(self) -> float:
        """logit(first choice) - logit(second choice): logit(A) - logit(B)."""
        return self.logits[0] - self.logits[1]


def choice_tokens(
    tokenizer, prompts: Sequence[str], choices: Sequence[str] = ("A", "B")
) -> tuple[int, ...]:
    """The token id of each choice right after the prompts (the same for every prompt);
    a UserError when a choice is not a single token there, or two choices are the same token."""
    ids: list[int] | None = None
    for prompt in prompts:
        base = tokenize(tokenizer, prompt)
        found = []
        for choice in choices:
            full = tokenize(tokenizer, prompt + choice)
            if len(full) != len(base) + 1 or full[: len(base)] != base:
                pieces = [tokenizer.decode([t]) for t in full[len(base) - 1 :]]
                raise UserError(
                    f"the tokenizer does not give {choice!r} a single token at the answer "
                    f"position (the prompt's end and {choice!r} tokenise as {pieces}); the "
                    "decision's logit difference needs one token per choice"
                )
            found.append(full[-1])
        if len(set(found)) != len(found):
            raise UserError(f"the tokenizer gives the choices {list(choices)} the same token")
        if ids is None:
            ids = found
        elif found != ids:
            raise UserError(
                f"the choices {list(choices)} get different tokens after different prompts "
                f"({ids} and {found}); the read-out needs one token per choice"
            )
    if ids is None:
        raise UserError("no prompts to read choices from")
    return tuple(ids)


@torch.inference_mode()
def read_choices(
    model: LoadedModel,
    prompts: Sequence[str],
    choices: Sequence[str] = ("A", "B"),
    batch_size: int = 16,
    max_new_tokens: int = 4,
    on_batch: Callable[[int], None] | None = None,
) -> list[Readout]:
    """Greedy replies to already formatted `prompts` (chat template applied) and the logits of
    the `choices` tokens at the answer position, in input order."""
    tok = model.tokenizer
    token_ids = list(choice_tokens(tok, prompts, choices))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = [tokenize(tok, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    eos = _eos_ids(model)
    results: list[Readout | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = pad_batch([encoded[i] for i in rows], pad_id, "left")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        width = batch["input_ids"].shape[1]
        out = model.hf.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        first = out.logits[0][:, token_ids].float().cpu()
        for r, (index, new) in enumerate(zip(rows, out.sequences[:, width:].tolist(), strict=True)):
            end = next((k for k, t in enumerate(new) if t in eos), len(new))
            reply = tok.decode(new[:end], skip_special_tokens=True)
            results[index] = Readout(reply, tuple(float(v) for v in first[r]))
        if on_batch is not None:
            on_batch(len(rows))
    return [r for r in results if r is not None]


def _eos_ids(model: LoadedModel) -> set[int]:
    ids = model.hf.generation_config.eos_token_id
    ids = set(ids) if isinstance(ids, list) else {ids} if ids is not None else set()
    if model.tokenizer.eos_token_id is not None:
        ids.add(model.tokenizer.eos_token_id)
    return ids
