"""TRL's SFTTrainer with four changes: length-grouped batches, a count of padded compute, a
loss that runs the LM head only where there is something to learn, and checkpoints that appear
only once complete.

Checkpoints: the Trainer writes `checkpoint-N/` file by file (weights, optimizer, scheduler,
RNG, trainer_state.json last), so a kill during a save leaves a directory that looks like the
newest checkpoint and cannot be resumed from. Here each checkpoint is written under
`checkpoints/.partial/checkpoint-N/`, flushed to disk, and renamed into place when complete.
On resume (:func:`resume_point`) the newest checkpoint that is complete is chosen; incomplete
ones (left by a kill, by an older reasonlens, or truncated by a copy) and `.partial/` are
removed: `checkpoints/` is reasonlens' own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import SFTTrainer

from reasonlens.models.fingerprint import safetensors_problem
from reasonlens.runs.files import fsync_dir
from reasonlens.train.batching import LengthGroupedSampler
from reasonlens.train.callbacks import TokenMeter
from reasonlens.train.data import IGNORE

log = logging.getLogger(__name__)

STAGING = ".partial"  # checkpoints/.partial/checkpoint-N: a checkpoint being written
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
#: Files without which a resumed run would not continue exactly where it stopped.
_REQUIRED = {
    "trainer_state.json": "the trainer state",
    "optimizer.pt": "the optimizer state",
    "scheduler.pt": "the learning-rate scheduler state",
}
_WEIGHTS = (
    "adapter_model.safetensors",
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.bin",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class AtomicCheckpoints:
    """A Trainer mixin (put it first among the bases): each checkpoint is written under
    `checkpoints/.partial/checkpoint-N` and renamed into place once whole (module docstring).
    `_before_checkpoint` runs first, on every process (e.g. to fold counters into the state)."""

    def _before_checkpoint(self) -> None:
        pass

    _staging = False  # while True, the Trainer's output directory is checkpoints/.partial

    def _get_output_dir(self, trial):
        out = super()._get_output_dir(trial)
        return os.path.join(out, STAGING) if self._staging else out

    def _save_checkpoint(self, model, trial):
        """The Trainer's save, into `.partial/checkpoint-N`, renamed into place once whole."""
        self._before_checkpoint()
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged = run_dir / STAGING / name
        if self.args.should_save and staged.exists():
            shutil.rmtree(staged)  # left by a save that was killed
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        self.accelerator.wait_for_everyone()  # every process has written its part
        if self.args.should_save:
            _publish(staged, run_dir / name)
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()


class GroupedSFTTrainer(AtomicCheckpoints, SFTTrainer):
    """SFTTrainer that batches examples of similar length and counts the padding it trains on.

    `lengths` are the token counts of the training examples, in dataset order.
    """

    def __init__(self, *args, lengths: Sequence[int], meter: TokenMeter, **kwargs) -> None:
        self._lengths = list(lengths)
        self.meter = meter
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        # grouped by the batch of all processes together: accelerate deals each process its
        # share of every global batch, so N processes train on the examples, step by step,
        # that one process with the same global batch does
        global_batch = self.args.per_device_train_batch_size * self.args.world_size
        return LengthGroupedSampler(self._lengths, global_batch, seed=self.args.seed)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if "attention_mask" in inputs:
            self.meter.add(inputs["attention_mask"])
        return super().training_step(model, inputs, num_items_in_batch)

    def _before_checkpoint(self) -> None:
        self.meter.sync(self.accelerator)  # the checkpoint then records the whole run's counts

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


# --- checkpoints that are whole -------------------------------------------------------------


def _fsync_tree(path: Path) -> None:
    """Flush every file under `path`, then the directories, to disk."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(root))


def _publish(staged: Path, final: Path) -> None:
    """Rename the complete checkpoint `staged` to `final` in one step (an older `final` of
    the same step, saved before a resume, is replaced)."""
    _fsync_tree(staged)
    old = None
    if final.exists():
        old = staged.with_name(f"{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    staged.rename(final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    if not any(staged.parent.iterdir()):
        staged.parent.rmdir()


def checkpoint_step(path: str | Path) -> int | None:
    match = _CHECKPOINT.match(Path(path).name)
    return int(match[1]) if match else None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint directory `path` cannot be resumed from (None: it is complete).

    Cheap: the required files are there, trainer_state.json parses and is of this step, every
    safetensors file is as long as its header says, every torch file's zip directory reads,
    every JSON file parses."""
    path = Path(path)
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    for name, what in _REQUIRED.items():
        if name not in names:
            return f"{what} ({name}) is missing"
    if not any(name in names for name in _WEIGHTS):
        return "the model weights are missing"
    if not any(name.startswith("rng_state") for name in names):
        return "the random-number state (rng_state.pth) is missing"
    for name in sorted(names):
        problem = _file_problem(path / name)
        if problem is not None:
            return f"{name}: {problem}"
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    step = checkpoint_step(path)
    if not isinstance(state, dict) or state.get("global_step") != step:
        return f"trainer_state.json is not the state of step {step}"
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if index in names:
            shards = set(json.loads((path / index).read_text()).get("weight_map", {}).values())
            missing = sorted(shards - names)
            if missing:
                return f"weights shard {missing[0]} is missing"
    return None


def _file_problem(file: Path) -> str | None:
    if not file.is_file():
        return None
    suffix = file.suffix
    if suffix == ".safetensors":
        return safetensors_problem(file)
    if suffix in (".pt", ".pth", ".bin"):  # torch.save writes a zip archive
        try:
            with zipfile.ZipFile(file) as archive:
                archive.infolist()
        except (OSError, zipfile.BadZipFile) as err:
            return f"not a whole torch file ({err})"
        return None
    if suffix == ".json":
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "not valid JSON (truncated or not fully written)"
    return None


def resume_point(checkpoints: str | Path, clean: bool = True) -> str | None:
    """The newest complete checkpoint in `checkpoints` (None: there is none), logged.

    With `clean` (the main process), incomplete checkpoints and the staging directory of an
    interrupted save are removed, each with a warning saying why."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return None
    staging = checkpoints / STAGING
    if clean and staging.exists():
        log.warning("removing %s, left by a checkpoint save that was interrupted", staging)
        shutil.rmtree(staging, ignore_errors=True)
    found = sorted(
        (step, p)
        for p in checkpoints.iterdir()
        if p.is_dir() and (step := checkpoint_step(p)) is not None
    )
    chosen = None
    for _step, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            chosen = chosen or path
            continue
        if clean:
            log.warning("removing incomplete checkpoint %s (%s)", path, problem)
            shutil.rmtree(path, ignore_errors=True)
        else:
            log.info("skipping incomplete checkpoint %s (%s)", path, problem)
    if chosen is not None:
        log.info("resuming from %s, the newest complete checkpoint", chosen)
    return str(chosen) if chosen is not None else None
