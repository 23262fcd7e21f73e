"""The planning study's stages: Blocksworld data -> fine-tune -> evaluate base and fine-tuned
side by side -> the paper's analyses on test problems the fine-tuned model solves.

    OUT/
      data/                        Blocksworld files + manifest.json
      train/                       the fine-tuning run (model/ at the end)
      eval_base/, eval_finetuned/  evaluations before and after fine-tuning (`reasonlens eval`
                                   run directories)
      analyses/                    one JSON, per-problem file and plot per analysis
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from reasonlens.analyses.result import load_record
from reasonlens.runs import RunDir, Stage, read_state, read_state_lines, write_json
from reasonlens.studies.base import Settings
from reasonlens.studies.kit import (
    BASE,
    base_inputs,
    load_role,
    model_source,
    train_stage,
    weights_of,
)
from reasonlens.studies.planning import files
from reasonlens.studies.planning.presets import PlanningPreset
from reasonlens.tasks.blocksworld import read_examples
from reasonlens.tasks.blocksworld.dataset import MANIFEST
from reasonlens.tasks.blocksworld.task import BlocksworldTask

BLOCKSWORLD = BlocksworldTask()

log = logging.getLogger(__name__)

ANALYSES = ("extraction", "flow", "masking", "knockout", "probes")
CONTROLLED = ("extraction", "flow", "masking", "knockout")  # also run on the base model


def stages(p: PlanningPreset, settings: Settings) -> list[Stage]:
    data = p.dataset(settings.seed).to_dict()
    analysis = {
        "level": p.analysis_level,
        "blocks": p.analysis_blocks,
        "limits": p.limits.__dict__,
        "horizon_levels": list(p.horizon_levels),
    }
    # the base model's weights (stages that read it resume only on the same ones); the
    # fine-tuned weights are known once training ran: the later stages depend on them
    base = base_inputs(settings)
    finetuned = weights_of(finetuned_weights="train")
    evals = {"eval_per_cell": p.eval_per_cell, "batch_size": p.eval_batch_size}
    return [
        Stage("data", {"seed": settings.seed, "data": data}, _data_stage(p, settings), _data),
        train_stage(
            "train",
            p.train,
            settings,
            lambda upstream: upstream["data"]["train_files"],
            {"model": settings.model, **base, "seed": settings.seed, "train": p.train.__dict__},
        ),
        Stage("eval_base", {**evals, **base}, _eval_stage(p, settings, "base"), _evaluation),
        Stage(
            "eval_finetuned",
            evals,
            _eval_stage(p, settings, "finetuned"),
            _evaluation,
            depends=finetuned,
        ),
        Stage(
            "analyses",
            {"seed": settings.seed, "analysis": analysis, **base},
            _analyses_stage(p, settings),
            _analyses,
            depends=finetuned,
        ),
    ]


# data -------------------------------------------------------------------------------------


def _data_stage(p: PlanningPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.tasks.blocksworld.dataset import write_dataset

        log.info("generating Blocksworld data into %s", directory)
        write_dataset(p.dataset(settings.seed), directory)

    return run


def _data(directory: Path) -> dict[str, Any]:
    return {
        "directory": directory,
        "totals": read_state(directory / MANIFEST)["totals"],
        "train_files": sorted(str(f) for f in directory.glob("L*_train.jsonl")),
        "test_files": sorted(str(f) for f in directory.glob("L*_test.jsonl")),
    }


def _test_examples(data: dict) -> list:
    return [ex for f in data["test_files"] for ex in read_examples(f)]


# train ------------------------------------------------------------------------------------


# evaluate ---------------------------------------------------------------------------------


def _eval_stage(p: PlanningPreset, settings: Settings, label: str):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.evaluate.task_eval import evaluate_task, write_eval

        role = BASE if label == "base" else "train"
        source = model_source(role, settings, upstream)
        test_files = upstream["data"]["test_files"]
        config = {
            "model": source,
            "data": test_files,
            "mode": "both",
            "batch_size": p.eval_batch_size,
            "limit": None,
            "per_cell": p.eval_per_cell,
            "max_new_tokens": None,
            "device": settings.device or "auto",
            "dtype": "auto",
        }
        eval_run = RunDir.create(directory, "eval", config)
        test = _per_cell(_test_examples(upstream["data"]), p.eval_per_cell)
        loaded = load_role(role, settings, upstream)
        result = evaluate_task(
            loaded,
            BLOCKSWORLD,
            test,
            mode="both",
            batch_size=p.eval_batch_size,
            progress=settings.progress,
        )
        write_eval(result, eval_run)

    return run


def _evaluation(directory: Path) -> dict:
    from reasonlens.evaluate.task_eval import summarise

    results = read_state(directory / "results.json")
    cells: dict[str, list[dict]] = {}
    for record in read_state_lines(directory / "examples.jsonl"):
        cells.setdefault(f"L{record['level']}/{record['n_blocks']}", []).append(record)
    results["by_cell"] = {
        key: summarise(records, BLOCKSWORLD.metrics) for key, records in sorted(cells.items())
    }
    return results


def _per_cell(examples: list, limit: int | None) -> list:
    """The first `limit` examples of each (level, blocks) cell, in file order."""
    if limit is None:
        return examples
    seen: dict[tuple[int, int], int] = {}
    kept = []
    for ex in examples:
        cell = (ex.level, ex.n_blocks)
        if seen.get(cell, 0) < limit:
            seen[cell] = seen.get(cell, 0) + 1
            kept.append(ex)
    return kept


# analyses ---------------------------------------------------------------------------------


def _analyses_stage(p: PlanningPreset, settings: Settings):
    def run(directory: Path, upstream: dict) -> None:
        from reasonlens.studies.planning.analyses import (
            run_all,
            run_horizons,
            run_mechanisms,
            select_analysis_set,
            solved_cache,
        )

        test = _test_examples(upstream["data"])
        directory.mkdir(parents=True, exist_ok=True)
        model = load_role("train", settings, upstream, "fine-tuned")
        candidates = [
            ex
            for ex in test
            if ex.level == p.analysis_level
            and (p.analysis_blocks is None or ex.n_blocks == p.analysis_blocks)
        ]
        items, counts = select_analysis_set(
            model,
            candidates,
            p.limits.analysis_set,
            settings.seed,
            cache=solved_cache(directory, candidates),
        )
        log.info("analysis set: %s", counts)
        index: dict[str, Any] = {"analysis_set": counts}
        if items:
            palette = p.dataset(settings.seed).colors
            run_all(model, items, directory, p.limits, palette, settings.seed, settings.progress)
            # the control: the base model on the same problems, the same positions
            base = load_role(BASE, settings, upstream, "before fine-tuning")
            run_mechanisms(base, items, directory / files.CONTROL, p.limits, settings.progress)
            del base
            if p.horizon_levels:
                index["horizons"] = run_horizons(
                    p, model, test, directory, palette, settings.seed, settings.progress
                )
        write_json(directory / files.INDEX, index)

    return run


def _analyses(directory: Path) -> dict[str, Any]:
    """Every analysis's full result, the analysis-set counts and the horizons."""
    index = read_state(directory / files.INDEX)
    out = {"analysis_set": index["analysis_set"]}
    for name in ANALYSES:
        record = load_record(directory, name)
        if record is not None:
            out[name] = record
    if "horizons" in index:
        out["horizons"] = index["horizons"]
    control = {name: load_record(directory / files.CONTROL, name) for name in CONTROLLED}
    out["control"] = {k: v for k, v in control.items() if v is not None}
    return out
