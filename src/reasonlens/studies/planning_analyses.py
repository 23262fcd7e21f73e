"""The paper's analyses, run on the planning study's analysis set.

The analysis set is the test problems of one level the fine-tuned model solves under teacher
forcing (the paper: 400 correctly solved L3 6-block problems). Each analysis writes
`analyses/<name>.json` and a plot; an analysis whose JSON is already there is not run again.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.models import LoadedModel
from reasonlens.runs import atomic_write
from reasonlens.studies import planning_positions as pos
from reasonlens.tasks.blocksworld import Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisLimits:
    """How many analysis-set problems each analysis uses (None: all); flow and masking cost
    several passes per problem, so a CPU preset runs them on fewer."""

    analysis_set: int = 400
    extraction: int | None = None
    flow: int | None = None
    masking: int | None = None
    probes: int | None = None
    probe_layer_stride: int = 4  # the paper plots layers 0, 4, 8, ...


def select_analysis_set(
    model: LoadedModel, examples: Sequence[Example], n: int, seed: int, batch_size: int = 16
) -> tuple[list[pos.Item], dict[str, int]]:
    """Problems the model solves under teacher forcing, up to `n`, in a seeded random order.

    Where an answer is several tokens (not with the built-in models' tokenizers, a tested
    property of the palettes), the analyses read its first token.
    """
    from reasonlens.evaluate.teacher_forcing import score_blanks

    items = pos.encode_items(model.tokenizer, examples)
    verdicts = score_blanks(model, [it.encoded for it in items], batch_size=batch_size)
    solved = [it for it, v in zip(items, verdicts, strict=True) if all(b.correct for b in v)]
    random.Random(seed).shuffle(solved)
    chosen = solved[:n]
    multi = sum(
        any(s.answer[1] - s.answer[0] > 1 for s in it.encoded.tokens.steps) for it in chosen
    )
    return chosen, {
        "candidates": len(items),
        "solved": len(solved),
        "chosen": len(chosen),
        "with_multi_token_answers": multi,  # analyses then use the answer's first token
    }


def _cached(path: Path, compute: Callable[[], dict]) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    start = time.perf_counter()
    result = compute()
    result["seconds"] = time.perf_counter() - start
    atomic_write(path, json.dumps(result, indent=1) + "\n")
    return result


def run_extraction(model: LoadedModel, items: list[pos.Item], out: Path, progress: bool) -> dict:
    from reasonlens.analyses.extraction import extraction_rates, plot_extraction

    def compute() -> dict:
        ids = [it.input_ids for it in items]
        reads = [pos.readouts(it) for it in items]
        raw = extraction_rates(model, ids, reads, final_norm=False, progress=progress)
        lens = extraction_rates(model, ids, reads, final_norm=True, progress=progress)
        plot_extraction(raw, out / "extraction_rate.png", f"Extraction rate, {model.name}")
        plot_extraction(
            lens, out / "extraction_rate_logit_lens.png", f"Logit lens (final norm), {model.name}"
        )
        return {"raw": raw.to_dict(), "logit_lens": lens.to_dict(), "n_examples": len(items)}

    return _cached(out / "extraction.json", compute)


def run_flow(model: LoadedModel, items: list[pos.Item], out: Path, progress: bool) -> dict:
    from reasonlens.analyses.flow import information_flow, plot_flow

    def compute() -> dict:
        n_steps = max(it.n_steps for it in items)
        result = information_flow(
            model,
            [it.input_ids for it in items],
            [pos.targets(it) for it in items],
            [pos.flow_chunks(it) for it in items],
            order=pos.flow_order(n_steps),
            progress=progress,
        )
        plot_flow(
            result,
            out / "information_flow.png",
            step_labels=[f"step {t + 1}" for t in range(n_steps)],
            title=f"Information flow into the last token, {model.name}",
        )
        return {**result.to_dict(), "n_examples": len(items)}

    return _cached(out / "flow.json", compute)


def run_masking(model: LoadedModel, items: list[pos.Item], out: Path, progress: bool) -> dict:
    from reasonlens.analyses.masking import masking_impact, plot_impact

    def compute() -> dict:
        result = masking_impact(
            model,
            [it.input_ids for it in items],
            [pos.targets(it) for it in items],
            [pos.history_groups(it) for it in items],
            progress=progress,
        )
        plot_impact(
            result,
            out / "history_intervention.png",
            title=f"History intervention: impact of unmasking one step, {model.name}",
        )
        return {**result.to_dict(), "n_examples": len(items)}

    return _cached(out / "masking.json", compute)


def run_all(
    model: LoadedModel,
    items: list[pos.Item],
    out: Path,
    limits: AnalysisLimits,
    progress: bool = True,
) -> dict[str, Any]:
    """Every analysis on (a prefix of) the analysis set; results keyed by analysis."""
    out.mkdir(parents=True, exist_ok=True)

    def first(n: int | None) -> list[pos.Item]:
        return items if n is None else items[:n]

    results: dict[str, Any] = {}
    for name, runner, n in (
        ("extraction", run_extraction, limits.extraction),
        ("flow", run_flow, limits.flow),
        ("masking", run_masking, limits.masking),
    ):
        log.info("analysis %s on %d problems", name, len(first(n)))
        results[name] = runner(model, first(n), out, progress)
    return results
