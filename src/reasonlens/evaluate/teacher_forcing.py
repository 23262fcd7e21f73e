"""Teacher-forced scoring of every blank: the paper's S_step and S_plan.

Each item's full text (prompt + gold completion) goes through the model once; a blank (an
answer span) is right when the argmax of the logits at the token just before it equals the
answer token, with the gold history in context. All blanks of an item come from that one
forward pass, and items go through in right-padded batches (right padding leaves every real
token's position unchanged).

Only the logits at the readout positions are computed (``logits_to_keep`` with per-row
positions), so a batch never materialises a ``[batch, length, vocab]`` tensor. An answer that
spans several tokens (a byte-level tokenizer, or a word the vocabulary splits) is right only
when every one of its tokens is predicted; ``n_tokens`` records how many there were.

An item needs only ``input_ids`` and ``answers`` (token ranges ``[first, last)``, in order):
:class:`~reasonlens.tasks.tokens.EncodedItem` has both, and so may a task's own encoding.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import torch

from reasonlens.models import LoadedModel
from reasonlens.models.prompts import pad_batch


class Scorable(Protocol):
    """What scoring reads of an encoded item: its token ids and its answers' token ranges."""

    @property
    def input_ids(self) -> Sequence[int]: ...

    @property
    def answers(self) -> Sequence[tuple[int, int]]: ...


@dataclass(frozen=True)
class BlankResult:
    """One blank, predicted with the gold history."""

    step: int  # 1-based index of the answer
    gold: str  # the answer token(s) as text, e.g. " red"
    predicted: str  # the argmax token(s) at the same positions
    correct: bool
    n_tokens: int  # answer tokens scored (1 for the paper's tokenizers)
    gold_logprob: float | None  # log p(gold answer tokens | gold history), summed; None: -inf

    def to_dict(self) -> dict:
        return asdict(self)


def _targets(example: Scorable) -> list[tuple[int, int]]:
    """(answer index, token position) for every token of every answer."""
    return [
        (k, pos) for k, (first, last) in enumerate(example.answers) for pos in range(first, last)
    ]


def _accepts_logits_to_keep(model: LoadedModel) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.hf.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.inference_mode()
def _readout_logits(
    model: LoadedModel, batch: dict[str, torch.Tensor], readouts: torch.Tensor
) -> torch.Tensor:
    """Logits ``[rows, k, vocab]`` at the positions ``readouts[rows, k]`` of each row."""
    if _accepts_logits_to_keep(model):
        logits = model.hf(**batch, logits_to_keep=readouts, use_cache=False).logits
        if logits.shape[:2] == readouts.shape:
            return logits
    # A model that ignores per-row positions: full logits, then gather.
    logits = model.hf(**batch, use_cache=False).logits
    return torch.take_along_dim(logits, readouts[..., None], dim=1)


def score_blanks(
    model: LoadedModel,
    examples: Sequence[Scorable],
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[BlankResult]]:
    """Teacher-forced verdict on every answer of every example, one forward pass per example.

    Examples are batched in order of length (less padding) and returned in input order.
    """
    tok = model.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    results: list[list[BlankResult] | None] = [None] * len(examples)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        chunk = [examples[i] for i in rows]
        targets = [_targets(ex) for ex in chunk]
        width = max(len(t) for t in targets)
        if width == 0:
            results_for = [[] for _ in chunk]
        else:
            # pad each row's target list by repeating its last target; the copies are ignored
            padded = [t + [t[-1]] * (width - len(t)) if t else [(0, 1)] * width for t in targets]
            answers = torch.tensor([[p for _, p in t] for t in padded], dtype=torch.long)
            batch = pad_batch([ex.input_ids for ex in chunk], pad_id, "right")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            logits = _readout_logits(model, batch, (answers - 1).to(model.device)).float()
            logprobs = torch.log_softmax(logits, dim=-1).cpu()
            predicted = logprobs.argmax(dim=-1)
            gold = torch.gather(batch["input_ids"].cpu(), 1, answers)
            gold_lp = torch.gather(logprobs, 2, gold[..., None])[..., 0]
            results_for = [
                _blank_results(tok, ex, targets[r], predicted[r], gold[r], gold_lp[r])
                for r, ex in enumerate(chunk)
            ]
        for i, res in zip(rows, results_for, strict=True):
            results[i] = res
        if on_batch is not None:
            on_batch(len(chunk))
    return [r if r is not None else [] for r in results]


def _blank_results(
    tok,
    example: Scorable,
    targets: list[tuple[int, int]],
    predicted: torch.Tensor,
    gold: torch.Tensor,
    gold_lp: torch.Tensor,
) -> list[BlankResult]:
    out = []
    for k in range(len(example.answers)):
        cols = [c for c, (step, _) in enumerate(targets) if step == k]
        pred_ids = predicted[cols].tolist()
        gold_ids = gold[cols].tolist()
        out.append(
            BlankResult(
                step=k + 1,
                gold=tok.decode(gold_ids),
                predicted=tok.decode(pred_ids),
                correct=pred_ids == gold_ids,
                n_tokens=len(cols),
                gold_logprob=_finite(float(gold_lp[cols].sum())),
            )
        )
    return out


def _finite(x: float) -> float | None:
    return round(x, 5) if math.isfinite(x) else None
