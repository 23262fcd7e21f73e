"""Studies: compositions of task -> model -> train -> evaluate -> trace -> analyse -> report.

The registry maps a study's name to the module that defines it (`STUDY`); a study module
imports no torch at module level, so listing studies and their presets is instant.
"""

from __future__ import annotations

import importlib

from reasonlens.errors import one_of
from reasonlens.studies.base import Settings, Study, render_report, run_study

_MODULES = {
    "planning": "reasonlens.studies.planning",
    "preferences": "reasonlens.studies.preferences",
    "backtracking": "reasonlens.studies.backtracking",
    "directions": "reasonlens.studies.directions",
}


def study_names() -> list[str]:
    return list(_MODULES)


def get_study(name: str) -> Study:
    if name not in _MODULES:
        raise one_of("study", name, _MODULES)
    return importlib.import_module(_MODULES[name]).STUDY


__all__ = ["Settings", "Study", "get_study", "render_report", "run_study", "study_names"]
