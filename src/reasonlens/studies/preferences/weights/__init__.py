"""Preference analyses (Plunkett et al. 2025, "Self-Interpretability"): recover the weights
behind a model's choices by one logistic regression per scenario, score them against the
target weights, score the choices against the target choice, and score the model's
self-reports against the weights it acts on.

A study that makes its own decisions calls :func:`recover_weights` (or
:func:`analyse_preferences` on :class:`Inputs` for everything) and :func:`self_report`.
"""

from reasonlens.studies.preferences.weights.analysis import (
    Inputs,
    PreferenceAnalysis,
    analyse_preferences,
    load_inputs,
    summary_markdown,
    write_analysis,
)
from reasonlens.studies.preferences.weights.metrics import (
    Agreement,
    Correlation,
    choice_agreement,
    paired_correlation,
    per_attribute_correlation,
    pooled_correlation,
    sign_agreement,
)
from reasonlens.studies.preferences.weights.recovery import (
    REGRESSIONS,
    Recovery,
    ScenarioFit,
    differences,
    fit_scenario,
    recover_weights,
    rescale,
    separation,
)
from reasonlens.studies.preferences.weights.reports import SelfReport, mean_reports, self_report
from reasonlens.tasks.preferences.replies import parse_choice, parse_report
from reasonlens.tasks.preferences.scenarios import target_choice, utility

__all__ = [
    "REGRESSIONS",
    "Agreement",
    "Correlation",
    "Inputs",
    "PreferenceAnalysis",
    "Recovery",
    "ScenarioFit",
    "SelfReport",
    "analyse_preferences",
    "choice_agreement",
    "differences",
    "fit_scenario",
    "load_inputs",
    "mean_reports",
    "parse_choice",
    "parse_report",
    "per_attribute_correlation",
    "paired_correlation",
    "pooled_correlation",
    "sign_agreement",
    "recover_weights",
    "rescale",
    "self_report",
    "separation",
    "summary_markdown",
    "target_choice",
    "utility",
    "write_analysis",
]
