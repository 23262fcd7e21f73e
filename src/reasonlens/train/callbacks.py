"""Trainer callbacks: the JSONL training log, the progress bar, and the token/padding meter."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from reasonlens.errors import UserError
from reasonlens.jsonl import scan_jsonl
from reasonlens.runs.files import atomic_write

#: Keys of a Trainer log record that go into train_log.jsonl (when present).
LOG_KEYS = ("loss", "learning_rate", "grad_norm", "mean_token_accuracy", "entropy", "num_tokens")


class JsonlLogCallback(TrainerCallback):
    """Appends one line per logging step to train_log.jsonl: step, epoch, loss, lr, ...

    On resume, lines past the checkpoint's step are dropped first: those steps are redone.
    """

    def __init__(self, path: Path, keys: Mapping[str, str] | None = None) -> None:
        self.path = path
        # the Trainer's log key -> the key in the file (default: LOG_KEYS, as they are)
        self.keys = dict(keys) if keys is not None else {k: k for k in LOG_KEYS}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            kept = [r for r in read_log(self.path) if r["step"] <= state.global_step]
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0, 4)}
        record.update(
            {ours: float(logs[k]) for k, ours in self.keys.items() if logs.get(k) is not None}
        )
        record["time"] = round(time.time(), 3)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a train_log.jsonl (an unfinished last line is skipped)."""
    if not path.exists():
        return []
    return [record for _, record in scan_jsonl(path) if not isinstance(record, UserError)]


class ProgressCallback(TrainerCallback):
    """A tqdm bar over optimizer steps showing the latest loss and learning rate (main process)."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc="train", unit="step"
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            shown = {"loss": f"{logs['loss']:.4f}", "lr": f"{logs['learning_rate']:.2e}"}
            if logs.get("reward") is not None:  # GRPO
                shown = {"reward": f"{logs['reward']:.3f}", **shown}
            self.bar.set_postfix(**shown)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TokenMeter(TrainerCallback, ExportableState):
    """Counts the real and the padded token positions of every batch actually trained on.

    `padded` counts every position the model computed (batch x width); `real` those the
    attention mask keeps. The counts are saved with each checkpoint (in trainer_state.json),
    so a resumed run reports the whole run, not only its last part.
    """

    def __init__(self, real: int = 0, padded: int = 0) -> None:
        self.real = real
        self.padded = padded
        self._local = torch.zeros(2, dtype=torch.long)  # this process, since the last sync

    def add(self, attention_mask: torch.Tensor) -> None:
        """Count one batch; stays on the batch's device (no host sync per step)."""
        if self._local.device != attention_mask.device:
            self._local = self._local.to(attention_mask.device)
        self._local[0] += attention_mask.sum()
        self._local[1] += attention_mask.numel()

    def sync(self, accelerator: Any) -> None:
        """Fold every process's counts into the totals (all processes must call this)."""
        local = self._local.to(accelerator.device)
        if accelerator.num_processes > 1:
            local = accelerator.reduce(local, reduction="sum")
        total = local
        self.real += int(total[0])
        self.padded += int(total[1])
        self._local.zero_()

    @property
    def padding_fraction(self) -> float:
        return 1 - self.real / self.padded if self.padded else 0.0

    def state(self) -> dict:
        return {"args": {}, "attributes": {"real": self.real, "padded": self.padded}}

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None) -> TokenMeter:
        """The meter as saved in `checkpoint`'s trainer_state.json (zeros if absent)."""
        if checkpoint is None:
            return cls()
        try:
            state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
            saved = state["stateful_callbacks"][cls.__name__]["attributes"]
            return cls(int(saved["real"]), int(saved["padded"]))
        except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError):
            return cls()
