"""The chains the backtracking study probes: sampled from the fine-tuned model and labelled by
the checker, or read from a user's file; either way written as ``chains/labels.jsonl``.

Sampled chains are read against their maze (:func:`~reasonlens.tasks.backtracking.check_trace`):
a chain the checker cannot replay is counted and left out (where it backtracks is undefined),
as is one with fewer tokens than the largest lag; the rest are labelled token by token, every
backtracking sentence (needed or not) positive. The prompt in front of a chain is exactly the
text the model was prompted with, so the labelled tokens are the ones the model read and wrote.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonlens.errors import UserError
from reasonlens.runs.files import atomic_write, read_state_lines
from reasonlens.tasks.backtracking import (
    BacktrackingTask,
    LabelRow,
    Maze,
    check_trace,
    label_chain,
    label_chains,
    read_chains,
    summarize,
    write_labels,
    write_records,
)

if TYPE_CHECKING:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    from reasonlens.models.loading import LoadedModel

LABELS = "labels.jsonl"
SAMPLES = "samples.jsonl"
CHECKS = "checks.jsonl"
SUMMARY = "summary.json"
#: The fewest chains the lag probes can split into training, validation and test sets.
MIN_CHAINS = 3


def sample_chains(
    model: LoadedModel,
    records: Sequence[dict],
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One sampled chain per maze record, prompted with the record's ``prompt`` as is (no chat
    template: the prompt the model was fine-tuned on) and stopped after the answer line."""
    from reasonlens.evaluate.generation import generate_tokens
    from reasonlens.progress import Progress

    prompts = [r["prompt"] for r in records]
    with Progress(progress, len(prompts), "sampling chains") as bar:
        ids = generate_tokens(
            model,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            chat=False,
            stop=BacktrackingTask().stop,
            on_batch=bar.advance,
            temperature=temperature,
            seed=seed,
        )
    texts = model.tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [
        {"id": r["id"], "maze": r["maze"], "prompt": r["prompt"], "text": text}
        for r, text in zip(records, texts, strict=True)
    ]


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file the study wrote (test mazes, samples), read as carefully as
    user input: a damaged line is a UserError naming it."""
    return read_state_lines(path)


def label_samples(
    tokenizer: PreTrainedTokenizerBase, samples: Sequence[dict], target: str, min_tokens: int
) -> tuple[list[LabelRow], list[dict], dict[str, Any]]:
    """Check every sampled chain against its maze and label the usable ones.

    Returns (label rows, one check record per sample, the summary: the checker's counts, and
    how many labelable chains were too short for the largest lag)."""
    rows, records, checked_all = [], [], []
    too_short = 0
    for s in samples:
        checked = check_trace(Maze.from_dict(s["maze"]), s["text"])
        checked_all.append(checked)
        record = {"id": s["id"], **checked.to_dict(), "used": False}
        if checked.labelable:
            chain = checked.chain(s["id"], s["text"], s["prompt"])
            try:
                rows.append(
                    label_chain(tokenizer, chain, target, prompt=s["prompt"], min_tokens=min_tokens)
                )
                record["used"] = True
            except UserError:  # fewer tokens than the largest lag (the only error here)
                too_short += 1
        records.append(record)
    summary = summarize(checked_all)
    summary.update(
        {
            "too_short": too_short,
            "used": len(rows),
            "min_tokens": min_tokens,
            "target": target,
            "source": "sampled",
        }
    )
    summary.update(_label_counts(rows))
    return rows, records, summary


def label_file(
    tokenizer: PreTrainedTokenizerBase,
    path: str | Path,
    target: str,
    template: str,
    min_tokens: int,
) -> tuple[list[LabelRow], dict[str, Any]]:
    """A user's chains (either layout of :func:`~reasonlens.tasks.backtracking.read_chains`)
    labelled for ``target``; any bad chain is a UserError naming it."""
    chains = read_chains(path)
    rows = label_chains(tokenizer, chains, target, template=template, min_tokens=min_tokens)
    if len(rows) < MIN_CHAINS:
        n = len(rows)
        raise UserError(
            f"{path}: {n} chain{'' if n == 1 else 's'}, need at least {MIN_CHAINS}: the probes "
            "split the chains into training, validation and test sets; add chains to the file"
        )
    summary = {
        "source": str(path),
        "chains": len(chains),
        "used": len(rows),
        "min_tokens": min_tokens,
        "target": target,
        "template": template,
        "labels_seen": sorted(set().union(*(c.labels for c in chains))),
        "spans": sum(len(c.spans_of(target)) for c in chains),
    }
    summary.update(_label_counts(rows))
    return rows, summary


def _label_counts(rows: Sequence[LabelRow]) -> dict[str, Any]:
    tokens = sum(r.n_chain_tokens for r in rows)
    positive = sum(r.n_positive for r in rows)
    return {
        "chain_tokens": tokens,
        "positive_tokens": positive,
        "positive_rate": positive / tokens if tokens else None,
        "mean_chain_tokens": tokens / len(rows) if rows else None,
    }


def write_chains(directory: Path, rows: Sequence[LabelRow], summary: dict, checks=None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_labels(directory / LABELS, rows)
    if checks is not None:
        write_records(directory / CHECKS, checks)
    atomic_write(directory / SUMMARY, json.dumps(summary, indent=2) + "\n")
