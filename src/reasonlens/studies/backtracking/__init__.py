"""The backtracking study (after seed 003 and Ward et al. 2025): do a model's activations
anticipate backtracking, and how far ahead? Fine-tune on maze-search traces with exact labels,
sample fresh chains from the fine-tuned model, label where *it* backtracks with the checker,
and fit lag probes with the controls the seed lacked. The headline measures anticipation at
onsets (a span beginning in (t, t+lag], rows already inside a span left out), against a
permutation null and controls that see what the probe sees (the whole prefix's surface text, a
random-weights model and the untrained model on the same tokens); the seed's all-target grid
stays beside it. ``--chains FILE`` probes a model on a user's annotated chains instead."""

from __future__ import annotations

from pathlib import Path

from reasonlens.studies.backtracking.presets import PRESETS, BacktrackingPreset
from reasonlens.studies.base import Settings, Study, StudyOption, lazy

OPTIONS = (
    StudyOption(
        "chains",
        "Annotated chains to probe instead of generating them: a JSON list of {task_id, "
        'problem, reasoning_chain, annotated_chain} (inline ["label"]...["end-section"] '
        "markup) or JSONL of {id, text, spans: [{start, end, label}], problem}. The model is "
        "probed as it is (no fine-tuning).",
    ),
    StudyOption("label", "With --chains: the label to predict (default: backtracking)."),
    StudyOption(
        "layers",
        "Layers to probe, comma-separated (e.g. 0,7,14,22,29; default: the preset's number, "
        "evenly spaced over the model's depth).",
    ),
    StudyOption(
        "template",
        "With --chains: how the problem becomes the prompt in front of each chain: chat (the "
        "tokenizer's chat template, the default), raw, none, or a Jinja template or its file.",
    ),
)


def _design(p: BacktrackingPreset, settings: Settings) -> dict:
    return {"design": p.to_dict()}


def _options(settings: Settings) -> dict:
    """A chains file is recorded with what it resolved to (label, template, its digest)."""
    from reasonlens.studies.backtracking.stages import chains_file, chosen_layers, external_inputs

    options = external_inputs(settings) if chains_file(settings) else {}
    if chosen_layers(settings) is not None:
        options["layers"] = ",".join(str(x) for x in chosen_layers(settings))
    return options


def _check(settings: Settings) -> None:
    """A bad --chains file (or --label / --template without one) is refused before anything is
    written: the file is read and labelled with the model's tokenizer here."""
    from reasonlens.errors import UserError
    from reasonlens.studies.backtracking.stages import chains_file, chosen_layers, external_inputs

    layers = chosen_layers(settings)
    if layers is not None:
        from reasonlens.models.loading import layer_count

        n = layer_count(settings.model)
        bad = [x for x in layers if n is not None and not 0 <= x < n]
        if bad:
            raise UserError(
                f"--layers: layer {bad[0]} does not exist; {settings.model} has layers 0-{n - 1}"
            )
    path = chains_file(settings)
    if path is None:
        given = [f"--{n}" for n in ("label", "template") if settings.option(n) is not None]
        if given:
            raise UserError(f"{' and '.join(given)} apply to --chains only: give a chains file")
        return
    if Path(path).is_dir():
        raise UserError(f"--chains {path} is a directory: give a chains file (.json or .jsonl)")
    if not Path(path).is_file():
        raise UserError(f"chains file not found: {path}")
    from reasonlens.models import load_tokenizer
    from reasonlens.studies.backtracking.chains import label_file

    inputs = external_inputs(settings)
    label_file(
        load_tokenizer(settings.model),
        path,
        inputs["label"],
        inputs["template"],
        max(abs(k) for k in PRESETS[settings.preset].lags),
    )


STUDY = Study(
    name="backtracking",
    title="Backtracking (lag probes; seed 003, Ward et al. 2025)",
    summary="Fine-tune on maze-search traces, sample and label the model's own chains, and ask "
    "how many tokens ahead its activations anticipate the onset of a backtrack, beside a "
    "permutation null, the prefix's surface text, a random-weights and the untrained model.",
    presets=PRESETS,
    default_preset="quick",
    design=_design,
    stages=lazy("reasonlens.studies.backtracking.stages:stages"),
    results=lazy("reasonlens.studies.backtracking.report:study_results"),
    report=lazy("reasonlens.studies.backtracking.report:backtracking_report"),
    check=_check,
    options=OPTIONS,
    recorded_options=_options,
)
