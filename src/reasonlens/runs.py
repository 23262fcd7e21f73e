"""Run directories: every command that produces results writes them into one.

A run directory holds `run.json` (what kind of run, its resolved config, software versions),
`config.yaml` (the same config, for people and for re-running), a log, results (JSON),
summaries (Markdown) and plots (PNG). A directory that already holds a *different* run is
refused unless the caller asks to overwrite it, so a typo never destroys finished work; the
*same* run (same kind and config) is reopened, so interrupted work can resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reasonlens import __version__
from reasonlens.errors import UserError

RUN_FILE = "run.json"


def software_versions() -> dict[str, str]:
    """Versions that decide the numbers a run produces."""
    import importlib.metadata as md

    versions = {"reasonlens": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)
    return versions


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """`atomic_write` for tensors: a safetensors file appears only once fully written."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata)
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class RunDir:
    path: Path
    kind: str
    config: dict

    @classmethod
    def create(cls, path: str | Path, kind: str, config: dict, overwrite: bool = False) -> RunDir:
        """Start a run in `path`, or reopen the same run there; refuse a different one."""
        path = Path(path)
        config = _jsonable(config)
        if path.exists() and any(path.iterdir()):
            existing = _read_run(path)
            same = (
                existing is not None and existing["kind"] == kind and existing["config"] == config
            )
            if not same and not overwrite:
                if existing is None:
                    what = "files that are not a reasonlens run"
                elif existing["kind"] != kind:
                    what = f"a run of another kind ({existing['kind']!r})"
                else:
                    keys = sorted(
                        k
                        for k in set(config) | set(existing["config"])
                        if config.get(k) != existing["config"].get(k)
                    )
                    what = f"a different {kind} run (differs in: {', '.join(keys)})"
                raise UserError(
                    f"{path} already holds {what}; choose another --out or pass --overwrite"
                )
            if not same:
                shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, kind, config)
        if not (path / RUN_FILE).exists():
            record = {
                "kind": kind,
                "config": config,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": software_versions(),
                "machine": {"platform": platform.platform(), "processor": platform.machine()},
            }
            atomic_write(path / RUN_FILE, json.dumps(record, indent=2) + "\n")
            atomic_write(path / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        return run

    @classmethod
    def open(cls, path: str | Path, kind: str | None = None) -> RunDir:
        """An existing run; with `kind`, it must be a run of that kind."""
        path = Path(path)
        record = _read_run(path)
        if record is None:
            raise UserError(f"{path} is not a reasonlens run directory (no {RUN_FILE})")
        if kind is not None and record["kind"] != kind:
            raise UserError(f"{path} is not a {kind} run (its kind is {record['kind']!r})")
        return cls(path, record["kind"], record["config"])

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> Path:
        target = self.file(name)
        atomic_write(target, json.dumps(_jsonable(data), indent=2) + "\n")
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.file(name)
        atomic_write(target, text)
        return target

    def log_to_file(self, name: str = "run.log") -> logging.Handler:
        """Send reasonlens' log records to the run's log file (remove the handler when done)."""
        handler = logging.FileHandler(self.file(name), encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("reasonlens")
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        return handler


def _read_run(path: Path) -> dict | None:
    try:
        return json.loads((path / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
