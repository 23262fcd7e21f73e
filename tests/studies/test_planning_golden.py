"""The tiny-model planning study's outputs, frozen: a refactor of the study layer must leave
every number, table and per-problem value as it was.

The snapshot in `golden/planning_tiny/` was written by the study as it stood before the study
framework existed (HEAD 365144d). What may differ between two runs on the same CPU (timings,
dates, temporary paths, the machine and software lines) is removed before comparing; see
`tests/golden_snapshots.py`, which also says how to refresh a snapshot.
"""

from __future__ import annotations

from pathlib import Path

from golden_snapshots import Golden

PLANNING = Golden(
    "planning_tiny",
    json=(
        "results.json",
        "data/manifest.json",
        "eval_base/results.json",
        "eval_finetuned/results.json",
        "analyses/extraction.json",
        "analyses/flow.json",
        "analyses/masking.json",
        "analyses/probes.json",
        "analyses/horizon_L1/probes.json",
        "analyses/solved_L1_b4.json",
        "analyses/solved_L3_b4.json",
        "analyses/knockout.json",
        "analyses/control/extraction.json",
        "analyses/control/flow.json",
        "analyses/control/masking.json",
        "analyses/control/knockout.json",
    ),
    jsonl=("eval_base/examples.jsonl", "eval_finetuned/examples.jsonl"),
    text=("report.md", "summary.md", "eval_finetuned/summary.md"),
    tensors=(
        "analyses/extraction_per_problem.safetensors",
        "analyses/flow_per_problem.safetensors",
        "analyses/masking_per_problem.safetensors",
        "analyses/knockout_per_problem.safetensors",
        "analyses/probes_per_problem.safetensors",
        "analyses/control/extraction_per_problem.safetensors",
        "analyses/control/flow_per_problem.safetensors",
        "analyses/control/masking_per_problem.safetensors",
    ),
)
# what test_study_framework's resumed run compares with
GOLDEN = PLANNING.directory
snapshot = PLANNING.snapshot
_golden_path = PLANNING.path
_dump = PLANNING.dump


def test_tiny_study_outputs_equal_the_frozen_snapshot(tiny_dir, tiny_study):
    out, _ = tiny_study
    PLANNING.check(out, [str(out), str(Path(tiny_dir))])
