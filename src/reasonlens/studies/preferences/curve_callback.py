"""The held-out curve's reader during training (see .curve): a TrainerCallback, and the
letters' logits in float32 from one forward pass a batch. Apart from .curve so that reading a
finished curve (the analysis, the report) needs no torch.

The letters' logits are computed in float32 from the last hidden state, whatever the model's
training precision: in bf16 the logit difference moves in steps of 1/8 at the letters' usual
magnitude, coarser than the whole spread of a model that barely reads the values.
"""

from __future__ import annotations

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


@torch.inference_mode()
def letter_logits(
    hf, tokenizer, prompts: Sequence[str], token_ids: Sequence[int], batch_size: int = 16
) -> np.ndarray:
    """(prompts x choices) float32 logits of `token_ids` at each prompt's answer position, from
    one forward pass per batch (left-padded, no generation)."""
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    encoded = [tokenize(tokenizer, p) for p in prompts]
    head = hf.get_output_embeddings()
    rows = head.weight[list(token_ids)].float()
    bias = head.bias[list(token_ids)].float() if getattr(head, "bias", None) is not None else 0
    cap = getattr(getattr(hf, "config", None), "final_logit_softcapping", None)
    device = rows.device
    out = []
    for start in range(0, len(encoded), batch_size):
        batch = pad_batch(encoded[start : start + batch_size], pad_id, "left")
        hidden = hf(
            **{k: v.to(device) for k, v in batch.items()}, output_hidden_states=True
        ).hidden_states[-1][:, -1]
        logits = hidden.float() @ rows.T + bias
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
            **point,
        }
        self.rows.append(row)
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
