"""The tiny-model backtracking study's outputs, frozen (generated chains, and a user's chains
file through the CLI): a refactor of the study layer must leave every number, table and
per-chain value as it was. How outputs are normalised and refreshed: `tests/golden_snapshots.py`.
"""

from __future__ import annotations

from golden_snapshots import Golden

ANALYSIS = dict(
    json=("results.json", "chains/summary.json", "analysis/analysis.json"),
    text=("report.md", "summary.md"),
    csv=("analysis/auc_by_lag_layer.csv", "analysis/f1_by_lag_layer.csv"),
    tensors=("analysis/probes.safetensors",),
    digests=("chains/labels.jsonl",),
)
GENERATED = Golden(
    "backtracking_tiny",
    **{**ANALYSIS, "json": (*ANALYSIS["json"], "data/manifest.json", "activations/index.json")},
    jsonl=("sample/samples.jsonl", "chains/checks.jsonl"),
)
FILE = Golden("backtracking_file_tiny", **ANALYSIS)


def test_generated_chains_study_outputs_equal_the_frozen_snapshot(tiny_dir, backtracking_study):
    out, _ = backtracking_study
    GENERATED.check(out, [str(out), str(tiny_dir)])


def test_chains_file_study_outputs_equal_the_frozen_snapshot(tiny_dir, backtracking_file_study):
    out, chains_dir = backtracking_file_study
    FILE.check(out, [str(out), str(tiny_dir), str(chains_dir)])
