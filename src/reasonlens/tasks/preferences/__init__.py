"""The preferences task (Plunkett et al. 2025, "Self-Interpretability"): choice scenarios with
five numeric attributes, target weights, decisions and self-reports, in the original release's
file layouts (which this project uses as its own). Pure Python, no torch."""

from reasonlens.tasks.preferences.release import (
    Decision,
    Report,
    read_decisions,
    read_regression_results,
    read_reports,
    read_weights,
    release_file,
    write_decisions,
    write_reports,
    write_weights,
)
from reasonlens.tasks.preferences.replies import parse_choice, parse_report
from reasonlens.tasks.preferences.scenarios import (
    N_ATTRIBUTES,
    Attribute,
    Scenario,
    load_scenarios,
    write_scenarios_json,
)

__all__ = [
    "N_ATTRIBUTES",
    "Attribute",
    "Decision",
    "Report",
    "Scenario",
    "load_scenarios",
    "parse_choice",
    "parse_report",
    "read_decisions",
    "read_regression_results",
    "read_reports",
    "read_weights",
    "release_file",
    "write_decisions",
    "write_reports",
    "write_scenarios_json",
    "write_weights",
]
