"""Evaluate a model on any task: free generation scored by the task, and teacher forcing.

The model sees ``item.prompt`` as plain text (no chat template) and should continue with
``item.completion``, the input contract training uses. The task supplies everything that is
particular to it (:class:`~reasonlens.tasks.base.Task`): the stop rule and the cut of the
output, the verdicts on a completion, which verdicts are rates, and the breakdowns.

- ``generate``: batched greedy decoding (left padding, KV cache) until EOS, the task's stop
  rule, or ``max_new_tokens``; the output is cut by the task and scored by it.
- ``teacher-forced``: every answer span predicted with the gold history
  (:mod:`reasonlens.evaluate.teacher_forcing`). S_step = share of answers (blanks) right,
  S_plan = share of items with every blank right: the names of the paper that introduced
  the measure, kept for every task so that result files read alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError, one_of
from reasonlens.evaluate.generation import generate_tokens
from reasonlens.evaluate.teacher_forcing import BlankResult, score_blanks
from reasonlens.models import LoadedModel
from reasonlens.parallel import World
from reasonlens.progress import Progress
from reasonlens.runs import RunDir
from reasonlens.tasks.base import GoldError, Task, TaskItem
from reasonlens.tasks.tokens import EncodedItem, encode_item

MODES = ("generate", "teacher-forced", "both")


@dataclass
class TaskEval:
    """Scores of one model on a list of items: totals, breakdowns, one dict per item."""

    task: Task = field(repr=False)
    model: dict
    mode: str
    totals: dict
    breakdowns: dict[str, dict[str, dict]]  # breakdown name -> group -> scores
    examples: list[dict]
    timings: dict
    settings: dict
    data_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """What ``results.json`` holds (everything but the per-item records)."""
        return {
            "model": self.model,
            "data": self.data_files,
            "mode": self.mode,
            "settings": self.settings,
            "totals": self.totals,
            **self.breakdowns,
            "timings": self.timings,
        }


def default_max_new_tokens(encoded: Sequence[EncodedItem]) -> int:
    """Enough for the longest gold completion plus two more step lines, a newline and EOS.

    Two extra steps (items without ``"steps"`` spans get none) let a slightly longer answer be
    seen whole and judged, rather than cut short and judged unparsed.
    """
    longest = max(len(e) - e.completion[0] for e in encoded)
    steps = [s[1] - s[0] + 1 for e in encoded for s in e.spans.get("steps", ())]
    return longest + 2 * max(steps, default=0) + 2


def evaluate_task(
    model: LoadedModel,
    task: Task,
    items: Sequence[Any],
    mode: str = "both",
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    progress: bool = True,
    world: World | None = None,
) -> TaskEval:
    """Evaluate ``model`` on ``items`` of ``task`` (TaskItems, or the task's own items, which
    :meth:`Task.item` converts) in ``mode`` (generate, teacher-forced, both);
    ``max_new_tokens`` defaults to :func:`default_max_new_tokens`.

    With ``world`` (one of several launched processes, :mod:`reasonlens.parallel`) each
    process runs every N-th of the batches a 1-process run forms (the same items in each, so
    the same padding and the same numbers) and every process returns the whole result, items
    in input order."""
    if mode not in MODES:
        raise one_of("mode", mode, MODES)
    if not items:
        raise UserError("no examples to evaluate")
    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    items = [task.item(x) for x in items]
    encoded = [encode_item(model.tokenizer, it) for it in items]
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens(encoded)
    n_batches = -(-len(items) // batch_size)
    do_gen, do_tf = mode in ("generate", "both"), mode in ("teacher-forced", "both")
    bar = Progress(progress, n_batches * (do_gen + do_tf), f"eval {model.name}")
    timings: dict[str, float | int | None] = {}
    records = [_base_record(i, it) for i, it in enumerate(items)]
    world = world if world is not None and world.parallel else World()
    n = len(items)
    mine = [
        i for b in world.batches(n_batches) for i in range(b * batch_size, (b + 1) * batch_size)
    ]
    gen_idx = [i for i in mine if i < n]
    try:
        if do_gen:
            bar.label("generating")
            start = time.perf_counter()
            outputs = generate_tokens(
                model,
                [items[i].prompt for i in gen_idx],
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                chat=False,
                stop=task.stop,
                on_batch=lambda n: bar.advance(),
            )
            seconds = time.perf_counter() - start
            outputs = _merged(world, gen_idx, outputs, n)
            n_tokens = sum(len(ids) for ids in outputs)
            timings.update(
                generation_s=round(seconds, 3),
                generated_tokens=n_tokens,
                generation_tokens_per_s=round(n_tokens / seconds, 2) if seconds else None,
            )
            for rec, it, ids in zip(records, items, outputs, strict=True):
                raw = model.tokenizer.decode(ids, skip_special_tokens=True)
                output = task.cut(raw)
                rec.update(
                    raw_output=raw,
                    output=output,
                    n_generated_tokens=len(ids),
                    verdicts=task.score(it, output),
                )
        if do_tf:
            bar.label("teacher forcing")
            start = time.perf_counter()
            # teacher forcing batches items sorted by length: my batches of that order, which
            # score_blanks (a stable sort) keeps as they are
            order = sorted(range(n), key=lambda i: len(encoded[i].input_ids))
            tf_idx = [order[j] for j in mine if j < n]
            blanks = score_blanks(
                model, [encoded[i] for i in tf_idx], batch_size, on_batch=lambda _: bar.advance()
            )
            blanks = _merged(world, tf_idx, blanks, n)
            seconds = time.perf_counter() - start
            timings.update(
                teacher_forced_s=round(seconds, 3),
                teacher_forced_problems_per_s=(round(len(items) / seconds, 3) if seconds else None),
            )
            for rec, res in zip(records, blanks, strict=True):
                rec["teacher_forced"] = _tf_record(res)
    finally:
        bar.close()
    if world.parallel:
        timings["processes"] = world.size
    return TaskEval(
        task=task,
        model={
            "name": model.name,
            "source": model.source,
            "architecture": model.arch.name,
            "dtype": str(model.dtype).removeprefix("torch."),
            "device": str(model.device),
        },
        mode=mode,
        totals=summarise(records, task.metrics),
        breakdowns={
            name: _grouped(records, [key(it.labels) for it in items], task.metrics)
            for name, key in task.breakdowns.items()
        },
        examples=records,
        timings=timings,
        settings={
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens if do_gen else None,
            "chat_template": False,
            "decoding": "greedy" if do_gen else None,
            "stop": task.stop_rule if do_gen else None,
        },
    )


def _merged(world: World, indices: Sequence[int], values: Sequence, n: int) -> list:
    """Every process's `values` (of items `indices`) as one list of `n`, in input order."""
    out: list = [None] * n
    for part in world.gather(list(zip(indices, values, strict=True))):
        for index, value in part:
            out[index] = value
    return out


def _base_record(index: int, item: TaskItem) -> dict:
    return {
        "id": item.id,
        "index": index,
        **item.labels,
        "prompt": item.prompt,
        "gold": item.completion,
    }


def _tf_record(blanks: list[BlankResult]) -> dict:
    return {
        "all_correct": all(b.correct for b in blanks),
        "n_correct": sum(b.correct for b in blanks),
        "steps": [b.to_dict() for b in blanks],
    }


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 6) if n else None


def summarise(records: Sequence[dict], metrics: Sequence[str]) -> dict:
    """Rates over per-item records: each generation verdict in ``metrics`` (a task's
    ``metrics``), S_step, S_plan, accuracy per answer position.

    A metric whose mode did not run is None.
    """
    out: dict = {"n": len(records)}
    generated = [r["verdicts"] for r in records if "verdicts" in r]
    for name in metrics:
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


def _grouped(
    records: Sequence[dict], keys: Sequence[str], metrics: Sequence[str]
) -> dict[str, dict]:
    """Scores per group (``keys[i]`` is record i's), groups in natural order (L2 before L10)."""
    groups: dict[str, list[dict]] = {}
    for record, key in zip(records, keys, strict=True):
        groups.setdefault(key, []).append(record)
    ordered = sorted(groups.items(), key=lambda kv: _natural(kv[0]))
    return {k: summarise(v, metrics) for k, v in ordered}


def _natural(key: str) -> tuple:
    digits = "".join(c for c in key if c.isdigit())
    return (0, int(digits), key) if digits else (1, 0, key)


def write_eval(result: TaskEval, run: RunDir) -> None:
    """``results.json``, ``summary.md`` and ``examples.jsonl`` into the run directory."""
    from reasonlens.evaluate.summary import eval_summary

    if not result.data_files and isinstance(run.config.get("data"), list):
        result.data_files = [str(p) for p in run.config["data"]]
    run.write_json("results.json", result.to_dict())
    run.write_text("summary.md", eval_summary(result))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.examples)
    run.write_text("examples.jsonl", lines)


def load_items(task: Task, paths: Sequence[str | Path], limit: int | None = None) -> list[TaskItem]:
    """Items of every file in turn (the first ``limit`` of each); a missing, empty or
    malformed file raises a UserError naming it (``file:line`` for a bad record) and saying
    what the task expects."""
    out: list[TaskItem] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p.name for p in path.glob("*.jsonl"))[:4]
            hint = f" (it holds {', '.join(found)}{', ...' if len(found) == 4 else ''})"
            raise UserError(
                f"{path} is a directory: give one or more of its JSONL files"
                + (hint if found else "")
            )
        if not path.is_file():
            raise UserError(f"data file not found: {path}")
        try:
            items = task.read(path)
        except GoldError:
            raise
        except UserError as err:
            raise UserError(f"{err}; {task.expected}") from None
        if not items:
            raise UserError(f"{path} holds no examples (empty file); {task.expected}")
        out.extend(items[:limit] if limit is not None else items)
    return out


def sample_task(
    model: LoadedModel,
    task: Task,
    items: Sequence[Any],
    samples: int,
    temperature: float,
    max_new_tokens: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> list[list[tuple[str, dict]]]:
    """``samples`` completions of each item at ``temperature``, cut and scored by the task:
    per item, a list of ``(output, verdicts)``.

    Why: an RL policy is trained on the expected reward of its samples; greedy decoding
    measures its mode only, which GRPO can leave where it was while sharpening the rest (so
    a pair reports both). Seeded like :func:`generate_tokens` (the same items, samples,
    batch size and seed give the same text on CPU)."""
    if samples < 1:
        raise UserError(f"samples must be at least 1, got {samples}")
    if temperature <= 0:
        raise UserError(f"a sampled evaluation needs a temperature above 0, not {temperature}")
    if not items:
        raise UserError("no examples to evaluate")
    items = [task.item(x) for x in items]
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens([encode_item(model.tokenizer, it) for it in items])
    outputs = generate_tokens(
        model,
        [it.prompt for it in items for _ in range(samples)],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        chat=False,
        stop=task.stop,
        temperature=temperature,
        seed=seed,
    )
    texts = model.tokenizer.batch_decode(outputs, skip_special_tokens=True)
    out: list[list[tuple[str, dict]]] = []
    for i, it in enumerate(items):
        cut = [task.cut(t) for t in texts[i * samples : (i + 1) * samples]]
        out.append([(c, task.score(it, c)) for c in cut])
    return out
