"""The planning study (Men et al., EMNLP 2024): does a model fine-tuned on Blocksworld plan
ahead? Data -> fine-tune -> evaluate base and fine-tuned -> extraction, flow, probes and
history masking on the problems it solves -> a report beside the paper's figures."""

from __future__ import annotations

from reasonlens.studies.base import Settings, Study, lazy
from reasonlens.studies.planning.presets import PRESETS, study_config


def _config(settings: Settings) -> dict:
    from reasonlens.studies.planning.presets import preset

    return study_config(preset(settings.preset), settings.model, settings.seed)


def _report(run, results: dict, stages: dict) -> None:
    from reasonlens.studies.planning.report import write_planning_summary

    analyses = {k: v for k, v in stages["analyses"].items() if k != "analysis_set"}
    write_planning_summary(run, results, analyses)


STUDY = Study(
    name="planning",
    title="Planning (Men et al., EMNLP 2024)",
    summary="Blocksworld: does a fine-tuned model plan ahead? Extraction, flow, probes, masking.",
    presets=PRESETS,
    default_preset="quick",
    config=_config,
    stages=lazy("reasonlens.studies.planning.stages:stages"),
    results=lazy("reasonlens.studies.planning.results:study_results"),
    report=_report,
)
