"""`reasonlens study NAME`, `reasonlens study list` and `reasonlens report RUN`, from the study
registry: a new study gets its command by being registered."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from reasonlens.commands.models import DeviceOpt, ModelOpt, ProcessesOpt


def _study_command(app: typer.Typer, name: str) -> None:
    from reasonlens.studies import get_study

    study = get_study(name)
    presets = ", ".join(f"{p.name}" for p in study.presets.values())

    def command(
        preset: str = typer.Option(
            study.default_preset, help=f"One of: {presets} (see `reasonlens study list`)."
        ),
        model: str = ModelOpt,
        out: Path = typer.Option(
            None, "--out", "-o", help=f"Run directory (default: runs/{name}-PRESET-MODEL)."
        ),
        seed: int = typer.Option(0, help="Seed for data, training and analyses."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different run."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
        device: str = DeviceOpt,
        processes: int = ProcessesOpt,
        **options,
    ) -> None:
        from rich.console import Console

        from reasonlens.parallel import check_processes, refuse_launch
        from reasonlens.runs import check_out
        from reasonlens.studies import Settings
        from reasonlens.studies.base import finish_study, open_study

        check_out(out)  # a bad --out fails first, before anything is read or written
        refuse_launch(name)

        settings = Settings(
            preset=preset,
            model=model,
            seed=seed,
            device=None if device == "auto" else device,
            progress=not quiet,
            processes=check_processes(processes),
            options=options,
        )
        target = out or study.default_out(settings)
        # a wrong preset, model, device or run directory is refused here, writing nothing
        runner = open_study(study, settings, target, overwrite=overwrite)
        console = Console(stderr=True)
        console.print(f"{name} study, preset {preset!r}, model {model!r} -> {target}")
        finish_study(study, settings, runner)
        console.print((target / "summary.md").read_text())

    _add_options(command, study.options)
    app.command(name, help=f"{study.title}: {study.summary}")(command)


def _add_options(command, options) -> None:
    """Give `command` one typer option per StudyOption, in place of its ``**options``: typer
    reads the signature, so each becomes ``--name`` with its help, type and default."""
    signature = inspect.signature(command)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = [
        inspect.Parameter(
            o.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(o.default, f"--{o.name.replace('_', '-')}", help=o.help),
            annotation=o.type,
        )
        for o in options
    ]
    command.__signature__ = signature.replace(parameters=fixed + extra)
    command.__annotations__ = {**command.__annotations__, **{o.name: o.type for o in options}}


def register(app: typer.Typer) -> None:
    from reasonlens.studies import study_names

    study = typer.Typer(help="Reproduce a published study end to end.", no_args_is_help=True)
    app.add_typer(study, name="study")

    @study.command("list")
    def list_studies() -> None:
        """Every study and its presets."""
        from rich.console import Console
        from rich.table import Table

        from reasonlens.studies import get_study

        table = Table("study", "preset", "what")
        for name in study_names():
            s = get_study(name)
            for i, p in enumerate(s.presets.values()):
                default = " (default)" if p.name == s.default_preset else ""
                table.add_row(name if i == 0 else "", p.name + default, p.description)
        Console().print(table)

    for name in study_names():
        _study_command(study, name)

    @app.command("report")
    def report(run: Path = typer.Argument(..., help="A finished study's run directory.")) -> None:
        """Re-render a finished study's report (report.md, report.html, summary.md) from its
        files, without recomputing anything."""
        from rich.console import Console

        from reasonlens.studies import render_report

        render_report(run)
        Console(stderr=True).print(f"report: {run / 'report.md'}, {run / 'report.html'}")
