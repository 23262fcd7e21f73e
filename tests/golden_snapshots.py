"""Golden snapshots of a tiny study's outputs: a refactor must leave every number, table and
per-item value as it was.

A study's golden test declares which of its files are frozen (a `Golden`) and compares a
finished run with the snapshot in `tests/studies/golden/<name>/`. Before comparing, what may
differ between two runs of the same study on the same CPU is removed: timings (keys, lines and
the seconds in a training line or a table's time column), the temporary paths of the run, the
model and the inputs (replaced by `<ROOT0>`, `<ROOT1>`, ...), and the provenance lines that
describe the machine and the software versions. To refresh a snapshot after an intended change
of output, run the golden test with REASONLENS_REFRESH_GOLDEN=1 and review the diff.

This module sits in `tests/` (on sys.path for every test, beside the root conftest) so the
golden tests of every test directory import it by name; a conftest cannot be imported so.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

GOLDEN_ROOT = Path(__file__).parent / "studies" / "golden"
REFRESH = "REASONLENS_REFRESH_GOLDEN"

# keys whose values differ between two runs of the same study on the same machine
TIMING_KEYS = frozenset(
    {
        "seconds",
        "train_seconds",
        "probe_seconds",
        "tokens_per_second",
        "timings",
        "timings_s",
        "generation_s",
        "generation_tokens_per_s",
        "teacher_forced_s",
        "teacher_forced_problems_per_s",
        "model_load_s",
    }
)
# report lines that only give timings ("- timings (s, ...)", "speed: ... tokens/s", ...)
TIMING_LINE = re.compile(r"seconds|tokens_per|_s \||timings|tokens/s|problems_per_s")
# seconds inside a line that also holds numbers of the study: "loss 5.5 -> 5.3, 1 s on cpu"
# or a table's time column "| 1 s |"
SECONDS = re.compile(r"\b\d+(?:\.\d+)? s(?= on | \|)")
# what describes the machine and the software rather than the study: the provenance lines
# naming the platform and the package versions differ on every machine with the locked
# environment, so a snapshot never holds them
MACHINE_LINE = re.compile(r"^- (machine|software): ")


def strip(value, roots: list[str]):
    """A JSON value without its timing keys, its temporary paths replaced by <ROOTi>."""
    if isinstance(value, dict):
        return {k: strip(v, roots) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [strip(v, roots) for v in value]
    if isinstance(value, str):
        return _roots(value, roots)
    return value


def _roots(text: str, roots: list[str]) -> str:
    for i, root in enumerate(roots):
        text = text.replace(root, f"<ROOT{i}>")
    return text


def text(content: str, roots: list[str]) -> str:
    """A report without its timing and machine lines, seconds and temporary paths."""
    kept = (
        SECONDS.sub("<t> s", line)
        for line in _roots(content, roots).splitlines()
        if not TIMING_LINE.search(line) and not MACHINE_LINE.match(line)
    )
    return "\n".join(kept) + "\n"


def tensor_digests(path: Path) -> dict[str, str]:
    """{tensor name: dtype, shape and sha256 of its bytes} of a safetensors file."""
    from safetensors.numpy import load_file

    return {
        name: f"{array.dtype}{list(array.shape)}:{hashlib.sha256(array.tobytes()).hexdigest()}"
        for name, array in sorted(load_file(str(path)).items())
    }


def _jsonl(path: Path, roots: list[str]) -> list:
    return [strip(json.loads(line), roots) for line in path.read_text().splitlines()]


@dataclass(frozen=True)
class Golden:
    """The frozen outputs of one study run, by kind, as paths relative to the run directory.

    json, jsonl: parsed and stripped (timing keys, paths); text: Markdown reports (timing and
    machine lines removed); csv: verbatim but for paths; tensors: each tensor's digest;
    digests: JSONL files too large to keep (token ids), frozen as the line count and sha256
    of their stripped records.
    """

    name: str
    json: tuple[str, ...] = ()
    jsonl: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    csv: tuple[str, ...] = ()
    tensors: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return GOLDEN_ROOT / self.name

    def snapshot(self, out: Path, roots: list[str]) -> dict[str, object]:
        """Every frozen output of the run in `out`, normalised: {relative path: content}."""
        out = Path(out)
        snap: dict[str, object] = {}
        for name in self.json:
            snap[name] = strip(json.loads((out / name).read_text()), roots)
        for name in self.jsonl:
            snap[name] = _jsonl(out / name, roots)
        for name in self.text:
            snap[name] = text((out / name).read_text(), roots)
        for name in self.csv:
            snap[name] = _roots((out / name).read_text(), roots)
        for name in self.tensors:
            snap[name] = tensor_digests(out / name)
        for name in self.digests:
            records = _jsonl(out / name, roots)
            blob = "\n".join(json.dumps(r, sort_keys=True) for r in records).encode()
            snap[name] = {"lines": len(records), "sha256": hashlib.sha256(blob).hexdigest()}
        return snap

    def _verbatim(self, name: str) -> bool:
        return name in self.text or name in self.csv

    def path(self, name: str) -> Path:
        """The snapshot file of output `name` (its path flattened with '__')."""
        flat = name.replace("/", "__")
        return self.directory / (flat if self._verbatim(name) else flat + ".json")

    def dump(self, name: str, content: object) -> str:
        return content if self._verbatim(name) else json.dumps(content, indent=1) + "\n"

    def check(self, out: Path, roots: list[str]) -> None:
        """Fail naming every output that differs from the snapshot (with the first lines of
        its diff); with REASONLENS_REFRESH_GOLDEN=1, rewrite the snapshot and skip."""
        snap = self.snapshot(out, roots)
        if os.environ.get(REFRESH) == "1":
            self.directory.mkdir(parents=True, exist_ok=True)
            for name, content in snap.items():
                self.path(name).write_text(self.dump(name, content))
            pytest.skip(f"golden snapshot {self.name} refreshed")
        differ = {}
        for name, content in snap.items():
            now, frozen = self.dump(name, content), self.path(name).read_text()
            if now != frozen:
                lines = difflib.unified_diff(
                    frozen.splitlines(), now.splitlines(), lineterm="", n=1
                )
                differ[name] = "\n".join(list(lines)[:30])
        assert not differ, f"differs from the snapshot {self.name}:\n" + "\n".join(
            f"{name}:\n{diff}" for name, diff in differ.items()
        )
