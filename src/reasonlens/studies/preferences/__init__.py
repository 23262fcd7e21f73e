"""The preferences study (Plunkett et al. 2025, "Self-Interpretability"): instil a
five-attribute preference per scenario by fine-tuning, recover it from the model's decisions
by logistic regression (and from logit(A) - logit(B)), ask the model to report it, train it to
report it on half the scenarios and test on the other half and on its native preferences;
the untrained model is the control throughout."""

from __future__ import annotations

from reasonlens.studies.base import Settings, Study
from reasonlens.studies.preferences.presets import PRESETS, study_config


def _config(settings: Settings) -> dict:
    from reasonlens.studies.preferences.presets import preset

    return study_config(preset(settings.preset), settings.model, settings.seed)


def _stages(settings: Settings):
    from reasonlens.studies.preferences.stages import stages

    return stages(settings)


def _results(settings: Settings, stages: dict, timings: dict) -> dict:
    from reasonlens.studies.preferences.results import study_results

    return study_results(settings, stages, timings)


def _report(run, results: dict, stages: dict) -> None:
    from reasonlens.studies.preferences.report import write_preferences_report

    write_preferences_report(run, results)


def _check(settings: Settings) -> None:
    from reasonlens.studies.preferences.checks import check_settings

    check_settings(settings)


STUDY = Study(
    name="preferences",
    title="Preferences (Plunkett et al. 2025, Self-Interpretability)",
    summary="Instil 5-attribute preferences by fine-tuning, recover them by logistic "
    "regression, ask the model to report them (experiments 1-3, untrained control).",
    presets=PRESETS,
    default_preset="quick",
    config=_config,
    stages=_stages,
    results=_results,
    report=_report,
    check=_check,
)
