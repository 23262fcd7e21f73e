"""An RL-trained and a distilled model built from one base (after seed 004: QwQ-32B vs
R1-Distill-Qwen-32B, both from Qwen2.5-32B): same base, same prompts, same number of training
problems, one variable. The distilled arm learns the task's teacher solutions by SFT; the RL
arm learns from the task's verifier by GRPO; both start from the same SFT warm-up on a disjoint
set when the preset declares one. Every model is evaluated on the same held-out problems.

`reasonlens pair --task maze|blocksworld --model NAME --out DIR`; DIR/pair.json says which
model is which (DIR/distilled and DIR/rl are training runs that load as models)."""

from __future__ import annotations

from reasonlens.studies.base import Settings, Study, StudyOption, lazy
from reasonlens.studies.pair.presets import PRESETS, TASKS, PairPreset

OPTIONS = (StudyOption("task", f"The task: {' or '.join(TASKS)}.", default="maze"),)


def _design(p: PairPreset, settings: Settings) -> dict:
    task = settings.option("task")
    return {"task": task, "design": p.tasks[task].design()}


def _check(settings: Settings) -> None:
    from reasonlens.errors import one_of

    if settings.option("task") not in TASKS:
        raise one_of("task", settings.option("task"), TASKS)


def _results(p: PairPreset, settings: Settings, stages: dict) -> dict:
    from reasonlens.studies.kit import train_summary

    trained = [s for s in ("warmup", "distilled", "rl") if s in stages]
    return {
        "task": settings.option("task"),
        "problems": stages["data"]["counts"],
        "training": {s: train_summary(stages[s]) for s in trained},
        "eval": stages["eval"],
    }


STUDY = Study(
    name="pair",
    title="RL-trained vs distilled pair",
    summary="one base model, two arms: SFT on teacher solutions, GRPO on the verifier",
    presets=PRESETS,
    default_preset="quick",
    design=_design,
    stages=lazy("reasonlens.studies.pair.stages:stages"),
    results=_results,
    report=lazy("reasonlens.studies.pair.report:pair_report"),
    check=_check,
    options=OPTIONS,
    recorded_options=lambda s: {"task": s.option("task")},
)
