"""One protocol for every analysis result, and the files a result is kept in.

A result knows its machine-readable form (`to_dict`), the per-example values a report
resamples to put uncertainty on a claim (`per_example`), and how to draw itself (`plot`).
The producer saves it under a name; the file names are decided here, once, and a report reads
them back through :func:`load_per_example` / :func:`load_record`, never by its own guess.

    DIR/NAME.json                      the record (to_dict and whatever the producer adds)
    DIR/NAME_per_problem.safetensors   the per-example values (written first, so a record on
                                       disk always has its per-example file)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reasonlens.runs.files import atomic_save_tensors, jsonable, read_json, write_json

if TYPE_CHECKING:
    import numpy as np
    import torch


class AnalysisResult(Protocol):
    def to_dict(self) -> dict: ...

    def per_example(self) -> dict[str, torch.Tensor]: ...

    def plot(self, path: str | Path, title: str | None = None) -> Path: ...


def record_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}.json"


def per_example_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}_per_problem.safetensors"


def save_result(
    directory: Path, name: str, record: dict[str, Any], per_example: dict | None = None
) -> dict[str, Any]:
    """Write the per-example values (if any), then the record; returns the record."""
    if per_example is not None:
        atomic_save_tensors(per_example_path(directory, name), per_example)
    write_json(record_path(directory, name), record, indent=1)
    return jsonable(record)  # as a later session reads it back


def load_record(directory: Path, name: str) -> dict[str, Any] | None:
    path = record_path(directory, name)
    return read_json(path) if path.is_file() else None


def load_per_example(directory: Path, name: str) -> dict[str, np.ndarray] | None:
    """A result's per-example values as float64 arrays, or None when none were kept."""
    path = per_example_path(directory, name)
    if not path.is_file():
        return None
    import numpy as np
    from safetensors.numpy import load_file

    return {k: v.astype(np.float64) for k, v in load_file(str(path)).items()}
