"""The directions study (seed 004; spec C): where a reasoning direction lives in one or two
models, and what steering or ablating it does, each effect beside its controls.

Per model: the difference in means between reasoning prompts and matched controls (same
question, "give the final answer" vs "give the first number") at every layer; a
difference-in-means probe and the logit lens per layer; the layer chosen on validation
prompts by its effect (Arditi et al.'s rule); steering over doses chosen by their KL on
validation prompts, scored by the checker, beside random directions of equal norm and the
shuffled-label direction; directional ablation; layer ablation over windows of layers; activation
patching of the last token from each reasoning run into its control run. With two models
(``--models A B`` or ``--pair DIR``): CKA per layer pair, the cosine of their directions per
layer, and transfer of each model's direction to the other; a pair adds the model both arms
started from, and how far each arm's direction moved from it."""

from __future__ import annotations

from pathlib import Path

from reasonlens.studies.base import Settings, Study, StudyOption, lazy
from reasonlens.studies.directions.presets import PRESETS, DirectionsPreset

OPTIONS = (
    StudyOption("models", "One or two models, comma-separated (A,B): two add the comparison."),
    StudyOption("pair", "A pair directory made by `reasonlens pair` (distilled vs RL)."),
    StudyOption(
        "prompts",
        "Your own prompts: JSONL of {question, answer} (GSM8K '#### N' answers read); the "
        "control asks for the question's first number.",
    ),
    StudyOption(
        "contrast",
        "The built-in contrast set: arithmetic (word problems), maze (the room after the start "
        "vs the start) or blocksworld (the block an optimal plan picks up first vs the top of "
        "the first pile); default: a --pair's task, else arithmetic.",
    ),
    StudyOption("layers", "Candidate layers: a range (8-20) or a list (4,8,12)."),
    StudyOption(
        "chains",
        "Your annotated chains (Ward et al.'s all_annotated_chains.json layout, or JSONL of "
        "{id, text, spans, problem}): the backtracking direction from their spans, steered on "
        "their held-out problems and scored by 'Wait'/'Hmm' per 100 words.",
    ),
    StudyOption(
        "behaviour",
        "backtracking: also the backtracking direction from maze search traces, steered and "
        "scored by the maze checker (on by default with a --pair built on the maze task).",
    ),
)


def _design(p: DirectionsPreset, settings: Settings) -> dict:
    return {"design": p.to_dict()}


def _check(settings: Settings) -> None:
    """Everything refusable before a file is written: the models, the pair, the prompts, the
    layers (checked against each model's depth)."""
    from reasonlens.errors import UserError
    from reasonlens.models.loading import check_model, layer_count
    from reasonlens.studies.directions.stages import (
        behaviour_of,
        models_of,
        parse_layers,
        split_items,
    )

    p = PRESETS[settings.preset]
    for o in OPTIONS:  # an empty value would silently mean "not given"
        value = settings.option(o.name)
        if isinstance(value, str) and not value.strip():
            raise UserError(f"--{o.name} is empty: give a value, or leave --{o.name} out")
    if settings.option("pair") and settings.option("models"):
        raise UserError("give --pair or --models, not both")
    models = models_of(settings)
    for source, _ in models:
        check_model(source)
    if p.needs_layers and not settings.option("layers"):
        raise UserError(f"preset {settings.preset} needs --layers (e.g. --layers 8-20)")
    if settings.option("layers"):
        for source, _ in models:
            n = layer_count(source)
            if n is not None:
                parse_layers(settings.option("layers"), n)
    split_items(settings, p)  # a bad --prompts file is refused here
    behaviour_of(settings)  # a bad --behaviour is refused here
    chains = settings.option("chains")
    if chains:  # a bad chains file is refused here, read with each model's tokenizer
        from reasonlens.models import load_tokenizer
        from reasonlens.studies.directions.behaviour import chains_data

        if not Path(chains).is_file():
            raise UserError(f"--chains {chains}: no such file")
        for source, _ in models:
            chains_data(load_tokenizer(source), chains, settings.seed)


def _results(p: DirectionsPreset, settings: Settings, stages: dict) -> dict:
    from reasonlens.studies.directions.stages import ROLES, models_of

    prompts = stages["prompts"]
    return {
        "models": [{"source": s, "label": label} for s, label in models_of(settings)],
        "prompts": {
            "source": prompts["source"],
            **{k: len(prompts[k]) for k in ("train", "val", "test")},
        },
        "per_model": {r: stages[r] for r in ROLES if r in stages},
        "comparison": stages.get("compare"),
    }


STUDY = Study(
    name="directions",
    title="Reasoning directions (seed 004; Arditi et al. 2024, Ward et al. 2025)",
    summary="Difference-in-means reasoning directions per layer, chosen by effect, read out by "
    "probe and logit lens, steered and ablated beside random and shuffled-label controls; with "
    "two models, CKA, direction cosines and transfer.",
    presets=PRESETS,
    default_preset="quick_test",
    design=_design,
    stages=lazy("reasonlens.studies.directions.stages:stages"),
    results=_results,
    report=lazy("reasonlens.studies.directions.report:directions_report"),
    check=_check,
    options=OPTIONS,
)
