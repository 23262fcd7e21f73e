"""The files the planning study's analysis stage writes, named once: the stage writes them
and the report reads them, through these names (a test checks every one exists)."""

from __future__ import annotations

EXTRACTION_PNG = "extraction_rate.png"
EXTRACTION_LENS_PNG = "extraction_rate_logit_lens.png"
FLOW_PNG = "information_flow.png"
MASKING_PNG = "history_intervention.png"
FUTURE_MATRIX_PNG = "probe_future_matrix.png"
HORIZONS_PNG = "horizons.png"
INDEX = "analyses.json"  # analysis-set counts and horizons, beside each analysis's own file


def probe_png(task: str, kind: str) -> str:
    """Probe scores by layer: task 'state' or 'future', kind 'linear' or 'mlp'."""
    return f"probe_{task}_{kind}.png"
