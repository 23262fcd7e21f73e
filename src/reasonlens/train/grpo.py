"""`train --method grpo`: reinforcement learning with verifiable rewards, on TRL's GRPOTrainer.

For each optimizer step, ``prompts_per_step`` training prompts are each sampled
``num_generations`` times (the group) in **one** batched ``generate`` call; every completion is
cut and scored by its task, turned into a number by the reward function
(:mod:`reasonlens.train.rewards`), and its advantage is its reward against its group's. LoRA
(``weights: lora``, merged into ``model/`` at the end) or every weight (``weights: full``).

The run directory is an SFT run's (see :mod:`reasonlens.train.run`): the same atomic
checkpoints, resume, refusal of another config or changed data, ``model/`` and
``results.json`` written last. It adds, per logged step, in ``train_log.jsonl``: ``reward``
(mean), ``reward_std`` (over the step), ``reward_group_spread`` (mean spread inside a group),
``zero_variance_groups`` (share of groups whose completions all got one reward: no learning
signal), ``kl`` (to the start model; only with ``beta`` > 0), ``completion_length``,
``clipped_ratio`` (completions cut by the length limit), ``step_time``, ``generate_time`` and
``generate_calls``; the curve of these is ``reward.png``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.parallel import launched_size
from reasonlens.runs import RunDir, reopen_or_refuse
from reasonlens.tasks import task_for_record
from reasonlens.tasks.base import Task, TaskItem
from reasonlens.train.config import TrainConfig, check_lora_targets
from reasonlens.train.data import DataFile
from reasonlens.train.rewards import TASK_ALIASES, RewardFn, resolve_reward

log = logging.getLogger(__name__)

#: TRL's log keys -> the keys of train_log.jsonl (a GRPO run).
GRPO_LOG_KEYS = {
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "reward": "reward",
    "reward_std": "reward_std",
    "reward_group_spread": "reward_group_spread",
    "zero_variance_groups": "zero_variance_groups",
    "kl": "kl",
    "entropy": "entropy",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "clipped_ratio",
    "step_time": "step_time",
    "generate_time": "generate_time",
    "generate_calls": "generate_calls",
    "num_tokens": "num_tokens",
}


@dataclass
class GrpoData:
    """What a GRPO run trains on: the task, its prompts (items), and the reward."""

    task: Task
    items: list[TaskItem]
    files: list[DataFile]
    reward_name: str
    reward: RewardFn


def prepare(config: TrainConfig) -> GrpoData:
    """The task, prompts and reward of a GRPO config, every refusal before anything is
    written: data of no task with a verifier, files of two tasks, a reward that cannot be
    imported."""
    from reasonlens.jsonl import read_bytes
    from reasonlens.tasks.registry import get_task
    from reasonlens.train.data import _first_record

    named = get_task(TASK_ALIASES.get(config.task, config.task)) if config.task else None
    task: Task | None = named
    items: list[TaskItem] = []
    files: list[DataFile] = []
    for path in map(Path, config.data):
        raw = read_bytes(path)
        first = _first_record(path, raw)
        found = task_for_record(first)
        if found is None:
            raise UserError(
                f"{path}: these records belong to no task reasonlens can verify (prompt/"
                "completion data has no verifier); GRPO needs task data whose completions "
                "it scores (blocksworld, maze)"
            )
        if named is not None and found.name != named.name:
            raise UserError(f"{path} holds {found.name} data, but --task is {named.name}")
        if task is not None and found.name != task.name:
            raise UserError(f"{path} holds {found.name} data, the files before it {task.name}")
        task = found
        read = task.read(path)
        if not read:
            raise UserError(f"{path}: no problems (the file is empty)")
        items.extend(read)
        files.append(DataFile(str(path), task.name, len(read), hashlib.sha256(raw).hexdigest()))
    assert task is not None
    name, fn = resolve_reward(config.reward, task)
    return GrpoData(task, items, files, name, fn)


def check_grpo(config: TrainConfig) -> GrpoData:
    """Every check a GRPO run makes before it writes anything (the command calls it)."""
    config.validate()
    check_lora_targets(config)
    accumulation(config, launched_size())
    return prepare(config)


def train_grpo(
    config: TrainConfig,
    out: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
):
    """GRPO on `config` into run directory `out` (resumable like :func:`train.run.train`)."""
    from reasonlens.models import load_tokenizer
    from reasonlens.train.run import (
        DATA_FILE,
        KIND,
        MODEL_DIR,
        _finished,
        _hf_progress_bars,
        _other_data,
        resolve_precision,
    )

    data = check_grpo(config)
    out = Path(out)
    precision = resolve_precision(config)
    tokenizer = load_tokenizer(config.model)
    args = _grpo_args(config, precision, out / "checkpoints")
    with args.main_process_first(desc="run directory"):
        reopen_or_refuse(out, _other_data(out, data.files), overwrite)
        run = RunDir.create(
            out, KIND, config.to_dict(), overwrite=overwrite, produces={"model": MODEL_DIR}
        )
        if not run.file(DATA_FILE).exists():
            run.write_json(DATA_FILE, [f.__dict__ for f in data.files])
    done = _finished(run)
    if done is not None:
        log.info("%s already holds a finished run; nothing to do", out)
        return done
    handler = run.log_to_file("train.log") if args.process_index == 0 else None
    try:
        with _hf_progress_bars(progress), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
            return _train(config, run, precision, tokenizer, data, args, progress, callbacks)
    finally:
        if handler is not None:
            logging.getLogger("reasonlens").removeHandler(handler)
            handler.close()


def _trainer_class():
    from trl import GRPOTrainer

    from reasonlens.train.trainer import AtomicCheckpoints

    class TaskGRPOTrainer(AtomicCheckpoints, GRPOTrainer):
        """GRPOTrainer with atomic checkpoints that times (and counts) its generate calls."""

        _generate_calls = 0

        def _generate_single_turn(self, *args, **kwargs):
            start = time.perf_counter()
            out = super()._generate_single_turn(*args, **kwargs)
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["generate_time"].append(time.perf_counter() - start)
            self._generate_calls += 1
            return out

        def log(self, logs, start_time=None):
            if "loss" in logs:
                steps = max(1, self.args.logging_steps)
                logs["generate_calls"] = self._generate_calls / steps
                self._generate_calls = 0
            super().log(logs, start_time)

    return TaskGRPOTrainer


def _train(config, run, precision, tokenizer, data: GrpoData, args, progress, extra):
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from transformers.trainer_callback import ProgressCallback as HFProgressCallback

    from reasonlens.models import load_model
    from reasonlens.train.callbacks import JsonlLogCallback, ProgressCallback, read_log
    from reasonlens.train.rewards import TaskReward
    from reasonlens.train.run import (
        RESULTS,
        TrainResult,
        _device_name,
        _lora_config,
        _save_model,
        _step_of,
    )
    from reasonlens.train.trainer import resume_point

    with args.main_process_first(desc="checkpoints"):
        last = resume_point(run.file("checkpoints"), clean=args.process_index == 0)
    callbacks = [JsonlLogCallback(run.file("train_log.jsonl"), keys=GRPO_LOG_KEYS)]
    if progress:
        callbacks.append(ProgressCallback())
    callbacks.extend(extra)
    dataset = Dataset.from_dict(
        {"prompt": [it.prompt for it in data.items], "item_index": list(range(len(data.items)))}
    )
    method = "lora" if config.uses_lora else "full"
    loaded = load_model(config.model, device="cpu", dtype=precision.master_dtype(method))
    group = config.num_generations
    reward = TaskReward(data.task, data.items, data.reward, data.reward_name, group)
    trainer = _trainer_class()(
        model=loaded.hf,
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(config) if config.uses_lora else None,
        callbacks=callbacks,
    )
    for default in (PrinterCallback, HFProgressCallback):
        trainer.remove_callback(default)

    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    model_dir, adapter_dir = _save_model(trainer, run, config)
    records = read_log(run.file("train_log.jsonl"))
    results = grpo_results(config, data, records, trainer, seconds)
    results.update(
        resumed_from_step=_step_of(last),
        model_dir=str(model_dir),
        adapter_dir=str(adapter_dir) if adapter_dir else None,
        device=_device_name(trainer.args.device, trainer.accelerator.num_processes),
        precision=precision.dtype,
    )
    if trainer.is_world_process_zero():
        title = f"{Path(config.model).name} (GRPO, {data.task.name}, {method})"
        plot_curve(records, run.file("reward.png"), title)
        run.write_text("summary.md", grpo_summary(run.config, results))
        run.write_json(RESULTS, results)  # last: its presence marks the run finished
    trainer.accelerator.wait_for_everyone()
    return TrainResult(run.path, model_dir, adapter_dir, results)


def _grpo_args(config: TrainConfig, precision, output_dir: Path):
    from trl import GRPOConfig

    from reasonlens.train.run import trainer_arguments

    return GRPOConfig(
        **trainer_arguments(config, precision, output_dir),
        # one optimizer step = one generation of prompts_per_step x num_generations completions,
        # split across the launched processes (each generates and back-propagates its share)
        gradient_accumulation_steps=accumulation(config, launched_size()),
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=1.0,
        top_k=0,
        beta=config.beta,
        epsilon=config.epsilon,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        log_completions=False,
        remove_unused_columns=False,
    )


def accumulation(config: TrainConfig, processes: int) -> int:
    """Micro-batches per process in one optimizer step, so that a step is the same
    ``prompts_per_step x num_generations`` completions whatever the number of processes; a
    step that does not split evenly across them is a UserError (nothing written)."""
    per_step, batch = config.completions_per_step, config.batch_size
    if per_step % (batch * processes):
        raise UserError(
            f"a GRPO step's {per_step} completions ({config.prompts_per_step} prompts x "
            f"{config.num_generations}) do not split into batches of {batch} across {processes} "
            f"processes: make prompts_per_step x num_generations a multiple of "
            f"{batch * processes}, or lower --batch-size"
        )
    return per_step // (batch * processes)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def grpo_results(config, data: GrpoData, records, trainer, seconds: float) -> dict[str, Any]:
    """results.json of a GRPO run: the reward at the start and end, the signal it had, speed."""

    def series(key: str) -> list[float]:
        return [r[key] for r in records if r.get(key) is not None]

    rewards, zero = series("reward"), series("zero_variance_groups")
    k = max(1, len(rewards) // 5)  # the first and last fifth of the steps
    steps, gen, step_time = trainer.state.global_step, series("generate_time"), series("step_time")
    model = trainer.model
    return {
        "model": config.model,
        "method": "grpo",
        "weights": "lora" if config.uses_lora else "full",
        "task": data.task.name,
        "reward": data.reward_name,
        "examples": len(data.items),
        "data": [f.__dict__ for f in data.files],
        "steps": steps,
        "epochs": float(trainer.state.epoch or 0.0),
        "prompts_per_step": config.prompts_per_step,
        "num_generations": config.num_generations,
        "completions_sampled": steps * config.completions_per_step,
        "completion_tokens_sampled": round(
            sum(series("completion_length")) * config.completions_per_step * config.logging_steps
        ),
        "train_seconds": round(seconds, 3),
        "steps_per_minute": round(60 * len(step_time) / sum(step_time), 3) if step_time else None,
        "generate_share": round(sum(gen) / sum(step_time), 4) if step_time and gen else None,
        "first_reward": rewards[0] if rewards else None,
        "final_reward": rewards[-1] if rewards else None,
        "reward_first_fifth": _mean(rewards[:k]),
        "reward_last_fifth": _mean(rewards[-k:]),
        "zero_variance_share": _mean(zero),
        "final_kl": series("kl")[-1] if series("kl") else None,
        "beta": config.beta,
        "first_loss": series("loss")[0] if series("loss") else None,
        "final_loss": series("loss")[-1] if series("loss") else None,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def plot_curve(records: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Four panels against the step: reward (mean, and the band of the mean spread inside a
    group), the share of zero-variance groups, KL to the start model, completion length."""
    points = [r for r in records if r.get("reward") is not None]
    if not points:
        return None
    from reasonlens.plots import new_figure, save_figure

    steps = [r["step"] for r in points]
    fig = new_figure(figsize=(9, 6), dpi=110)
    axes = fig.subplots(2, 2).ravel()
    mean = [r["reward"] for r in points]
    spread = [r.get("reward_group_spread") or 0.0 for r in points]
    axes[0].plot(steps, mean, marker="." if len(steps) < 60 else None)
    low = [m - s for m, s in zip(mean, spread, strict=True)]
    high = [m + s for m, s in zip(mean, spread, strict=True)]
    axes[0].fill_between(steps, low, high, alpha=0.2)
    axes[0].set_ylabel("reward (mean; band: spread in a group)")
    panels = [
        ("zero_variance_groups", "share of groups with zero variance"),
        ("kl", "KL to the start model"),
        ("completion_length", "completion length (tokens)"),
    ]
    for ax, (key, label) in zip(axes[1:], panels, strict=True):
        pts = [(r["step"], r[key]) for r in points if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 60 else None)
        else:
            ax.text(0.5, 0.5, "not logged (beta 0)", ha="center", transform=ax.transAxes)
        ax.set_ylabel(label)
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _num(value: Any, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def grpo_summary(config: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [
        f"# GRPO ({results['weights']})",
        "",
        f"- model: `{config['model']}`",
        f"- task: {results['task']}, reward `{results['reward']}`, {results['examples']} "
        "prompts from " + ", ".join(f"`{Path(p).name}`" for p in config["data"]),
        f"- steps: {results['steps']} ({results['epochs']:.2f} epochs), "
        f"{results['prompts_per_step']} prompts x {results['num_generations']} completions a "
        f"step, up to {config['max_completion_length']} tokens each, temperature "
        f"{config['temperature']:g}, lr {config['learning_rate']:g}, beta {config['beta']:g}",
        f"- reward: {_num(results['reward_first_fifth'])} (first fifth of the steps) -> "
        f"{_num(results['reward_last_fifth'])} (last fifth)",
        f"- groups with zero reward variance (no learning signal): "
        f"{_num(results['zero_variance_share'], '.1%')} of groups, mean over steps",
        f"- KL to the start model at the end: {_num(results['final_kl'], '.4g')}",
        f"- speed: {_num(results['steps_per_minute'], '.2f')} steps/min, "
        f"{_num(results['generate_share'], '.0%')} of a step generating, "
        f"{results['train_seconds']:.0f} s on {results['device']} ({results['precision']})",
    ]
    if results.get("resumed_from_step"):
        lines.append(f"- resumed from the checkpoint at step {results['resumed_from_step']}")
    lines += ["", f"Model: `{results['model_dir']}`", "", "![reward curve](reward.png)", ""]
    return "\n".join(lines)
