"""`reasonlens pair`: an RL-trained and a distilled model from one base, evaluated side by
side (see reasonlens.studies.pair)."""

from __future__ import annotations

from pathlib import Path

import typer

from reasonlens.commands.models import DeviceOpt, ModelOpt, ProcessesOpt


def register(app: typer.Typer) -> None:
    @app.command("pair")
    def pair_cmd(
        task: str = typer.Option(..., "--task", help="maze or blocksworld."),
        model: str = ModelOpt,
        out: Path = typer.Option(..., "--out", "-o", help="The pair's directory."),
        preset: str = typer.Option(
            "quick", help="quick (a 2-core CPU, 30 min), cpu (an hour) or full (a GPU)."
        ),
        seed: int = typer.Option(0, help="Seed for data, training and evaluation."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different run."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        device: str = DeviceOpt,
        processes: int = ProcessesOpt,
    ) -> None:
        """Build an RL-trained vs distilled pair from one base model, on one task.

        Stages: data (warm-up, training and held-out problems, disjoint), warm-up (SFT, when
        the preset declares one, shared by both arms), distilled (SFT on the teacher's
        solutions), rl (GRPO on the same prompts), eval (every model on the held-out problems,
        with 95% CIs). OUT/pair.json says which model is which: OUT/distilled and OUT/rl load
        as models. Re-running resumes.
        """
        from rich.console import Console

        from reasonlens.parallel import check_processes, refuse_launch
        from reasonlens.runs import check_out
        from reasonlens.studies import Settings
        from reasonlens.studies.base import finish_study, open_study
        from reasonlens.studies.pair import STUDY

        check_out(out)
        refuse_launch("pair")
        settings = Settings(
            preset=preset,
            model=model,
            seed=seed,
            device=None if device == "auto" else device,
            progress=not quiet,
            processes=check_processes(processes),
            options={"task": task},
        )
        runner = open_study(STUDY, settings, out, overwrite=overwrite)  # refusals write nothing
        console = Console(stderr=True)
        console.print(f"pair ({task}), preset {preset!r}, model {model!r} -> {out}")
        finish_study(STUDY, settings, runner)
        console.print((out / "summary.md").read_text())
