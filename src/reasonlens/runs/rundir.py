"""Run directories: every command that produces results writes them into one.

A run directory holds `run.json` (what kind of run, its resolved config, software versions),
`config.yaml` (the same config, for people and for re-running), a log, results (JSON),
summaries (Markdown) and plots (PNG). One rule decides what happens when a directory is
already there (:func:`reopen_or_refuse`): the *same* run is reopened, so interrupted work
resumes; anything else is refused, naming what differs, unless the caller asks to overwrite.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reasonlens import __version__
from reasonlens.errors import UserError
from reasonlens.runs.files import atomic_write, jsonable, read_json, to_json, write_json

RUN_FILE = "run.json"


def software_versions() -> dict[str, str]:
    """Versions that decide the numbers a run produces."""
    import importlib.metadata as md

    versions = {"reasonlens": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)
    return versions


def differing(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """Dotted names of the settings whose values differ (nested mappings compared key by key)."""
    keys = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += differing(a, b, prefix=f"{name}.")
        elif a != b:
            keys.append(name)
    return keys


def reopen_or_refuse(path: Path, holds: str | None, overwrite: bool) -> bool:
    """The one rule for a directory that may already hold work: `holds` says what is there
    that differs from what is asked for (None: nothing, or the same run). Returns True when
    the existing work is kept (reopened); refuses, or with `overwrite` clears it."""
    if holds is None:
        return path.exists()
    if not overwrite:
        raise UserError(f"{path} already holds {holds}; choose another --out or pass --overwrite")
    shutil.rmtree(path)
    return False


def _describe(path: Path, kind: str, config: dict) -> str | None:
    """What `path` holds that is not this run (None: empty, absent, or this very run)."""
    if not path.exists() or not any(path.iterdir()):
        return None
    existing = read_run(path)
    if existing is None:
        return "files that are not a reasonlens run"
    if existing.get("kind") != kind:
        return f"a run of another kind ({existing.get('kind')!r})"
    keys = differing(existing.get("config", {}), config)
    return f"a different {kind} run (differs in: {', '.join(keys)})" if keys else None


@dataclass
class RunDir:
    path: Path
    kind: str
    config: dict

    @classmethod
    def create(
        cls,
        path: str | Path,
        kind: str,
        config: dict,
        overwrite: bool = False,
        produces: dict[str, str] | None = None,
    ) -> RunDir:
        """Start a run in `path`, or reopen the same run there; refuse a different one.
        `produces` names what the run leaves for other commands, relative to its directory
        (a training run: {"model": "model"}), so they need not know its layout."""
        path = Path(path)
        config = jsonable(config)
        reopen_or_refuse(path, _describe(path, kind, config), overwrite)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, kind, config)
        if not (path / RUN_FILE).exists():
            run.record(config, produces)
        return run

    def record(self, config: dict, produces: dict[str, str] | None = None) -> None:
        """Write run.json and config.yaml for `config` (a new run, or a compatible change)."""
        self.config = jsonable(config)
        if produces is None:
            produces = (read_run(self.path) or {}).get("produces", {})
        record = {
            "kind": self.kind,
            "config": self.config,
            "produces": produces,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": software_versions(),
            "machine": {"platform": platform.platform(), "processor": platform.machine()},
        }
        atomic_write(self.path / RUN_FILE, to_json(record))
        atomic_write(self.path / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))

    @classmethod
    def open(cls, path: str | Path, kind: str | None = None) -> RunDir:
        """An existing run; with `kind`, it must be a run of that kind."""
        path = Path(path)
        record = read_run(path)
        if record is None:
            raise UserError(f"{path} is not a reasonlens run directory (no readable {RUN_FILE})")
        if kind is not None and record["kind"] != kind:
            raise UserError(f"{path} is not a {kind} run (its kind is {record['kind']!r})")
        return cls(path, record["kind"], record["config"])

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data: Any) -> Path:
        return write_json(self.file(name), data)

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


def read_run(path: Path) -> dict | None:
    """The run.json record of `path`, or None when there is none (or it is unreadable)."""
    try:
        record = read_json(path / RUN_FILE)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "kind" in record else None
