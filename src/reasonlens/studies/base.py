"""What every study is made of, and the one way to run one.

A :class:`Study` declares its name, its typed presets, the config it records, its stages, how
its stage results become `results.json`, and its report. :func:`run_study` runs it: checks the
inputs before anything is written, opens (or resumes) the run directory through the stage
runner, and writes results and report; :func:`render_report` re-renders a finished run's
report from its files without recomputing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reasonlens.errors import UserError, one_of
from reasonlens.report.builder import Report
from reasonlens.runs import RunDir, Stage, StageRunner, holding, open_staged_run, read_run


class Preset(Protocol):
    name: str
    description: str


def lazy(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` as a function that imports its module on the first call:
    a study module names its stages, results and report this way and imports no torch when
    studies are listed."""
    module, _, name = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    call.__qualname__ = target
    return call


@dataclass(frozen=True)
class StudyOption:
    """An option only one study has (``study NAME --OPTION``), beyond preset, model and seed.

    ``name`` is its Python name (``chains`` gives ``--chains``); ``default`` None means unset.
    The study records the options it used in its config (key ``options``), so a report
    re-rendered from the files sees the same values."""

    name: str
    help: str
    default: Any = None
    type: type = str


@dataclass(frozen=True)
class Settings:
    """What the user chose for one run of a study."""

    preset: str
    model: str
    seed: int = 0
    device: str | None = None
    progress: bool = True
    # the model's weights fingerprint, filled in by check_settings: stages that use the model
    # resume only on the same weights (None when re-rendering a report: nothing runs)
    model_weights: str | None = None
    # the study's own options (Study.options), by name; unset ones hold their defaults
    options: Mapping[str, Any] = field(default_factory=dict)
    # processes each training stage is launched across (accelerate launch; 1: in this one)
    processes: int = 1

    def option(self, name: str) -> Any:
        return self.options.get(name)


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    summary: str
    presets: Mapping[str, Preset]
    default_preset: str
    # the study's own settings, recorded in config.yaml after the header every study has
    # (study, preset, model, seed) and before its options
    design: Callable[[Any, Settings], dict]
    # the stages, from the resolved preset
    stages: Callable[[Any, Settings], list[Stage]]
    # results.json beyond its header (preset, model, seed) and `timings_s`
    results: Callable[[Any, Settings, dict[str, Any]], dict]
    # the report's declaration (rendered by report.builder)
    report: Callable[[RunDir, dict, dict[str, Any]], Report]
    # checks of the settings beyond preset, model and device (e.g. what the tokenizer must
    # do), run before anything is written; raises UserError
    check: Callable[[Settings], None] | None = None
    options: tuple[StudyOption, ...] = ()
    # how the options are recorded in the config (default: the ones set, as given)
    recorded_options: Callable[[Settings], dict] | None = None

    @property
    def kind(self) -> str:
        return f"study-{self.name}"

    def preset(self, name: str) -> Preset:
        if name not in self.presets:
            raise one_of(f"{self.name} preset", name, self.presets)
        return self.presets[name]

    def config(self, settings: Settings) -> dict:
        """The resolved configuration a run records: the header, the design, the options."""
        header = {
            "study": self.name,
            "preset": settings.preset,
            "model": settings.model,
            "seed": settings.seed,
        }
        config = {**header, **self.design(self.preset(settings.preset), settings)}
        if self.options:
            config["options"] = self.options_config(settings)
        return config

    def options_config(self, settings: Settings) -> dict:
        """The study options a run records (by default the ones set, as given)."""
        if self.recorded_options is not None:
            return self.recorded_options(settings)
        return {k: v for k, v in settings.options.items() if v is not None}

    def stage_list(self, settings: Settings) -> list[Stage]:
        return self.stages(self.preset(settings.preset), settings)

    def run_results(
        self, settings: Settings, stages: dict[str, Any], timings: dict[str, float]
    ) -> dict:
        """results.json: the header, the study's results, the seconds each stage took."""
        header = {"preset": settings.preset, "model": settings.model, "seed": settings.seed}
        body = self.results(self.preset(settings.preset), settings, stages)
        return {**header, **body, "timings_s": timings}

    def default_out(self, settings: Settings) -> Path:
        return Path("runs") / f"{self.name}-{settings.preset}-{Path(settings.model).name}"


def check_settings(study: Study, settings: Settings) -> Settings:
    """Refuse a wrong preset, model or device before anything is written; returns the
    settings with the model's weights fingerprint."""
    import dataclasses

    from reasonlens.models.fingerprint import weights_fingerprint
    from reasonlens.models.loading import check_model, pick_device

    study.preset(settings.preset)
    pick_device(settings.device)  # cheap: before a model is converted
    weights = weights_fingerprint(check_model(settings.model).path)
    if study.check is not None:
        study.check(settings)
    return dataclasses.replace(settings, model_weights=weights)


def open_study(
    study: Study, settings: Settings, out: str | Path, overwrite: bool = False
) -> StageRunner:
    """Check the settings and open (or reopen) the run directory; every refusal happens
    here, before any stage runs."""
    settings = check_settings(study, settings)
    return open_staged_run(
        out, study.kind, study.config(settings), study.stage_list(settings), overwrite=overwrite
    )


def run_study(
    study: Study, settings: Settings, out: str | Path, overwrite: bool = False
) -> dict[str, Any]:
    """Run (or resume) `study` into `out`; returns its results."""
    return finish_study(study, settings, open_study(study, settings, out, overwrite))


def finish_study(study: Study, settings: Settings, runner: StageRunner) -> dict[str, Any]:
    """Run the stages not yet finished, then write results and report."""
    import logging

    handler = runner.run.log_to_file()
    runner.announce = settings.progress
    try:
        stage_results = runner.execute()
    finally:
        logging.getLogger("reasonlens").removeHandler(handler)
        handler.close()
    return _finish(study, settings, runner, stage_results)


def _finish(study: Study, settings: Settings, runner: StageRunner, stage_results: dict) -> dict:
    from reasonlens.report.builder import Provenance, write
    from reasonlens.runs import RUN_FILE, read_json

    results = study.run_results(settings, stage_results, runner.timings())
    runner.run.write_json("results.json", results)
    declared = study.report(runner.run, results, stage_results)
    training = {
        s.name: stage_results[s.name]["results"]
        for s in runner.stages
        if s.kind == "train" and s.name in stage_results
    }
    provenance = Provenance(
        stages=[s.folder for s in runner.stages],
        training=training,
        record=read_json(runner.run.file(RUN_FILE)),
        results=results,
    )
    write(declared, runner.run.path, provenance)
    return results


def trained(directory: Path) -> dict[str, Any]:
    """A finished fine-tuning stage's result: its directory, its `results.json`, and the
    trained weights' fingerprint (the stages after it resume only on the same weights)."""
    from reasonlens.models.fingerprint import weights_fingerprint
    from reasonlens.runs import read_state

    return {
        "directory": directory,
        "results": read_state(directory / "results.json"),
        "model_weights": weights_fingerprint(directory / "model"),
    }


def settings_of(run: RunDir) -> Settings:
    from reasonlens.runs.files import DAMAGED

    config = run.config
    missing = [k for k in ("preset", "model", "seed") if k not in config]
    if missing:
        raise UserError(f"{run.file('run.json')}: its config has no {missing[0]!r}; {DAMAGED}")
    return Settings(
        preset=config["preset"],
        model=config["model"],
        seed=config["seed"],
        options=dict(config.get("options") or {}),
    )


def render_report(path: str | Path) -> tuple[Study, RunDir]:
    """Re-render the report of a finished study run from its files (no model is loaded)."""
    from reasonlens.studies import get_study

    path = Path(path)
    record = read_run(path)
    if record is None:
        raise UserError(f"{path} is not a reasonlens run directory (no readable run.json)")
    kind = str(record.get("kind", ""))
    if not kind.startswith("study-"):
        raise UserError(f"{path} is a {kind!r} run, not a study: only studies have reports")
    study = get_study(kind.removeprefix("study-"))
    with holding(path):  # no other process writes the run while its report is rewritten
        run = RunDir.open(path, study.kind)
        settings = settings_of(run)
        runner = StageRunner(run, study.stage_list(settings))
        _finish(study, settings, runner, runner.load_finished())
    return study, run
