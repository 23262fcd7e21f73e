"""What a training run leaves for people: the loss curve (PNG) and a short Markdown summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_loss(records: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Training loss against optimizer step; None when nothing was logged."""
    points = [(r["step"], r["loss"]) for r in records if "loss" in r]
    if not points:
        return None
    from reasonlens.plots import new_figure, save_figure

    steps, losses = zip(*points, strict=True)
    fig = new_figure(figsize=(6, 3.5), dpi=120)
    ax = fig.subplots()
    ax.plot(steps, losses, marker="." if len(steps) < 60 else None, linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def summary_markdown(config: dict[str, Any], results: dict[str, Any]) -> str:
    """A few lines saying what was trained, on what, how fast, and where the model is."""
    method = config["method"]
    lines = [
        f"# Fine-tuning ({method})",
        "",
        f"- model: `{config['model']}`",
        f"- data: {results['examples']} examples from "
        + ", ".join(f"`{Path(p).name}`" for p in config["data"]),
        f"- steps: {results['steps']} ({results['epochs']:.2f} epochs), batch "
        f"{config['batch_size']} x {config['gradient_accumulation']} accumulation, "
        f"lr {config['learning_rate']:g} ({config['lr_scheduler']})",
        f"- final loss: {_num(results['final_loss'])} "
        f"(first logged: {_num(results['first_loss'])})",
        f"- trained tokens: {results['trained_tokens']:,} "
        f"(completion tokens with loss: {results['completion_tokens_per_epoch']:,} per epoch)",
        f"- padding: {results['padding_fraction']:.1%} of computed positions",
        f"- speed: {results['tokens_per_second']:.0f} tokens/s over "
        f"{results['train_seconds']:.1f} s on {results['device']} ({results['precision']})",
    ]
    if results.get("resumed_from_step"):
        lines.append(f"- resumed from the checkpoint at step {results['resumed_from_step']}")
    lines += ["", f"Model: `{results['model_dir']}`"]
    if results.get("adapter_dir"):
        lines.append(f"Adapter: `{results['adapter_dir']}` (merged into the model above)")
    lines += ["", "![training loss](loss.png)", ""]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
