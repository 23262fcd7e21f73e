"""The files the planning study's analysis stage writes, named once: the stage writes them
and the report reads them, through these names (a test checks every one exists)."""

from __future__ import annotations

EXTRACTION_PNG = "extraction_rate.png"
EXTRACTION_LENS_PNG = "extraction_rate_logit_lens.png"
FLOW_PNG = "information_flow.png"
MASKING_PNG = "history_intervention.png"
KNOCKOUT_PNG = "history_intervention_knockout.png"
CONTROL = "control"  # the same analyses on the base model before fine-tuning
FUTURE_MATRIX_PNG = "probe_future_matrix.png"
HORIZONS_PNG = "horizons.png"
INDEX = "analyses.json"  # analysis-set counts and horizons, beside each analysis's own file


def masking_png(method: str) -> str:
    return MASKING_PNG if method == "zero_keys" else KNOCKOUT_PNG


def probe_png(task: str, kind: str) -> str:
    """Probe scores by layer: task 'state' or 'future', kind 'linear' or 'mlp'."""
    return f"probe_{task}_{kind}.png"
