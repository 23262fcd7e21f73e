"""The planning study (Men et al., EMNLP 2024): does a model fine-tuned on Blocksworld plan
ahead? Data -> fine-tune -> evaluate base and fine-tuned -> extraction, flow, probes and
history masking on the problems it solves -> a report beside the paper's figures."""

from __future__ import annotations

from reasonlens.studies.base import Settings, Study, lazy
from reasonlens.studies.planning.presets import PRESETS, PlanningPreset, design


def _design(p: PlanningPreset, settings: Settings) -> dict:
    return design(p, settings.seed)


STUDY = Study(
    name="planning",
    title="Planning (Men et al., EMNLP 2024)",
    summary="Blocksworld: does a fine-tuned model plan ahead? Extraction, flow, probes, masking.",
    presets=PRESETS,
    default_preset="quick",
    design=_design,
    stages=lazy("reasonlens.studies.planning.stages:stages"),
    results=lazy("reasonlens.studies.planning.results:study_results"),
    report=lazy("reasonlens.studies.planning.report:planning_report"),
)
