"""The preferences study (Plunkett et al. 2025, "Self-Interpretability"): instil a
five-attribute preference per scenario by fine-tuning, recover it from the model's decisions
by logistic regression (and from logit(A) - logit(B)), ask the model to report it, train it to
report it on half the scenarios and test on the other half and on its native preferences;
the untrained model is the control throughout."""

from __future__ import annotations

from reasonlens.studies.base import Settings, Study, lazy
from reasonlens.studies.preferences.presets import PRESETS, PreferencesPreset, study_design


def _design(p: PreferencesPreset, settings: Settings) -> dict:
    return study_design(p)


STUDY = Study(
    name="preferences",
    title="Preferences (Plunkett et al. 2025, Self-Interpretability)",
    summary="Instil 5-attribute preferences by fine-tuning, recover them by logistic "
    "regression, ask the model to report them (experiments 1-3, untrained control).",
    presets=PRESETS,
    default_preset="quick",
    design=_design,
    stages=lazy("reasonlens.studies.preferences.stages:stages"),
    results=lazy("reasonlens.studies.preferences.results:study_results"),
    report=lazy("reasonlens.studies.preferences.report:preferences_report"),
    check=lazy("reasonlens.studies.preferences.checks:check_settings"),
)
