"""The held-out curve's reader during training (see .curve): a TrainerCallback, and the
letters' logits in float32 from one forward pass a batch. Apart from .curve so that reading a
finished curve (the analysis, the report) needs no torch.

The whole forward runs in float32 (:data:`READ_PRECISION`, recorded in every point), whatever
the model's training precision: under bf16 autocast (the Trainer's mixed precision wraps the
model's forward) the hidden state is bf16, which moves the untrained model's logit difference by
up to 0.07, as much as its whole spread across trials. Autocast is switched off and the
mixed-precision wrapper bypassed for the read; weights held in bf16 (a LoRA base) are widened to
float32 for it and narrowed back, which is exact (every bf16 number is a float32 number).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from reasonlens.models.prompts import pad_batch, tokenize
from reasonlens.runs.files import atomic_write
from reasonlens.studies.preferences.curve import curve_point, read_curve
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.scenarios import Scenario

#: The precision of the curve's whole forward pass.
READ_PRECISION = "float32"


@contextlib.contextmanager
def float32_forward(hf):
    """`hf`'s forward in float32 throughout, inside: autocast off, the mixed-precision wrapper
    (accelerate's, which re-enters autocast) bypassed, and floating weights and buffers that are
    not float32 widened to float32, then restored to their own dtype (the same tensors, so an
    optimizer's references hold). Yields the forward to call. Enter it outside inference mode
    (the restored weights must be ordinary tensors that training can use again)."""
    narrow = [t for t in (*hf.parameters(), *hf.buffers()) if t.is_floating_point()]
    narrow = [(t, t.dtype) for t in narrow if t.dtype != torch.float32]
    for t, _ in narrow:
        t.data = t.data.float()
    forward = hf.__dict__.get("_original_forward", hf.forward)
    device = next(hf.parameters()).device.type
    try:
        with torch.autocast(device_type=device, enabled=False):
            yield forward
    finally:
        for t, dtype in narrow:
            t.data = t.data.to(dtype)


def letter_logits(
    hf, tokenizer, prompts: Sequence[str], token_ids: Sequence[int], batch_size: int = 16
) -> np.ndarray:
    """(prompts x choices) logits of `token_ids` at each prompt's answer position, from one
    float32 forward pass per batch (left-padded, no generation; see :func:`float32_forward`)."""
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    encoded = [tokenize(tokenizer, p) for p in prompts]
    head = hf.get_output_embeddings()
    cap = getattr(getattr(hf, "config", None), "final_logit_softcapping", None)
    device = head.weight.device
    out = []
    # widen outside inference mode: the weights go back to training afterwards
    with float32_forward(hf) as forward, torch.inference_mode():
        rows = head.weight[list(token_ids)]
        bias = head.bias[list(token_ids)] if getattr(head, "bias", None) is not None else 0
        for start in range(0, len(encoded), batch_size):
            batch = pad_batch(encoded[start : start + batch_size], pad_id, "left")
            hidden = forward(
                **{k: v.to(device) for k, v in batch.items()}, output_hidden_states=True
            ).hidden_states[-1][:, -1]
            logits = hidden @ rows.T + bias
            if cap:
                logits = torch.tanh(logits / cap) * cap
            out.append(logits.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(token_ids)), dtype=np.float32)


class ValidationCurve(TrainerCallback):
    """Reads the validation trials at step 0 and every `every` steps (and the last), writing
    `path` (JSON lines, rewritten atomically at each point; a resumed run keeps the points up
    to its checkpoint)."""

    def __init__(
        self,
        tokenizer,
        scenarios: Mapping[str, Scenario],
        targets: Mapping[str, Sequence[float]],
        trials: Sequence[T.Trial],
        path: Path,
        every: int,
        batch_size: int = 16,
    ) -> None:
        from reasonlens.evaluate.choice import choice_tokens
        from reasonlens.studies.preferences.readout import decision_prompts

        self.tokenizer, self.scenarios, self.targets = tokenizer, scenarios, targets
        self.trials, self.path, self.every, self.batch_size = list(trials), path, every, batch_size
        self.prompts = decision_prompts(tokenizer, scenarios, self.trials)
        self.token_ids = choice_tokens(tokenizer, self.prompts[:1], ("A", "B"))
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.rows = [r for r in read_curve(self.path) if r["step"] <= state.global_step]
        if not self.rows:
            self._point(args, state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._point(args, state, model)

    def _point(self, args, state, model) -> None:
        if self.rows and self.rows[-1]["step"] == state.global_step:
            return
        was_training = model.training
        model.eval()
        logits = letter_logits(model, self.tokenizer, self.prompts, self.token_ids, self.batch_size)
        model.train(was_training)
        losses = [
            h["loss"]
            for h in state.log_history
            if "loss" in h and h.get("step", 0) > (self.rows[-1]["step"] if self.rows else 0)
        ]
        point = curve_point(self.scenarios, self.targets, self.trials, logits[:, 0] - logits[:, 1])
        row = {
            "step": state.global_step,
            "examples": state.global_step
            * args.per_device_train_batch_size
            * args.gradient_accumulation_steps,
            "train_loss": float(np.mean(losses)) if losses else None,
            "precision": READ_PRECISION,
            **point,
        }
        self.rows.append(row)
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
