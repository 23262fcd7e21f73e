"""The provenance section every study report ends with: what ran, on what, for how long."""

from __future__ import annotations

from reasonlens.report.document import Document
from reasonlens.runs import RUN_FILE, RunDir, read_json


def provenance(
    doc: Document, run: RunDir, results: dict, data_line: str, stages: list[str]
) -> None:
    """Model, preset, seed, data, software, machine, timings and where each stage's files are."""
    record = read_json(run.file(RUN_FILE))
    doc.heading("Provenance")
    doc.bullets(
        [
            f"model: `{results['model']}`; preset: `{results['preset']}`; seed: {results['seed']}",
            data_line,
            "software: " + ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items()),
            f"machine: {record.get('machine', {}).get('platform', '?')}",
            "timings (s, summed over the sessions that ran the study): "
            + ", ".join(f"{k} {v:.0f}" for k, v in results.get("timings_s", {}).items()),
            "resolved configuration: `config.yaml`; per-stage runs: "
            + ", ".join(f"`{s}/`" for s in stages),
        ]
    )
