"""The backtracking study's stages.

Generated chains (the default)::

    OUT/
      data/          train.jsonl (maze-search traces), test.jsonl (fresh mazes), manifest.json
      train/         fine-tuning on the traces (a `reasonlens train` run; model/)
      sample/        samples.jsonl: one chain per test maze, sampled from the fine-tuned model
      chains/        labels.jsonl (input_ids + 0/1 labels per token), checks.jsonl, summary.json
      activations/   finetuned/, base/ and random/ (the same architecture with random
                     weights): activation stores of every chain token
      analysis/      lag probes and controls: analysis.json, CSV tables, plots, probes

With ``--chains FILE`` the model is probed on the user's chains as it is: ``chains`` labels the
file, ``activations`` holds ``model/`` and ``random/``, and there is no untrained control.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from reasonlens.runs import Stage, read_state, write_json
from reasonlens.studies.backtracking.presets import BacktrackingPreset, probed_layers
from reasonlens.studies.base import Settings
from reasonlens.studies.kit import BASE, base_inputs, load_role, train_stage, weights_of

log = logging.getLogger(__name__)

DEFAULT_LABEL = "backtracking"
DEFAULT_TEMPLATE = "chat"


def chains_file(settings: Settings) -> str | None:
    """The --chains path (None: generate chains); an empty one is a UserError."""
    from reasonlens.errors import UserError

    value = settings.option("chains")
    if value is not None and not str(value).strip():
        raise UserError("--chains is empty: give the path of a chains file")
    return None if value is None else str(value)


def chosen_layers(settings: Settings) -> list[int] | None:
    """The layers given with --layers ("0,7,14"), sorted and distinct; None when not given.
    Anything but non-negative integers is a UserError."""
    from reasonlens.errors import UserError

    value = settings.option("layers")
    if value is None:
        return None
    try:
        layers = sorted({int(x) for x in str(value).split(",") if x.strip()})
    except ValueError:
        raise UserError(
            f"--layers {value!r}: give layer numbers separated by commas, e.g. 0,7,14"
        ) from None
    if not layers or layers[0] < 0:
        raise UserError(f"--layers {value!r}: give non-negative layer numbers, e.g. 0,7,14")
    return layers


def stages(p: BacktrackingPreset, settings: Settings) -> list[Stage]:
    base = base_inputs(settings)
    finetuned = weights_of(finetuned_weights="train")
    model = {"model": settings.model, **base}
    layers = chosen_layers(settings)
    probes = {
        "lags": list(p.lags),
        "n_layers": p.n_layers,
        "layers": layers,
        "bag_k": p.bag_k,
        "bootstrap": p.bootstrap,
        "seed": settings.seed,
        "measures": ["all", "onset"],
        "null_permutations": p.null_permutations,
    }
    external = chains_file(settings)
    if external is not None:
        return [
            Stage(
                "chains", {**model, **external_inputs(settings)}, _file_stage(p, settings), _chains
            ),
            Stage(
                "activations",
                {
                    **model,
                    "batch_size": p.capture_batch,
                    "layers": layers,
                    "stores": ["model", "random"],
                },
                _capture_stage(p, settings, ("model", "random")),
                _stores,
            ),
            Stage("analysis", {**probes, **base}, _analysis_stage(p, settings), _analysis),
        ]
    design = {"seed": settings.seed, **p.design()}
    sampling = {
        "temperature": p.temperature,
        "max_new_tokens": p.max_new_tokens,
        "batch_size": p.sample_batch,
        "seed": settings.seed,
    }
    return [
        Stage("data", design, _data_stage(p, settings), _data),
        train_stage(
            "train",
            p.train,
            settings,
            lambda upstream: [upstream["data"]["train_file"]],
            {**model, "seed": settings.seed, "train": p.to_dict()["train"]},
        ),
        Stage("sample", sampling, _sample_stage(p, settings), _samples, depends=finetuned),
        Stage(
            "chains",
            {"label": DEFAULT_LABEL, "min_tokens": max(abs(k) for k in p.lags)},
            _label_stage(p, settings),
            _chains,
        ),
        Stage(
            "activations",
            {**base, "batch_size": p.capture_batch, "layers": layers, "stores": list(_GENERATED)},
            _capture_stage(p, settings, _GENERATED),
            _stores,
            depends=finetuned,
        ),
        Stage(
            "analysis",
            {**probes, **base},
            _analysis_stage(p, settings),
            _analysis,
            depends=finetuned,
        ),
    ]


def external_inputs(settings: Settings) -> dict[str, Any]:
    """What a run on a user's chains depends on: the file's content, the label, the template.
    A report re-rendered from a run's files takes the recorded hash (the file may be gone)."""
    from reasonlens.runs.files import file_sha256

    path = Path(chains_file(settings) or "")
    return {
        "chains": str(path),
        "chains_sha256": settings.option("chains_sha256") or file_sha256(path),
        "label": text_option(settings, "label", DEFAULT_LABEL),
        "template": text_option(settings, "template", DEFAULT_TEMPLATE),
    }


def text_option(settings: Settings, name: str, default: str) -> str:
    """--NAME as given, `default` when not given; an empty one is a UserError (it would
    otherwise pass silently as the default)."""
    from reasonlens.errors import UserError

    value = settings.option(name)
    if value is None:
        return default
    if not str(value).strip():
        raise UserError(f"--{name} is empty: give a value, or leave --{name} out for {default!r}")
    return str(value)


# data and training ---------------------------------------------------------------------


def _data_stage(p: BacktrackingPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.tasks.backtracking import (
            TraceConfig,
            check_trace,
            generate_split,
            summarize,
            to_record,
            write_records,
        )

        train, test = generate_split(
            p.n_train, p.n_chains, settings.seed, TraceConfig(rooms=p.rooms)
        )
        directory.mkdir(parents=True, exist_ok=True)
        write_records(
            directory / "train.jsonl",
            [to_record(t, f"train-{i}", "train") for i, t in enumerate(train)],
        )
        write_records(
            directory / "test.jsonl",
            [to_record(t, f"test-{i}", "test") for i, t in enumerate(test)],
        )
        gold = summarize([check_trace(t.maze, t.text) for t in train])
        write_json(
            directory / "manifest.json",
            {"train": len(train), "test": len(test), "gold_train": gold},
        )

    return run


def _data(directory: Path) -> dict[str, Any]:
    from reasonlens.studies.backtracking.chains import read_jsonl

    return {
        "directory": directory,
        "manifest": read_state(directory / "manifest.json"),
        "train_file": str(directory / "train.jsonl"),
        "test": read_jsonl(directory / "test.jsonl"),
    }


# chains ----------------------------------------------------------------------------------


def _sample_stage(p: BacktrackingPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.studies.backtracking.chains import SAMPLES, sample_chains
        from reasonlens.tasks.backtracking import write_records

        model = load_role("train", settings, upstream)
        samples = sample_chains(
            model,
            upstream["data"]["test"],
            p.temperature,
            p.max_new_tokens,
            p.sample_batch,
            settings.seed,
            settings.progress,
        )
        directory.mkdir(parents=True, exist_ok=True)
        write_records(directory / SAMPLES, samples)

    return run


def _samples(directory: Path) -> list[dict]:
    from reasonlens.studies.backtracking.chains import SAMPLES, read_jsonl

    return read_jsonl(directory / SAMPLES)


def _label_stage(p: BacktrackingPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.errors import UserError
        from reasonlens.models import load_tokenizer
        from reasonlens.studies.backtracking.chains import label_samples, write_chains

        tokenizer = load_tokenizer(settings.model)
        rows, checks, summary = label_samples(
            tokenizer, upstream["sample"], DEFAULT_LABEL, max(abs(k) for k in p.lags)
        )
        write_chains(directory, rows, summary, checks)
        log.info(
            "chains: %d sampled, %d labelled and used, %d unlabelable, %d too short",
            summary["chains"],
            summary["used"],
            summary["unlabelable"],
            summary["too_short"],
        )
        if len(rows) < 10:
            raise UserError(
                f"only {len(rows)} of {summary['chains']} sampled chains could be labelled "
                f"(see {directory / 'checks.jsonl'}): too few to probe; the fine-tuned model "
                "does not write the trace language yet (train longer, or a larger preset)"
            )

    return run


def _file_stage(p: BacktrackingPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.models import load_tokenizer
        from reasonlens.studies.backtracking.chains import label_file, write_chains

        inputs = external_inputs(settings)
        rows, summary = label_file(
            load_tokenizer(settings.model),
            inputs["chains"],
            inputs["label"],
            inputs["template"],
            max(abs(k) for k in p.lags),
        )
        write_chains(directory, rows, summary)

    return run


def _chains(directory: Path) -> dict[str, Any]:
    from reasonlens.studies.backtracking.chains import LABELS, SUMMARY
    from reasonlens.tasks.backtracking import read_labels

    return {"rows": read_labels(directory / LABELS), "summary": read_state(directory / SUMMARY)}


# activations and analysis ------------------------------------------------------------------


def _sites(p: BacktrackingPreset, n_layers: int, settings: Settings) -> tuple[list[int], list[str]]:
    layers = chosen_layers(settings) or probed_layers(n_layers, p.n_layers)
    return layers, [f"layers.{layer}.resid_post" for layer in layers]


#: the stores' names and the roles of the models they capture ("random": the base model's
#: architecture with random weights, see `_load`)
_ROLES = {"finetuned": "train", "base": BASE, "model": BASE}
_GENERATED = ("finetuned", "base", "random")
#: what the analysis calls each store
_FITS = {"finetuned": "probes", "model": "probes", "base": "untrained", "random": "random"}


def _load(name: str, settings: Settings, upstream: dict):
    """The model a store captures: by role, or for ``"random"`` the architecture of the
    given model with weights drawn from the run's seed."""
    if name == "random":
        from reasonlens.models import load_random_model

        return load_random_model(settings.model, seed=settings.seed, device=settings.device)
    return load_role(_ROLES[name], settings, upstream)


def _capture_stage(p: BacktrackingPreset, settings: Settings, which: tuple[str, ...]):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.trace import TraceInput, capture

        rows = upstream["chains"]["rows"]
        inputs = [TraceInput(input_ids=tuple(r.input_ids)) for r in rows]
        directory.mkdir(parents=True, exist_ok=True)
        for name in which:
            model = _load(name, settings, upstream)
            layers, sites = _sites(p, model.n_layers, settings)
            capture(
                model,
                inputs,
                sites,
                positions="all",
                batch_size=p.capture_batch,
                out=directory / name,
                progress=settings.progress,
            )
            del model
        write_json(
            directory / "index.json", {"stores": list(which), "layers": layers, "sites": sites}
        )

    return run


def _stores(directory: Path) -> dict[str, Any]:
    from reasonlens.trace import ActivationStore

    index = read_state(directory / "index.json")
    return {
        "stores": {name: ActivationStore(directory / name) for name in index["stores"]},
        "layers": index["layers"],
        "sites": index["sites"],
    }


def _analysis_stage(p: BacktrackingPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.analyses.lag_probes import LagProbeConfig
        from reasonlens.studies.backtracking.analysis import analyse_chains

        acts = upstream["activations"]
        stores = acts["stores"]
        main = "model" if "model" in stores else "finetuned"
        named = {_FITS[name]: store for name, store in stores.items()}
        model = load_role(BASE if main == "model" else "train", settings, upstream, device="cpu")
        embedding = model.hf.get_input_embeddings().weight.detach().float().clone()
        config = LagProbeConfig(
            lags=p.lags, bootstrap=p.bootstrap, seed=settings.seed, device=settings.device
        )
        analyse_chains(
            upstream["chains"]["rows"],
            named,
            acts["sites"],
            acts["layers"],
            embedding,
            model.tokenizer,
            config,
            p.bag_k,
            directory,
            p.null_permutations,
            settings.progress,
        )

    return run


def _analysis(directory: Path) -> dict[str, Any]:
    from reasonlens.studies.backtracking.analysis import ANALYSIS

    return read_state(directory / ANALYSIS)
