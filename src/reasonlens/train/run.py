"""`train()`: supervised fine-tuning (LoRA or full) into a run directory, resumable.

Run directory layout::

    run.json, config.yaml   the resolved TrainConfig (RunDir)
    data.json               the data files: kind, examples, sha256 (checked on resume)
    checkpoints/            Trainer checkpoints (model, optimizer, scheduler, RNG), each written
                            under checkpoints/.partial/ and renamed when complete; a resume
                            takes the newest complete one (train.trainer.resume_point)
    train_log.jsonl         one line per logging step: step, epoch, loss, learning_rate, ...
    loss.png, summary.md    the loss curve and a short summary
    results.json            figures of the run (written last: its presence means "done")
    adapter/                LoRA only: the PEFT adapter (+ tokenizer)
    model/                  a full Hugging Face checkpoint (+ tokenizer) that load_model reads
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from reasonlens.errors import UserError
from reasonlens.runs import RunDir, read_json, reopen_or_refuse
from reasonlens.train.callbacks import JsonlLogCallback, ProgressCallback, TokenMeter, read_log
from reasonlens.train.config import TrainConfig, check_lora_targets
from reasonlens.train.data import DataFile, read_pairs, tokenize_pairs
from reasonlens.train.report import plot_loss, summary_markdown

log = logging.getLogger(__name__)

KIND = "train"
RESULTS = "results.json"
MODEL_DIR = "model"  # the full checkpoint a finished run leaves (run.json: produces.model)
DATA_FILE = "data.json"  # fingerprints of the training files, to notice changed data


@dataclass
class TrainResult:
    """Where a finished run is, and its figures (the contents of results.json)."""

    run_dir: Path
    model_dir: Path
    adapter_dir: Path | None
    results: dict[str, Any]


@dataclass(frozen=True)
class Precision:
    """Where training runs and in which number format."""

    device: str  # "cpu" | "cuda"
    dtype: str  # "float32" | "bfloat16" | "float16"

    def master_dtype(self, method: str) -> str:
        """Full fine-tuning keeps float32 weights (autocast does the rest); LoRA's base is
        frozen, so it can stay in the low-precision format."""
        return "float32" if method == "full" else self.dtype


def resolve_precision(config: TrainConfig) -> Precision:
    """cuda + bf16 when there is a GPU (and the user did not say otherwise), else cpu + fp32."""
    cuda = torch.cuda.is_available()
    device = config.device if config.device != "auto" else ("cuda" if cuda else "cpu")
    device = "cuda" if device.startswith("cuda") else device
    if device == "cuda" and not cuda:
        raise UserError("device 'cuda' requested but no CUDA GPU is available; use cpu")
    dtype = config.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    return Precision(device, dtype)


def train(
    config: TrainConfig,
    out: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune `config.model` on `config.data` into run directory `out` (`method` grpo:
    reinforcement learning on the data's task, see :mod:`reasonlens.train.grpo`).

    Re-running the same config into the same `out` resumes from the last checkpoint (or returns
    at once if the run had finished); a different config there is refused unless `overwrite`.
    `callbacks` are extra transformers TrainerCallbacks (logging, early stopping, ...).
    """
    from reasonlens.models import load_tokenizer

    config.validate()
    if config.method == "grpo":  # reinforcement learning on a task's verifier
        from reasonlens.train.grpo import train_grpo

        return train_grpo(config, out, overwrite, progress, callbacks)
    check_lora_targets(config)  # library callers get the command's refusal too
    out = Path(out)
    precision = resolve_precision(config)
    pairs, files = read_pairs(config.data)
    tokenizer = load_tokenizer(config.model)
    tokenized = tokenize_pairs(tokenizer, pairs, config.max_length)
    args = _training_args(config, precision, out / "checkpoints")

    with args.main_process_first(desc="run directory"):
        # trained on other data: the one reopen-or-refuse rule, before the config's own check
        reopen_or_refuse(out, _other_data(out, files), overwrite)
        run = RunDir.create(
            out, KIND, config.to_dict(), overwrite=overwrite, produces={"model": MODEL_DIR}
        )
        if not run.file(DATA_FILE).exists():
            run.write_json(DATA_FILE, [f.__dict__ for f in files])
    done = _finished(run)
    if done is not None:
        log.info("%s already holds a finished run; nothing to do", out)
        return done

    handler = run.log_to_file("train.log") if args.process_index == 0 else None
    try:
        with _hf_progress_bars(progress), warnings.catch_warnings():
            # transformers 5 renamed gradient -> activation checkpointing; peft/trl still ask
            # for the old name on every save, which says nothing to the user
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
            return _train(
                config, run, precision, tokenizer, tokenized, files, args, progress, callbacks
            )
    finally:
        if handler is not None:
            logging.getLogger("reasonlens").removeHandler(handler)
            handler.close()


def _train(
    config, run, precision, tokenizer, tokenized, files, args, progress, extra_callbacks
) -> TrainResult:
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HFProgressCallback

    from reasonlens.models import load_model
    from reasonlens.train.trainer import GroupedSFTTrainer, resume_point

    with args.main_process_first(desc="checkpoints"):  # the main process cleans up first
        last = resume_point(run.file("checkpoints"), clean=args.process_index == 0)
    meter = TokenMeter.from_checkpoint(last)
    start_real = meter.real
    callbacks = [meter, JsonlLogCallback(run.file("train_log.jsonl"))]
    if progress:
        callbacks.append(ProgressCallback())
    callbacks.extend(extra_callbacks)

    dataset = Dataset.from_dict(
        {"input_ids": [t.input_ids for t in tokenized], "labels": [t.labels for t in tokenized]}
    )
    loaded = load_model(config.model, device="cpu", dtype=precision.master_dtype(config.method))
    trainer = GroupedSFTTrainer(
        model=loaded.hf,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(config) if config.method == "lora" else None,
        callbacks=callbacks,
        lengths=[len(t.input_ids) for t in tokenized],
        meter=meter,
    )
    for default in (PrinterCallback, HFProgressCallback):
        trainer.remove_callback(default)

    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    meter.sync(trainer.accelerator)

    model_dir, adapter_dir = _save_model(trainer, run, config)
    results = _results(
        config, precision, trainer, output, meter, start_real, seconds, tokenized, files, last
    )
    results.update(model_dir=str(model_dir), adapter_dir=str(adapter_dir) if adapter_dir else None)
    if trainer.is_world_process_zero():
        records = read_log(run.file("train_log.jsonl"))
        plot_loss(records, run.file("loss.png"), f"{Path(config.model).name} ({config.method})")
        run.write_text("summary.md", summary_markdown(run.config, results))
        run.write_json(RESULTS, results)  # last: its presence marks the run finished
    trainer.accelerator.wait_for_everyone()
    return TrainResult(run.path, model_dir, adapter_dir, results)


def trainer_arguments(config: TrainConfig, precision: Precision, output_dir: Path) -> dict:
    """The transformers Trainer arguments every reasonlens trainer (SFT, GRPO) shares: the
    schedule, checkpoints, precision and quiet logging."""
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        use_cpu=precision.device == "cpu",
        bf16=precision.dtype == "bfloat16",
        fp16=precision.dtype == "float16",
        activation_checkpointing=config.gradient_checkpointing,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def _training_args(config: TrainConfig, precision: Precision, output_dir: Path):
    from trl import SFTConfig

    return SFTConfig(
        **trainer_arguments(config, precision, output_dir),
        gradient_accumulation_steps=config.gradient_accumulation,
        # Our dataset is already tokenised, labelled and length-checked (see train.data).
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,
    )


def _lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _save_model(trainer, run: RunDir, config: TrainConfig) -> tuple[Path, Path | None]:
    """Full: the trained weights to model/. LoRA: the adapter to adapter/, merged into model/."""
    from reasonlens.train.merge import merge_adapter

    model_dir = run.file(MODEL_DIR)
    target = run.file("adapter") if config.uses_lora else model_dir
    partial = target.with_name(f".{target.name}.partial")
    trainer.model.config.use_cache = True  # off while training; generation wants it on
    trainer.save_model(str(partial))  # every process joins: FSDP/DeepSpeed gather here
    if trainer.is_world_process_zero():
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
        if config.uses_lora:
            merge_adapter(target, base=config.model, out=model_dir, overwrite=True)
    trainer.accelerator.wait_for_everyone()
    return model_dir, (target if config.uses_lora else None)


def _results(
    config, precision, trainer, output, meter, start_real, seconds, tokenized, files, last
) -> dict[str, Any]:
    state = trainer.state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    session_tokens = meter.real - start_real
    model = trainer.model
    return {
        "model": config.model,
        "method": config.method,
        "examples": len(tokenized),
        "data": [f.__dict__ for f in files],
        "steps": state.global_step,
        "epochs": float(state.epoch or 0.0),
        "train_seconds": round(seconds, 3),
        "tokens_per_second": session_tokens / seconds if seconds > 0 else 0.0,
        "trained_tokens": meter.real,
        "computed_positions": meter.padded,
        "padding_fraction": meter.padding_fraction,
        "completion_tokens_per_epoch": sum(t.n_completion for t in tokenized),
        "final_loss": losses[-1] if losses else None,
        "first_loss": losses[0] if losses else None,
        "mean_loss_this_session": output.training_loss,
        "resumed_from_step": _step_of(last),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": _device_name(trainer.args.device, trainer.accelerator.num_processes),
        "precision": precision.dtype,
    }


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    try:
        return int(Path(checkpoint).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


def _device_name(device: torch.device, processes: int) -> str:
    name = str(device)
    if device.type == "cuda":
        name = f"{name} ({torch.cuda.get_device_name(device)})"
    return f"{processes} x {name}" if processes > 1 else name


def _other_data(out: Path, files: list[DataFile]) -> str | None:
    """What `out` was trained on, when that is not `files` (None: the same, or nothing yet)."""
    path = out / DATA_FILE
    if not path.is_file():
        return None
    before, now = read_json(path), [f.__dict__ for f in files]
    if before == now:
        return None
    changed = [a["path"] for a, b in zip(before, now, strict=False) if a != b]
    return f"a run trained on different data ({', '.join(changed) or 'the file list'} changed)"


def _finished(run: RunDir) -> TrainResult | None:
    path = run.file(RESULTS)
    if not (path.exists() and (run.file(MODEL_DIR) / "config.json").exists()):
        return None
    results = read_json(path)
    adapter = run.file("adapter") if results.get("adapter_dir") else None
    return TrainResult(run.path, run.file(MODEL_DIR), adapter, results)


@contextmanager
def _hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Hide transformers' own bars (e.g. 'Writing model shards') when quiet."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            hf_logging.enable_progress_bar()
