"""The preferences study's stages.

    OUT/
      data/                  scenarios, targets, trials, training files (see .data)
      instil/                fine-tuning on the decisions (a `reasonlens train` run; model/)
      decide_base/           the untrained model's decisions: test.csv, native.csv
      decide_instilled/      the instilled model's decisions: val.csv, test.csv, native.csv
      reports_base/          self-reports of the untrained model: instilled.csv, and the same
                             read from the logits (constrained choice): instilled_scored.csv
      reports_instilled/     ... of the instilled model: instilled.csv, native.csv
      introspect/            introspection training from the instilled model (model/)
      reports_introspected/  ... of the introspection-trained model: instilled.csv, native.csv
      analysis/              recovered weights, correlations, plots (see .analysis)

Decisions are in the release's selections layout with ``logit_diff``, so
`reasonlens preferences analyse --scenarios data/scenarios.json --targets data/targets.csv
--decisions decide_instilled/test.csv` reads them; reports are raw replies, parsed strictly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from reasonlens.runs import Stage, read_state, write_json
from reasonlens.studies.base import Settings
from reasonlens.studies.kit import BASE, base_inputs, load_role, train_stage, weights_of
from reasonlens.studies.preferences.data import StudyData, make_data, read_data
from reasonlens.studies.preferences.presets import PreferencesPreset
from reasonlens.studies.preferences.readout import SCORED, SCORED_GRID
from reasonlens.tasks.preferences.release import (
    read_decisions,
    read_reports,
    write_decisions,
    write_parsed_reports,
    write_reports,
)

log = logging.getLogger(__name__)

#: On which scenarios each model reports.
REPORTS = {"base": ("instilled",), "instilled": ("instilled", "native")}
REPORTS["introspected"] = ("instilled", "native")


def decides(p: PreferencesPreset, which: str) -> tuple[str, ...]:
    """Which trials a model decides: the untrained model the test trials (and the native
    ones), the instilled model the validation, test and native trials."""
    if which == "base":
        return ("test", "native") if p.base_native else ("test",)
    return ("val", "test", "native") if p.read_val else ("test", "native")


def stages(p: PreferencesPreset, settings: Settings) -> list[Stage]:
    base = base_inputs(settings)
    model = {"model": settings.model, **base}
    instil, introspect = (
        weights_of(instil_weights="instil"),
        weights_of(introspect_weights="introspect"),
    )
    readout = {"batch_size": p.batch_size}
    splits = {
        which: {**readout, "splits": list(decides(p, which))} for which in ("base", "instilled")
    }
    reports = {
        "batch_size": p.batch_size,
        "report_tokens": p.report_tokens,
        "scored_grid": list(SCORED_GRID) if p.scored_reports else None,
    }
    data = {"seed": settings.seed, "design": p.design(), **model}
    return [
        Stage("data", data, _data_stage(p, settings), read_data),
        train_stage(
            "instil",
            p.instil,
            settings,
            lambda upstream: [str(upstream["data"].file("train.jsonl"))],
            {
                **model,
                "seed": settings.seed,
                "recipe": p.instil.to_dict(),
                "curve_every": p.curve_every,
            },
            callbacks=_curve(p, settings),
        ),
        Stage(
            "decide_base",
            {**splits["base"], **base},
            _decide_stage(p, settings, "base"),
            _decisions,
        ),
        Stage(
            "decide_instilled",
            splits["instilled"],
            _decide_stage(p, settings, "instilled"),
            _decisions,
            depends=instil,
        ),
        Stage("reports_base", {**reports, **base}, _reports_stage(p, settings, "base"), _reports),
        Stage(
            "reports_instilled",
            reports,
            _reports_stage(p, settings, "instilled"),
            _reports,
            depends=instil,
        ),
        train_stage(
            "introspect",
            p.introspect,
            settings,
            lambda upstream: [str(upstream["data"].file("introspect.jsonl"))],
            {"seed": settings.seed, "recipe": p.introspect.to_dict()},
            start="instil",
            depends=instil,
        ),
        Stage(
            "reports_introspected",
            reports,
            _reports_stage(p, settings, "introspected"),
            _reports,
            depends=introspect,
        ),
        Stage(
            "analysis",
            {"seed": settings.seed, "regression": p.regression, "n_boot": p.n_boot},
            _analysis_stage(p, settings),
            _analysis,
            depends=weights_of(instil_weights="instil", introspect_weights="introspect"),
        ),
    ]


# data -------------------------------------------------------------------------------------


def _data_stage(p: PreferencesPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.models import load_tokenizer

        tokenizer = load_tokenizer(settings.model)
        make_data(p, settings.seed, tokenizer, directory)

    return run


# training ---------------------------------------------------------------------------------


def _curve(p: PreferencesPreset, settings: Settings):
    """With `curve_every`, the validation trials are read along the way (see .curve); None
    without it (the training stage then needs no callback and can be launched)."""

    def callbacks(directory: Path, upstream: dict) -> list:
        data = upstream["data"]
        if not p.curve_every or not data.trials["val"]:
            return []
        return [_validation_curve(settings, data, directory, p.curve_every)]

    return callbacks if p.curve_every else None


def _validation_curve(settings: Settings, data: StudyData, directory: Path, every: int):
    from reasonlens.models import load_tokenizer
    from reasonlens.studies.preferences.curve import CURVE_FILE
    from reasonlens.studies.preferences.curve_callback import ValidationCurve

    return ValidationCurve(
        load_tokenizer(settings.model),
        data.subset(data.instilled),
        {n: data.targets[n] for n in data.instilled},
        data.trials["val"],
        directory / CURVE_FILE,
        every,
    )


#: The read-out's number format, on every device: in bf16 the two letters' logits often tie
#: exactly (measured on SmolLM2: about half the trials of a model with no preference), which
#: zeroes the logit difference and hands greedy decoding "A", the first of the tied tokens.
READOUT_DTYPE = "float32"


def _load(settings: Settings, which: str, upstream: dict):
    if which == "base":
        return load_role(BASE, settings, upstream, "untrained", dtype=READOUT_DTYPE)
    stage = "instil" if which == "instilled" else "introspect"
    return load_role(stage, settings, upstream, which, dtype=READOUT_DTYPE)


# decisions --------------------------------------------------------------------------------


def _decide_stage(p: PreferencesPreset, settings: Settings, which: str):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.studies.preferences.readout import decide

        data: StudyData = upstream["data"]
        model = _load(settings, which, upstream)
        directory.mkdir(parents=True, exist_ok=True)
        for split in decides(p, which):
            decisions = decide(
                model, data.scenarios, data.trials[split], which, p.batch_size, settings.progress
            )
            write_decisions(directory / f"{split}.csv", decisions)
            log.info("%s: %d decisions on %s trials", which, len(decisions), split)
        write_json(directory / "index.json", {"splits": list(decides(p, which))})

    return run


def _decisions(directory: Path) -> dict[str, Any]:
    scenarios = read_data(directory.parent / "data").scenarios
    splits = read_state(directory / "index.json")["splits"]
    return {s: read_decisions(directory / f"{s}.csv", scenarios) for s in splits}


# self-reports -----------------------------------------------------------------------------


def _reports_stage(p: PreferencesPreset, settings: Settings, which: str):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.studies.preferences.readout import ask_reports, score_reports

        data: StudyData = upstream["data"]
        model = _load(settings, which, upstream)
        directory.mkdir(parents=True, exist_ok=True)
        for part in REPORTS[which]:
            names = set(data.instilled if part == "instilled" else data.native)
            trials = [t for t in data.trials["report"] if t.scenario in names]
            reports = ask_reports(
                model,
                data.scenarios,
                trials,
                Path(settings.model).name,
                which,
                p.batch_size,
                p.report_tokens,
                settings.progress,
            )
            write_reports(directory / f"{part}.csv", reports)
            bad = sum(r.weights is None for r in reports)
            log.info("%s: %d self-reports on %s scenarios, %d bad", which, len(reports), part, bad)
            if p.scored_reports:
                scored = score_reports(
                    model,
                    data.scenarios,
                    trials,
                    Path(settings.model).name,
                    which,
                    progress=settings.progress,
                )
                write_parsed_reports(directory / f"{part}{SCORED}.csv", scored)
        write_json(
            directory / "index.json",
            {"parts": list(REPORTS[which]), "scored": p.scored_reports},
        )

    return run


def _reports(directory: Path) -> dict[str, Any]:
    scenarios = read_data(directory.parent / "data").scenarios
    index = read_state(directory / "index.json")
    parts = index["parts"]
    files = [*parts, *(f"{s}{SCORED}" for s in parts if index.get("scored", True))]
    return {s: read_reports(directory / f"{s}.csv", scenarios) for s in files}


# analysis ---------------------------------------------------------------------------------


def _analysis_stage(p: PreferencesPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.studies.preferences.analysis import analyse_study

        analyse_study(p, settings.seed, upstream, directory)

    return run


def _analysis(directory: Path) -> dict[str, Any]:
    return read_state(directory / "analysis.json")
