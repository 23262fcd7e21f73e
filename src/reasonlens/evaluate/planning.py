"""Blocksworld planning evaluation: free generation checked by the validator, and the paper's
teacher-forced S_step / S_plan.

The model sees ``example.prompt`` as plain text (no chat template; it ends with ``Plan:\\n``)
and should continue with ``example.completion``, the input contract training uses.

- ``generate``: batched greedy decoding (left padding, KV cache) until EOS, the end of the plan
  (:mod:`reasonlens.evaluate.plan_text`), or ``max_new_tokens``; the plan is then parsed, run
  and compared with the optimal planner and the gold plan.
- ``teacher-forced``: every blank predicted with the gold history
  (:mod:`reasonlens.evaluate.teacher_forcing`); S_step = share of blanks right, S_plan = share
  of plans with every blank right.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reasonlens.errors import UserError, one_of
from reasonlens.evaluate.alignment import EncodedExample, encode_example
from reasonlens.evaluate.generation import generate_tokens
from reasonlens.evaluate.plan_text import cut_plan, plan_finished
from reasonlens.evaluate.teacher_forcing import BlankResult, score_blanks
from reasonlens.models import LoadedModel
from reasonlens.progress import Progress
from reasonlens.runs import RunDir
from reasonlens.tasks.blocksworld import Example, PlanCheck, check_plan, read_examples

MODES = ("generate", "teacher-forced", "both")
VERDICTS = ("parsed", "legal", "goal_reached", "optimal", "exact_match")


@dataclass
class PlanningEval:
    """Scores of one model on a list of examples: totals, breakdowns, one dict per example."""

    model: dict
    mode: str
    totals: dict
    by_level: dict[str, dict]
    by_blocks: dict[str, dict]
    examples: list[dict]
    timings: dict
    settings: dict
    data_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """What ``results.json`` holds (everything but the per-example records)."""
        return {
            "model": self.model,
            "data": self.data_files,
            "mode": self.mode,
            "settings": self.settings,
            "totals": self.totals,
            "by_level": self.by_level,
            "by_blocks": self.by_blocks,
            "timings": self.timings,
        }


def default_max_new_tokens(encoded: Sequence[EncodedExample]) -> int:
    """Enough for the longest gold plan plus two more step lines, a newline and EOS.

    Two extra steps (one more block move) let a slightly longer plan be seen whole and judged
    non-optimal, rather than cut short and judged unparsed.
    """
    longest = max(len(e) - e.tokens.completion[0] for e in encoded)
    step = max(s.step[1] - s.step[0] + 1 for e in encoded for s in e.tokens.steps)
    return longest + 2 * step + 2


def evaluate_planning(
    model: LoadedModel,
    examples: list[Example],
    mode: str = "both",
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    progress: bool = True,
) -> PlanningEval:
    """Evaluate ``model`` on Blocksworld ``examples`` in ``mode`` (generate, teacher-forced,
    both); ``max_new_tokens`` defaults to :func:`default_max_new_tokens`."""
    if mode not in MODES:
        raise one_of("mode", mode, MODES)
    if not examples:
        raise UserError("no examples to evaluate")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    encoded = [encode_example(model.tokenizer, ex) for ex in examples]
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens(encoded)
    n_batches = -(-len(examples) // batch_size)
    do_gen, do_tf = mode in ("generate", "both"), mode in ("teacher-forced", "both")
    bar = Progress(progress, n_batches * (do_gen + do_tf), f"eval {model.name}", transient=True)
    timings: dict[str, float | int | None] = {}
    records = [_base_record(i, ex) for i, ex in enumerate(examples)]
    try:
        if do_gen:
            bar.label("generating")
            start = time.perf_counter()
            outputs = generate_tokens(
                model,
                [ex.prompt for ex in examples],
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                chat=False,
                stop=plan_finished,
                on_batch=lambda n: bar.advance(),
            )
            seconds = time.perf_counter() - start
            n_tokens = sum(len(ids) for ids in outputs)
            timings.update(
                generation_s=round(seconds, 3),
                generated_tokens=n_tokens,
                generation_tokens_per_s=round(n_tokens / seconds, 2) if seconds else None,
            )
            for rec, ex, ids in zip(records, examples, outputs, strict=True):
                raw = model.tokenizer.decode(ids, skip_special_tokens=True)
                plan = cut_plan(raw)
                rec.update(
                    raw_output=raw,
                    output=plan,
                    n_generated_tokens=len(ids),
                    verdicts=plan_verdicts(ex, plan).to_dict(),
                )
        if do_tf:
            bar.label("teacher forcing")
            start = time.perf_counter()
            blanks = score_blanks(model, encoded, batch_size, on_batch=lambda n: bar.advance())
            seconds = time.perf_counter() - start
            timings.update(
                teacher_forced_s=round(seconds, 3),
                teacher_forced_problems_per_s=(
                    round(len(examples) / seconds, 3) if seconds else None
                ),
            )
            for rec, res in zip(records, blanks, strict=True):
                rec["teacher_forced"] = _tf_record(res)
    finally:
        bar.close()
    return PlanningEval(
        model={
            "name": model.name,
            "source": model.source,
            "architecture": model.arch.name,
            "dtype": str(model.dtype).removeprefix("torch."),
            "device": str(model.device),
        },
        mode=mode,
        totals=summarise(records),
        by_level=_grouped(records, lambda r: f"L{r['level']}" if r["level"] else "odd"),
        by_blocks=_grouped(records, lambda r: str(r["n_blocks"])),
        examples=records,
        timings=timings,
        settings={
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens if do_gen else None,
            "chat_template": False,
            "decoding": "greedy" if do_gen else None,
            "stop": "EOS, the first line after the plan that is not a step line, or the limit"
            if do_gen
            else None,
        },
    )


def plan_verdicts(example: Example, plan_text: str) -> PlanCheck:
    """The validator's verdict on a generated plan; an empty output counts as unparsed."""
    check = check_plan(example.problem, plan_text, reference=example.plan)
    if check.exact_match is None:  # not parsed: it cannot equal the gold plan
        check.exact_match = False
    if not plan_text.strip():
        check.parsed, check.parse_error, check.n_steps = False, "the output has no plan", None
        check.legal = check.goal_reached = check.optimal = check.exact_match = False
    return check


def _base_record(index: int, ex: Example) -> dict:
    return {
        "id": ex.problem_id,
        "index": index,
        "level": ex.level,
        "n_blocks": ex.n_blocks,
        "n_steps": ex.n_steps,
        "prompt": ex.prompt,
        "gold": ex.completion,
    }


def _tf_record(blanks: list[BlankResult]) -> dict:
    return {
        "all_correct": all(b.correct for b in blanks),
        "n_correct": sum(b.correct for b in blanks),
        "steps": [b.to_dict() for b in blanks],
    }


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 6) if n else None


def summarise(records: Sequence[dict]) -> dict:
    """Rates over per-example records: generation verdicts, S_step, S_plan, per-step accuracy.

    A metric whose mode did not run is None.
    """
    out: dict = {"n": len(records)}
    generated = [r["verdicts"] for r in records if "verdicts" in r]
    for name in VERDICTS:
        out[name] = _rate(sum(bool(v[name]) for v in generated), len(generated))
    forced = [r["teacher_forced"] for r in records if "teacher_forced" in r]
    blanks = [b for tf in forced for b in tf["steps"]]
    out["n_blanks"] = len(blanks)
    out["S_step"] = _rate(sum(b["correct"] for b in blanks), len(blanks))
    out["S_plan"] = _rate(sum(tf["all_correct"] for tf in forced), len(forced))
    by_step: dict[int, list[bool]] = {}
    for b in blanks:
        by_step.setdefault(b["step"], []).append(b["correct"])
    out["step_accuracy"] = {str(k): _rate(sum(v), len(v)) for k, v in sorted(by_step.items())}
    out["multi_token_answers"] = sum(b["n_tokens"] > 1 for b in blanks) if forced else None
    return out


def _grouped(records: Sequence[dict], key: Callable[[dict], str]) -> dict[str, dict]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return {k: summarise(v) for k, v in sorted(groups.items(), key=lambda kv: _natural(kv[0]))}


def _natural(key: str) -> tuple:
    digits = "".join(c for c in key if c.isdigit())
    return (0, int(digits), key) if digits else (1, 0, key)


def write_planning_eval(result: PlanningEval, run: RunDir) -> None:
    """``results.json``, ``summary.md`` and ``examples.jsonl`` into the run directory."""
    from reasonlens.evaluate.report import planning_summary

    if not result.data_files and isinstance(run.config.get("data"), list):
        result.data_files = [str(p) for p in run.config["data"]]
    run.write_json("results.json", result.to_dict())
    run.write_text("summary.md", planning_summary(result))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.examples)
    run.write_text("examples.jsonl", lines)


EXPECTED_DATA = (
    "expected Blocksworld JSONL: one JSON object per line with 'prompt' and 'completion' "
    "(as written by `reasonlens data blocksworld`)"
)


def load_examples(paths: Sequence[str | Path], limit: int | None = None) -> list[Example]:
    """Examples of every file in turn (the first ``limit`` of each); a missing, empty or
    malformed file raises a UserError naming it (and ``file:line`` for a bad record)."""
    out: list[Example] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"data file not found: {path}")
        try:
            examples = read_examples(path)
        except UserError as err:
            raise UserError(f"{err}; {EXPECTED_DATA}") from None
        if not examples:
            raise UserError(f"{path} holds no examples (empty file); {EXPECTED_DATA}")
        out.extend(examples[:limit] if limit is not None else examples)
    return out
