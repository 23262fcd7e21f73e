"""What the planning study's results.json holds: the stages' results, with each analysis
reduced to its headline figures (the full results stay in analyses/NAME.json)."""

from __future__ import annotations

from typing import Any

from reasonlens.studies.base import Settings
from reasonlens.studies.planning.presets import PlanningPreset


def study_results(p: PlanningPreset, settings: Settings, stages: dict[str, Any]) -> dict:
    analyses = dict(stages["analyses"])
    return {
        "data": stages["data"]["totals"],
        "train": stages["train"]["results"],
        "eval": {label: stages[f"eval_{label}"] for label in ("base", "finetuned")},
        "analysis_set": analyses.pop("analysis_set"),
        "analyses": {k: _headline(k, v) for k, v in analyses.items() if k != "control"},
        "control": {k: _headline(k, v) for k, v in analyses.get("control", {}).items()},
    }


def _headline(name: str, result: dict) -> dict:
    """What results.json keeps of an analysis (the full result is in analyses/NAME.json)."""
    keep = (
        "n_examples",
        "seconds",
        "chunks",
        "normalized",
        "impact",
        "future_matrix_linear",
        "future_matrix_mlp",
        "analysis_sets",
    )
    if name == "extraction":
        return {k: result["raw"][k] for k in ("mean", "std", "components")} | {
            "n_examples": result["n_examples"],
            "seconds": result["seconds"],
        }
    return {k: v for k, v in result.items() if k in keep}
