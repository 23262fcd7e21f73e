"""TRL's SFTTrainer with three changes: length-grouped batches, a count of padded compute, and
a loss that runs the LM head only where there is something to learn."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from trl import SFTTrainer

from reasonlens.train.batching import LengthGroupedSampler
from reasonlens.train.callbacks import TokenMeter
from reasonlens.train.data import IGNORE


class GroupedSFTTrainer(SFTTrainer):
    """SFTTrainer that batches examples of similar length and counts the padding it trains on.

    `lengths` are the token counts of the training examples, in dataset order.
    """

    def __init__(self, *args, lengths: Sequence[int], meter: TokenMeter, **kwargs) -> None:
        self._lengths = list(lengths)
        self.meter = meter
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        return LengthGroupedSampler(
            self._lengths, self.args.per_device_train_batch_size, seed=self.args.seed
        )

    def training_step(self, model, inputs, num_items_in_batch=None):
        if "attention_mask" in inputs:
            self.meter.add(inputs["attention_mask"])
        return super().training_step(model, inputs, num_items_in_batch)

    def _save_checkpoint(self, model, trial):
        self.meter.sync(self.accelerator)  # the checkpoint then records the whole run's counts
        super()._save_checkpoint(model, trial)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Mean next-token cross-entropy over the labelled (completion) tokens.

        The LM head (vocabulary x width, the largest matrix of a small model) is applied only
        at positions whose next token carries a label, via `logits_to_keep`: where the prompt
        is long (often three quarters of the text or more), a small part of
        the sequence. TRL's fused head does the same on GPUs with Triton but scores every
        position elsewhere (e.g. on the CPU). The loss is normalised as TRL's is (by the
        labelled tokens of the whole accumulated batch) and the same metrics are logged
        (mean_token_accuracy, entropy, num_tokens).
        """
        labels = inputs["labels"]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE
        targets = labels[:, 1:][keep[:, :-1]]
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**model_inputs, logits_to_keep=keep, use_cache=False)
        logprobs = outputs.logits.float().log_softmax(-1)  # [labelled tokens, vocab]
        nll = -logprobs.gather(-1, targets[:, None]).squeeze(-1)
        count = targets.numel() if num_items_in_batch is None else num_items_in_batch
        loss = nll.sum() / torch.as_tensor(count, device=nll.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._log_metrics(inputs, logprobs.detach(), targets)
        return (loss, outputs) if return_outputs else loss

    def _log_metrics(self, inputs: dict, logprobs: torch.Tensor, targets: torch.Tensor) -> None:
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        with torch.no_grad():
            n = gather(torch.tensor(targets.numel(), device=targets.device)).sum()
            entropy = gather(-(logprobs.exp() * logprobs).sum()).sum()
            correct = gather((logprobs.argmax(-1) == targets).sum()).sum()
        valid = n.item()
        self._metrics[mode]["entropy"].append(entropy.item() / valid if valid else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append(correct.item() / valid if valid else 0.0)
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
