"""Batched generation (greedy, or sampled with a seed) with correct left padding and the KV
cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from reasonlens.models import LoadedModel
from reasonlens.models.prompts import format_prompt, pad_batch, tokenize


@torch.inference_mode()
def generate(
    model: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    chat: bool = True,
) -> list[str]:
    """Greedy completions for many prompts, `batch_size` at a time, left-padded."""
    ids = generate_tokens(model, prompts, max_new_tokens, batch_size, chat)
    return model.tokenizer.batch_decode(ids, skip_special_tokens=True)


@torch.inference_mode()
def generate_tokens(
    model: LoadedModel,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    chat: bool = True,
    stop: Callable[[str], bool] | None = None,
    on_batch: Callable[[int], None] | None = None,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[list[int]]:
    """The new token ids of the completions, EOS and anything after it removed.

    ``temperature`` 0 decodes greedily; above 0 it samples from the full softmax at that
    temperature (no top-k or top-p), batch b seeded with ``seed + b`` on a private RNG state,
    so the same prompts, batch size and seed give the same text (on CPU, bit for bit).
    ``stop(text)`` is asked after every new token with the row's decoded continuation so far;
    once it says True the row is finished (generation ends when every row of the batch is) and
    its ids are cut at that token. ``on_batch(n)`` is called after each batch of ``n`` prompts.
    A prompt given as a list of token ids is used as is (no chat template, no tokenizer).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, not {temperature}")
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        if temperature > 0
        else {"do_sample": False}
    )
    tok = model.tokenizer
    eos = _eos_ids(model)
    outputs: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids = [
            tokenize(tok, format_prompt(tok, p, chat)) if isinstance(p, str) else list(p)
            for p in chunk
        ]
        batch = {k: v.to(model.device) for k, v in pad_batch(ids, tok.pad_token_id, "left").items()}
        width = batch["input_ids"].shape[1]
        watcher = _StopWhen(stop, tok, width, len(chunk)) if stop is not None else None
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + start // batch_size)
            out = model.hf.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
                stopping_criteria=StoppingCriteriaList([watcher]) if watcher else None,
                **sampling,
            )
        for row, new in enumerate(out[:, width:].tolist()):
            end = next((i for i, t in enumerate(new) if t in eos), len(new))
            if watcher is not None and watcher.done_at[row] is not None:
                end = min(end, watcher.done_at[row])
            outputs.append(new[:end])
        if on_batch is not None:
            on_batch(len(chunk))
    return outputs


def _eos_ids(model: LoadedModel) -> set[int]:
    ids = model.hf.generation_config.eos_token_id
    ids = set(ids) if isinstance(ids, list) else {ids} if ids is not None else set()
    if model.tokenizer.eos_token_id is not None:
        ids.add(model.tokenizer.eos_token_id)
    return ids


class _StopWhen(StoppingCriteria):
    """Finish each row as soon as ``stop`` says its decoded continuation is complete."""

    def __init__(self, stop: Callable[[str], bool], tokenizer, prompt_width: int, rows: int):
        self.stop = stop
        self.tokenizer = tokenizer
        self.width = prompt_width
        self.done_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.BoolTensor:
        new = input_ids[:, self.width :]
        for row, done in enumerate(self.done_at):
            if done is None:
                text = self.tokenizer.decode(new[row], skip_special_tokens=True)
                if self.stop(text):
                    self.done_at[row] = new.shape[1]
        flags = [d is not None for d in self.done_at]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)
