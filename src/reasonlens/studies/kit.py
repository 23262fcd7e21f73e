"""The stages every study is wired from: fine-tune a model, name a model by its role, capture
activations, run an analysis. A study's `stages.py` composes these with its own science.

Roles: ``"base"`` is the model the user gave (`--model`); the name of a training stage is the
model that stage trained (the later stages depend on its weights' fingerprint, so they resume
only on the same weights); anything else is a path or model name taken as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reasonlens.runs import Stage
from reasonlens.studies.base import Settings, trained

BASE = "base"


def base_inputs(settings: Settings) -> dict[str, str]:
    """The inputs of a stage that reads the base model: its weights' fingerprint (none when
    re-rendering a report, where nothing runs)."""
    return {"model_weights": settings.model_weights} if settings.model_weights else {}


def weights_of(**stages: str) -> Callable[[dict[str, Any]], dict[str, str]]:
    """`Stage.depends` for a stage that reads the models training stages made: each keyword
    names the recorded key, its value the training stage (``finetuned_weights="train"``)."""

    def depends(upstream: dict[str, Any]) -> dict[str, str]:
        return {key: upstream[stage]["model_weights"] for key, stage in stages.items()}

    return depends


def model_source(role: str, settings: Settings, upstream: dict[str, Any]) -> str:
    """What `load_model` takes for a model named by its role."""
    if role == BASE:
        return settings.model
    if role in upstream and isinstance(upstream[role], Mapping) and "directory" in upstream[role]:
        return str(upstream[role]["directory"])
    return role


def load_role(
    role: str,
    settings: Settings,
    upstream: dict[str, Any],
    label: str | None = None,
    **options: Any,
):
    """The model for `role`, loaded on the study's device (or `options`' ``device``, with
    any other `load_model` option); `label` names it in plots (a reader knows the model's
    name, not the training run's directory)."""
    from reasonlens.models import load_model

    options.setdefault("device", settings.device)
    model = load_model(model_source(role, settings, upstream), **options)
    if label is not None:
        model.name = f"{Path(settings.model).name} ({label})"
    return model


#: What results.json keeps of a training stage (its own results.json has everything).
TRAIN_KEYS = (
    "method",
    "examples",
    "steps",
    "epochs",
    "train_seconds",
    "tokens_per_second",
    "completion_tokens_per_epoch",
    "first_loss",
    "final_loss",
    "trainable_parameters",
    "device",
    "precision",
)


def train_summary(stage: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a finished training stage (:func:`trained`'s result)."""
    return {k: stage["results"].get(k) for k in TRAIN_KEYS}


def train_stage(
    name: str,
    recipe: Any,
    settings: Settings,
    files: Callable[[dict[str, Any]], list[str]],
    inputs: Mapping[str, Any],
    start: str = BASE,
    callbacks: Callable[[Path, dict[str, Any]], list] | None = None,
    depends: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
) -> Stage:
    """Fine-tune the model of role `start` on `files(upstream)` with `recipe` (anything with
    ``.config(model, data, seed, device) -> TrainConfig`` and a ``batch_size``); the stage's
    result is :func:`trained` (directory, results, the weights' fingerprint). With
    ``settings.processes`` > 1 the run is launched across that many processes (the same
    global batch), and the stage's inputs record how many."""

    processes = settings.processes
    if processes > 1:  # refused here, when the study is opened, before anything is written
        from reasonlens.errors import UserError
        from reasonlens.train.launch import split_batch

        split_batch(recipe.batch_size, processes, f"the {name} stage's batch")
        if callbacks is not None:
            raise UserError(
                f"the {name} stage measures the model from inside its trainer, which runs in "
                "this one process: drop --processes"
            )
        inputs = {**inputs, "processes": processes}

    def run(directory: Path, upstream: dict[str, Any]) -> None:
        from reasonlens.train import train
        from reasonlens.train.launch import train_launched

        config = recipe.config(
            model_source(start, settings, upstream), files(upstream), settings.seed, settings.device
        )
        if processes > 1:
            train_launched(config, directory, processes, progress=settings.progress)
            return
        extra = callbacks(directory, upstream) if callbacks else []
        train(config, directory, progress=settings.progress, callbacks=extra)

    return Stage(name, inputs, run, trained, depends=depends, kind="train")


def analysis_stage(
    name: str,
    inputs: Mapping[str, Any],
    compute: Callable[[Path, dict[str, Any]], Any],
    load: Callable[[Path], Any] | None = None,
    depends: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
    directory: str = "",
) -> Stage:
    """An analysis: `compute(directory, upstream)` returns a result implementing the result
    protocol (``to_dict``; ``per_example`` optionally) or a plain record, saved with
    :func:`reasonlens.analyses.result.save_result` under the stage's name; the stage's result
    is the saved record (or `load(directory)`)."""

    def run(folder: Path, upstream: dict[str, Any]) -> None:
        from reasonlens.analyses.result import save_result

        folder.mkdir(parents=True, exist_ok=True)
        result = compute(folder, upstream)
        record = result.to_dict() if hasattr(result, "to_dict") else result
        per_example = result.per_example() if hasattr(result, "per_example") else None
        save_result(folder, name, record, per_example)

    def read(folder: Path) -> Any:
        from reasonlens.analyses.result import load_record

        return load_record(folder, name)

    return Stage(name, inputs, run, load or read, directory=directory, depends=depends)
