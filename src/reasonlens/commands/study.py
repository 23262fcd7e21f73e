"""`reasonlens study planning`: a published study end to end, as one resumable command."""

from __future__ import annotations

from pathlib import Path

import typer

from reasonlens.commands.models import DeviceOpt, ModelOpt


def register(app: typer.Typer) -> None:
    study = typer.Typer(help="Reproduce a published study end to end.", no_args_is_help=True)
    app.add_typer(study, name="study")

    @study.command("planning")
    def planning(
        preset: str = typer.Option(
            "quick",
            help="quick (CPU, ~11 min), cpu (CPU, under an hour; enough solved problems for "
            "the report to compare with the paper), paper, horizons or full (GPU).",
        ),
        model: str = ModelOpt,
        out: Path = typer.Option(
            None, "--out", "-o", help="Run directory [default: runs/planning-PRESET-MODEL]."
        ),
        seed: int = typer.Option(0, help="Seed for data, training and analyses."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different run."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        device: str = DeviceOpt,
    ) -> None:
        """Blocksworld data -> fine-tune -> evaluate base and fine-tuned side by side."""
        from rich.console import Console

        from reasonlens.studies.planning import preset as get_preset
        from reasonlens.studies.planning import run_planning_study

        get_preset(preset)  # a wrong preset fails before anything is written
        target = out or Path("runs") / f"planning-{preset}-{Path(model).name}"
        console = Console(stderr=True)
        console.print(f"planning study, preset {preset!r}, model {model!r} -> {target}")
        run_planning_study(
            preset,
            model,
            target,
            seed=seed,
            overwrite=overwrite,
            progress=not quiet,
            device=None if device == "auto" else device,
        )
        console.print((target / "summary.md").read_text())
