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
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasonlens import __version__
from reasonlens.errors import UserError
from reasonlens.runs.files import (
    DAMAGED,
    atomic_write,
    jsonable,
    read_json,
    to_json,
    write_json,
)
from reasonlens.runs.lock import acquire, held_here, refuse_if_held, release
from reasonlens.runs.ownership import (
    check_out,
    check_replaceable,
    clear_run,
    foreign_entries,
    has_content,
    is_legacy_run,
    read_record,
    replace_problem,
    shown,
)

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


Holds = str | None | Callable[[], str | None]


def _ask(holds: Holds) -> str | None:
    return holds() if callable(holds) else holds


def _refusal(path: Path, holds: str) -> str:
    """Why `path` is refused, and what --overwrite would (or would not) do about it."""
    said = f"{path} already holds {holds}; choose another --out"
    problem = replace_problem(path)
    if problem is None:
        return f"{said}, or pass --overwrite to replace that run"
    if read_record(path) is None and not is_legacy_run(path):
        return f"{said} (--overwrite replaces only a reasonlens run)"
    return f"{said} (--overwrite would refuse: {problem.split(';')[0]})"


def _not_a_run(path: Path) -> str | None:
    """Whatever a caller's rule says, a directory holding files but no sign of reasonlens
    (no record of what it wrote, no run.json) is never "the same run"."""
    if has_content(path) and read_record(path) is None and not is_legacy_run(path):
        return f"files that are not a reasonlens run{foreign_example(path)}"
    return None


def precheck(path: str | Path, holds: Holds, overwrite: bool) -> Path:
    """The part of :func:`reopen_or_refuse` that writes nothing: refuse early, before work
    that would be thrown away (it is checked again under the lock)."""
    path = check_out(path)
    refuse_if_held(path)
    problem = _ask(holds) or _not_a_run(path)
    if problem is not None:
        if not overwrite:
            raise UserError(_refusal(path, problem))
        check_replaceable(path)
    return path


def reopen_or_refuse(path: str | Path, holds: Holds, overwrite: bool) -> bool:
    """The one rule for a directory that may already hold work: `holds` says what is there
    that differs from what is asked for (None: nothing, or the same run); give a function to
    have it asked again once the directory is locked. Returns True when the existing work is
    kept (reopened); refuses, or with `overwrite` clears what reasonlens wrote there.

    Before anything is written: `path` must be a possible run directory (:func:`check_out`)
    that no other live process holds, and `overwrite` clears only a reasonlens run holding
    nothing reasonlens did not write. Then this process takes the directory's lock (held until
    the command ends) and asks `holds` again, so two writers never both proceed."""
    path = precheck(path, holds, overwrite)
    took = acquire(path)
    try:
        problem = _ask(holds) or _not_a_run(path)  # again, now that no one else writes here
        if problem is None:
            return has_content(path)
        if not overwrite:
            raise UserError(_refusal(path, problem))
        clear_run(path)
        return False
    except BaseException:
        if took:
            release(path)
        raise


def foreign_example(path: Path) -> str:
    """' (e.g. NAME)' for the first thing in `path` that reasonlens did not write, or ''."""
    names = foreign_entries(path)
    return f" (e.g. {shown(path, names)})" if names else ""


def _describe(path: Path, kind: str, config: dict) -> str | None:
    """What `path` holds that is not this run (None: empty, absent, or this very run)."""
    if not has_content(path):
        return None
    existing = read_run(path)
    if existing is None:
        return f"files that are not a reasonlens run{foreign_example(path)}"
    if existing.get("kind") != kind:
        return f"a run of another kind ({existing.get('kind')!r})"
    keys = differing(existing.get("config", {}), config)
    return f"a different {kind} run (differs in: {', '.join(keys)})" if keys else None


@dataclass
class RunDir:
    """A run directory. Made by :meth:`create`, it holds the directory's lock until the
    command ends; `with RunDir.create(...) as run:` releases it at the end of the block."""

    path: Path
    kind: str
    config: dict
    _took_lock: bool = field(default=False, repr=False, compare=False)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        if self._took_lock:
            self._took_lock = False
            release(self.path)

    @classmethod
    def create(
        cls,
        path: str | Path,
        kind: str,
        config: dict,
        overwrite: bool = False,
        produces: dict[str, str] | None = None,
        holds: Callable[[], str | None] | None = None,
    ) -> RunDir:
        """Start a run in `path`, or reopen the same run there; refuse a different one.
        `produces` names what the run leaves for other commands, relative to its directory
        (a training run: {"model": "model"}), so they need not know its layout. `holds`
        replaces the rule "same kind and same config is the same run" (it says what `path`
        holds that is not this run, None when it may be reopened)."""
        path = Path(path)
        config = jsonable(config)
        had_lock = held_here(path)
        reopen_or_refuse(path, holds or (lambda: _describe(path, kind, config)), overwrite)
        try:
            path.mkdir(parents=True, exist_ok=True)
            run = cls(path, kind, config, _took_lock=not had_lock and held_here(path))
            if not (path / RUN_FILE).exists():
                run.record(config, produces)
        except BaseException:
            if not had_lock:
                release(path)
            raise
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
        if not isinstance(record.get("config"), dict):
            raise UserError(f"{path / RUN_FILE} has no 'config' object; {DAMAGED}")
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
