"""The tiny-model planning study's outputs, frozen: a refactor of the study layer must leave
every number, table and per-problem value as it was.

The snapshot in `golden/planning_tiny/` was written by the study as it stood before the study
framework existed (HEAD 365144d). Timings, dates and temporary paths are the only things that
may differ between two runs on the same CPU, so they are removed before comparing. To refresh
the snapshot after an intended change of output, run this test with REASONLENS_REFRESH_GOLDEN=1
and review the diff.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "planning_tiny"
JSON_FILES = (
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
)
JSONL_FILES = ("eval_base/examples.jsonl", "eval_finetuned/examples.jsonl")
TEXT_FILES = ("report.md", "summary.md", "eval_finetuned/summary.md")
TENSOR_FILES = (
    "analyses/extraction_per_problem.safetensors",
    "analyses/flow_per_problem.safetensors",
    "analyses/masking_per_problem.safetensors",
    "analyses/knockout_per_problem.safetensors",
    "analyses/probes_per_problem.safetensors",
    "analyses/control/extraction_per_problem.safetensors",
    "analyses/control/flow_per_problem.safetensors",
    "analyses/control/masking_per_problem.safetensors",
)
# what differs between two runs of the same study on the same machine
_TIMING_KEYS = {
    "seconds",
    "train_seconds",
    "tokens_per_second",
    "timings",
    "timings_s",
    "generation_s",
    "generation_tokens_per_s",
    "teacher_forced_s",
    "teacher_forced_problems_per_s",
    "model_load_s",
}
_TIMING_LINE = re.compile(r"seconds|tokens_per|_s \||timings|tokens/s|problems_per_s")
# what describes the machine and the software rather than the study: the provenance lines
# naming the platform and the package versions differ on every machine with the locked
# environment, so a snapshot never holds them
_MACHINE_LINE = re.compile(r"^- (machine|software): ")


def _strip(value, roots: list[str]):
    if isinstance(value, dict):
        return {k: _strip(v, roots) for k, v in value.items() if k not in _TIMING_KEYS}
    if isinstance(value, list):
        return [_strip(v, roots) for v in value]
    if isinstance(value, str):
        for i, root in enumerate(roots):
            value = value.replace(root, f"<ROOT{i}>")
    return value


def _text(text: str, roots: list[str]) -> str:
    for i, root in enumerate(roots):
        text = text.replace(root, f"<ROOT{i}>")
    kept = (
        line
        for line in text.splitlines()
        if not _TIMING_LINE.search(line) and not _MACHINE_LINE.match(line)
    )
    return "\n".join(kept) + "\n"


def _tensor_digests(path: Path) -> dict[str, str]:
    from safetensors.numpy import load_file

    return {
        name: f"{array.dtype}{list(array.shape)}:{hashlib.sha256(array.tobytes()).hexdigest()}"
        for name, array in sorted(load_file(str(path)).items())
    }


def snapshot(out: Path, roots: list[str]) -> dict[str, object]:
    """Every frozen output of a study run, normalised: {relative path: content}."""
    snap: dict[str, object] = {}
    for name in JSON_FILES:
        snap[name] = _strip(json.loads((out / name).read_text()), roots)
    for name in JSONL_FILES:
        lines = (out / name).read_text().splitlines()
        snap[name] = [_strip(json.loads(line), roots) for line in lines]
    for name in TEXT_FILES:
        snap[name] = _text((out / name).read_text(), roots)
    for name in TENSOR_FILES:
        snap[name] = _tensor_digests(out / name)
    return snap


def _golden_path(name: str) -> Path:
    flat = name.replace("/", "__")
    return GOLDEN / (flat if name in TEXT_FILES else flat + ".json")


def _dump(name: str, content: object) -> str:
    return content if name in TEXT_FILES else json.dumps(content, indent=1) + "\n"


def test_tiny_study_outputs_equal_the_frozen_snapshot(tiny_dir, tiny_study):
    out, _ = tiny_study
    roots = [str(out), str(Path(tiny_dir))]
    snap = snapshot(out, roots)
    if os.environ.get("REASONLENS_REFRESH_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, content in snap.items():
            _golden_path(name).write_text(_dump(name, content))
        pytest.skip("golden snapshot refreshed")
    differ = {}
    for name, content in snap.items():
        now, frozen = _dump(name, content), _golden_path(name).read_text()
        if now != frozen:
            lines = difflib.unified_diff(frozen.splitlines(), now.splitlines(), lineterm="", n=1)
            differ[name] = "\n".join(list(lines)[:30])
    assert not differ, "differs from the snapshot:\n" + "\n".join(
        f"{name}:\n{diff}" for name, diff in differ.items()
    )
