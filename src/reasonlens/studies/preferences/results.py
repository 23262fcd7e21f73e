"""What the preferences study's results.json holds.

Top-level keys as `reasonlens preferences analyse` writes them, for the instilled model on the
fresh test trials (letter read-out): ``r_learned_target``, ``agreement``, ``share_a``,
``n_scenarios``, ``r_report_learned``; then every experiment in full (``experiment1`` with the
logit-based recoveries and the untrained control, ``experiment2``, ``experiment3``, the native
preferences), the training runs and the timings.
"""

from __future__ import annotations

from typing import Any

from reasonlens.studies.base import Settings
from reasonlens.studies.kit import train_summary
from reasonlens.studies.preferences.presets import PreferencesPreset


def study_results(p: PreferencesPreset, settings: Settings, stages: dict[str, Any]) -> dict:
    a = stages["analysis"]
    data = stages["data"]
    manifest = data.manifest
    inst = a["instilled"]
    reports = a["reports"]
    return {
        "r_learned_target": inst.get("r_learned_target"),
        "agreement": inst.get("agreement"),
        "share_a": inst.get("share_a"),
        "n_scenarios": inst.get("n_scenarios"),
        "r_report_learned": reports["instilled"]["r_report_learned"],
        "data": {
            "counts": manifest["counts"],
            "instilled": manifest["instilled"],
            "native": manifest["native"],
            "introspect_train": manifest["introspect_train"],
            "introspect_test": manifest["introspect_test"],
            "target_share_a": manifest["target_share_a"],
            "chat_template": manifest["chat_template"],
        },
        "train": {name: train_summary(stages[name]) for name in ("instil", "introspect")},
        "experiment1": {
            "instilled": inst,
            "base": a["base"],
            # instilled vs untrained on the same scenarios and resamples, by read-out
            "paired": a.get("paired", {}),
            "primary_readout": a.get("primary_readout", "letter"),
            "validation": a.get("validation"),
            "validation_curve": a.get("validation_curve", []),
            "base_vs_instilled_learned": a.get("base_vs_instilled_learned"),
        },
        # each also read from the logits of constrained choices, under "scored"
        "experiment2": {
            **reports,
            "scored": a.get("reports_scored"),
            # which read-out's learned weights are the truth of experiments 2 and 3
            "truth_readout": a.get("truth_readout", {"instilled": "letter", "native": "letter"}),
        },
        "experiment3": {**a["introspection"], "scored": a.get("introspection_scored")},
        "native": {
            "instilled": a.get("native"),
            "base": a.get("native_base"),
            "base_vs_instilled_learned": a.get("native_base_vs_instilled"),
        },
    }
