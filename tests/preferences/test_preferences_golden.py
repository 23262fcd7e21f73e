"""The tiny-model preferences study's outputs, frozen: a refactor of the study layer must leave
every number, table, decision and report as it was. How outputs are normalised and refreshed:
`tests/golden_snapshots.py` (the snapshot lives with the other studies' in tests/studies/golden).
"""

from __future__ import annotations

from golden_snapshots import Golden

ANALYSED = ("base", "instilled", "native", "native_base")
PREFERENCES = Golden(
    "preferences_tiny",
    json=(
        "results.json",
        "data/manifest.json",
        "decide_base/index.json",
        "decide_instilled/index.json",
        "reports_base/index.json",
        "reports_instilled/index.json",
        "reports_introspected/index.json",
        "analysis/analysis.json",
        *(f"analysis/{part}/results.json" for part in ANALYSED),
    ),
    jsonl=("instil/validation_curve.jsonl",),
    text=("report.md", "summary.md", *(f"analysis/{part}/summary.md" for part in ANALYSED)),
    csv=(
        "data/targets.csv",
        "decide_base/test.csv",
        "decide_base/native.csv",
        "decide_instilled/val.csv",
        "decide_instilled/test.csv",
        "decide_instilled/native.csv",
        "reports_base/instilled.csv",
        "reports_instilled/instilled.csv",
        "reports_instilled/native.csv",
        "reports_introspected/instilled.csv",
        "reports_introspected/native.csv",
        *(f"analysis/{part}/fits.csv" for part in ANALYSED),
        *(f"analysis/{part}/learned_weights.csv" for part in ANALYSED),
        "analysis/base/learned_weights_logit_linear.csv",
        "analysis/base/learned_weights_logit_sign.csv",
        "analysis/instilled/learned_weights_logit_linear.csv",
        "analysis/instilled/learned_weights_logit_sign.csv",
    ),
)


def test_tiny_study_outputs_equal_the_frozen_snapshot(tiny_dir, preferences_study):
    out, _ = preferences_study
    PREFERENCES.check(out, [str(out), str(tiny_dir)])
