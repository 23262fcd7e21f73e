"""`reasonlens train` (fine-tune into a run directory) and `reasonlens train-merge` (LoRA merge)."""

from __future__ import annotations

from pathlib import Path

import typer

from reasonlens.errors import UserError
from reasonlens.train.config import TrainConfig

_D = {name: field.default for name, field in TrainConfig.__dataclass_fields__.items()}


def _opt(
    *names: str, help: str, default_of: str | None = None, **kwargs
) -> typer.models.OptionInfo:
    """An option that is None unless given, so a --config file's value is not overridden."""
    if default_of is not None:
        help = f"{help.rstrip('.')} (default: {_D[default_of]})."
    return typer.Option(None, *names, help=help, show_default=False, **kwargs)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        out: Path = typer.Option(
            ..., "--out", "-o", help="Run directory (resumes if the same run)."
        ),
        config: Path = _opt("--config", "-c", help="YAML file of options; flags override it."),
        data: list[Path] = _opt(
            "--data", "-d", help="Training JSONL (repeatable): Blocksworld, or prompt/completion."
        ),
        model: str = _opt(
            "--model", "-m", help="Built-in, HF id, model directory or .gguf.", default_of="model"
        ),
        method: str = _opt(
            "--method",
            help="lora or full (SFT), or grpo (RL on a task's verifier).",
            default_of="method",
        ),
        lora_r: int = _opt("--lora-r", help="LoRA rank.", default_of="lora_r", min=1),
        lora_alpha: int = _opt("--lora-alpha", help="LoRA alpha.", default_of="lora_alpha", min=1),
        lora_dropout: float = _opt(
            "--lora-dropout", help="LoRA dropout.", default_of="lora_dropout"
        ),
        lora_target_modules: str = _opt(
            "--lora-target-modules",
            help="all-linear, or module names, comma-separated.",
            default_of="lora_target_modules",
        ),
        learning_rate: float = _opt(
            "--learning-rate", "--lr", help="Peak learning rate (default: 5e-5 full, 2e-4 lora)."
        ),
        lr_scheduler: str = _opt(
            "--lr-scheduler", help="linear, cosine, constant, ...", default_of="lr_scheduler"
        ),
        warmup_ratio: float = _opt(
            "--warmup-ratio", help="Share of steps warming up.", default_of="warmup_ratio"
        ),
        weight_decay: float = _opt(
            "--weight-decay", help="AdamW decay.", default_of="weight_decay"
        ),
        max_grad_norm: float = _opt(
            "--max-grad-norm", help="Gradient clipping.", default_of="max_grad_norm"
        ),
        epochs: float = _opt("--epochs", help="Passes over the data.", default_of="epochs"),
        max_steps: int = _opt("--max-steps", help="Stop after this many steps (overrides epochs)."),
        batch_size: int = _opt(
            "--batch-size", "-b", help="Examples per device per step.", default_of="batch_size"
        ),
        gradient_accumulation: int = _opt(
            "--gradient-accumulation", help="Batches per step.", default_of="gradient_accumulation"
        ),
        max_length: int = _opt(
            "--max-length",
            help="Longest example in tokens (longer: error).",
            default_of="max_length",
        ),
        seed: int = _opt(
            "--seed", help="Seed (same seed, same numbers on CPU).", default_of="seed"
        ),
        logging_steps: int = _opt(
            "--logging-steps", help="Log every N steps.", default_of="logging_steps"
        ),
        save_steps: int = _opt(
            "--save-steps", help="Checkpoint every N steps.", default_of="save_steps"
        ),
        save_total_limit: int = _opt(
            "--save-total-limit", help="Checkpoints kept.", default_of="save_total_limit"
        ),
        gradient_checkpointing: bool = typer.Option(
            None,
            "--gradient-checkpointing/--no-gradient-checkpointing",
            help="Recompute activations to save memory (default: off).",
            show_default=False,
        ),
        device: str = _opt("--device", help="auto, cpu or cuda.", default_of="device"),
        dtype: str = _opt(
            "--dtype",
            help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.",
            default_of="dtype",
        ),
        task: str = _opt(
            "--task", help="GRPO: the data's task (default: the one its records belong to)."
        ),
        reward: str = _opt(
            "--reward",
            help="GRPO: a task's reward (blocksworld, maze) or module:function.",
        ),
        weights: str = _opt("--weights", help="GRPO: lora or full.", default_of="weights"),
        prompts_per_step: int = _opt(
            "--prompts-per-step", help="GRPO: prompts a step.", default_of="prompts_per_step"
        ),
        num_generations: int = _opt(
            "--num-generations",
            help="GRPO: completions per prompt (the group).",
            default_of="num_generations",
        ),
        max_completion_length: int = _opt(
            "--max-completion-length",
            help="GRPO: tokens sampled per completion.",
            default_of="max_completion_length",
        ),
        temperature: float = _opt(
            "--temperature", help="GRPO: sampling temperature.", default_of="temperature"
        ),
        beta: float = _opt(
            "--beta", help="GRPO: KL coefficient (0: no KL to the start model).", default_of="beta"
        ),
        epsilon: float = _opt("--epsilon", help="GRPO: clipping range.", default_of="epsilon"),
        loss_type: str = _opt(
            "--loss-type", help="GRPO: dapo, grpo, dr_grpo or bnpo.", default_of="loss_type"
        ),
        scale_rewards: str = _opt(
            "--scale-rewards", help="GRPO: group, batch or none.", default_of="scale_rewards"
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace a different run in --out."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Fine-tune a model (LoRA or full) on prompt/completion data; loss on the completion only.
        --method grpo: reinforcement learning on a task's prompts, rewarded by its verifier.

        OUT gets: config.yaml, checkpoints/, train_log.jsonl, loss.png (GRPO: reward.png),
        results.json, summary.md, and model/ (a full checkpoint; LoRA also keeps adapter/).

        Re-running the same command resumes from the last checkpoint. See docs/training.md.
        """
        from rich.console import Console

        from reasonlens.parallel import launched_rank, refuse_fsdp_on_cpus
        from reasonlens.runs import check_out
        from reasonlens.train import build_config, train
        from reasonlens.train.config import check_lora_targets

        check_out(out)  # a bad --out fails first, before anything is read or written
        refuse_fsdp_on_cpus()

        overrides = {k: v for k, v in locals().items() if k in _D}
        if overrides.get("data") is not None:
            overrides["data"] = [str(p) for p in overrides["data"]]
        cfg = build_config(config, overrides)
        check_lora_targets(cfg)  # an unknown module name fails here, not deep inside peft
        if cfg.method == "grpo":
            from reasonlens.train.grpo import check_grpo

            check_grpo(cfg)  # the data's task, its verifier and the reward, before any write
        result = train(cfg, out, overwrite=overwrite, progress=not quiet)
        if launched_rank() != 0:  # under accelerate launch: one summary, from rank 0
            return
        r = result.results
        if cfg.method == "grpo":
            first, last = r.get("reward_first_fifth"), r.get("reward_last_fifth")
            shown = "n/a" if first is None else f"{first:.3f} -> {last:.3f}"
            Console(stderr=True).print(
                f"{r['steps']} GRPO steps, reward {shown} (first -> last fifth), "
                f"zero-variance groups {r.get('zero_variance_share') or 0:.0%} -> "
                f"{result.model_dir}"
            )
            return
        loss = "n/a" if r.get("final_loss") is None else f"{r['final_loss']:.4f}"
        Console(stderr=True).print(
            f"{r['steps']} steps, final loss {loss}, padding {r['padding_fraction']:.1%}, "
            f"{r['tokens_per_second']:.0f} tokens/s -> {result.model_dir}"
        )

    @app.command("train-merge")
    def merge_cmd(
        adapter: Path = typer.Argument(..., help="A LoRA adapter directory (e.g. RUN/adapter)."),
        out: Path = typer.Option(..., "--out", "-o", help="Directory for the merged model."),
        base: str = typer.Option(
            None, "--base", help="Base model (default: the one the adapter records)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out."),
    ) -> None:
        """Merge a LoRA adapter into its base model: a full checkpoint load_model can read."""
        from rich.console import Console

        _check_adapter(adapter)  # before --base is asked for: say what ADAPTER really is

        from reasonlens.train import merge_adapter

        path = merge_adapter(adapter, base=base, out=out, overwrite=overwrite)
        Console(stderr=True).print(f"merged {adapter} -> {path}")


def _check_adapter(adapter: Path) -> None:
    """A missing, non-directory or non-adapter ADAPTER fails saying which."""
    import json

    example = "e.g. RUN/adapter of a LoRA training run"
    if not adapter.exists():
        raise UserError(f"adapter directory not found: {adapter} ({example})")
    if not adapter.is_dir():
        raise UserError(f"{adapter} is a file, not a LoRA adapter directory ({example})")
    config = adapter / "adapter_config.json"
    if not config.is_file():
        inner = adapter / "adapter" / "adapter_config.json"
        hint = f"did you mean {adapter / 'adapter'}?" if inner.is_file() else example
        raise UserError(f"{adapter} is not a LoRA adapter: it has no adapter_config.json ({hint})")
    try:
        record = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise UserError(f"{config} is corrupt (not a JSON object); save the adapter again")
