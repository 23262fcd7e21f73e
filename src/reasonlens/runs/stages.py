"""The stage runner: one resume rule, one timing record and one log for every study.

A study is a list of :class:`Stage` s. Each has a name, a directory inside the study's run
directory, the settings its output depends on (`inputs`), a function that does the work and
one that reads the finished result back. The runner keeps `stages.json` beside them:

    {"train": {"inputs": {...}, "state": "started" | "finished"}, ...}

* a finished stage is not run again: its result is read back (`load`);
* a started stage runs again, and resumes inside itself where it can (training checkpoints,
  activation shards, per-analysis files);
* a stage that was started or finished with *other* inputs is refused before anything runs,
  naming the setting that changed: its files were computed from the old value. Settings that
  only stages not yet started depend on may change freely (the new config is recorded).

Seconds spent per stage go to `timings.json`, summed over the sessions that ran the study, so a
resumed session adds only the work it actually did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.runs.files import jsonable, read_json
from reasonlens.runs.lock import held_here, release
from reasonlens.runs.rundir import RunDir, differing, read_run, reopen_or_refuse

log = logging.getLogger(__name__)

STAGES_FILE = "stages.json"
TIMINGS_FILE = "timings.json"


@dataclass(frozen=True)
class Stage:
    """One step of a study. `run(directory, upstream)` does the work into `directory`
    (`upstream`: the results of the stages before it, by name); `load(directory)` reads a
    finished stage's result."""

    name: str
    inputs: Mapping[str, Any]
    run: Callable[[Path, dict[str, Any]], Any]
    load: Callable[[Path], Any]
    directory: str = ""  # default: the stage's name
    # inputs known only once the stages before it have run (e.g. the weights a training stage
    # produced), computed from their results; checked like `inputs`
    depends: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None
    # what the stage is, for the report builder: "train" stages make the training section
    kind: str = ""

    @property
    def folder(self) -> str:
        return self.directory or self.name


@dataclass
class StageRunner:
    run: RunDir
    stages: Sequence[Stage]
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")

    @property
    def record(self) -> dict[str, dict]:
        path = self.run.file(STAGES_FILE)
        return read_json(path) if path.is_file() else {}

    def conflicts(self) -> str | None:
        """Why this run's stages cannot continue with the current inputs (None: they can)."""
        record = self.record
        for stage in self.stages:
            done = record.get(stage.name)
            if done is None:
                continue
            keys = differing(done["inputs"], jsonable(stage.inputs))
            if keys:
                old, new = done["inputs"], jsonable(stage.inputs)
                shown = "; ".join(f"{k}: {_at(old, k)!r} -> {_at(new, k)!r}" for k in keys[:3])
                return (
                    f"stage {stage.name!r} was {done['state']} with other settings ({shown}), "
                    "so its results would not match"
                )
        return None

    def finished(self, name: str) -> bool:
        return self.record.get(name, {}).get("state") == "finished"

    def execute(self) -> dict[str, Any]:
        """Run every stage not yet finished, in order; return every stage's result."""
        problem = self.conflicts()
        if problem:
            raise UserError(f"{self.run.path}: {problem}; choose another --out or pass --overwrite")
        for stage in self.stages:
            directory = self.run.file(stage.folder)
            start = time.perf_counter()
            self._check_depends(stage)
            if self.finished(stage.name):
                log.info("stage %s: finished earlier, reading its results", stage.name)
            else:
                log.info("stage %s: running", stage.name)
                self._mark(stage, "started")
                stage.run(directory, dict(self.results))
                self._mark(stage, "finished")
            self.results[stage.name] = stage.load(directory)
            self._spent(stage.name, time.perf_counter() - start)
        return self.results

    def load_finished(self) -> dict[str, Any]:
        """Every stage's result, read back without running anything (for re-rendering a
        report); refuses when a stage has not finished."""
        for stage in self.stages:
            if not self.finished(stage.name):
                raise UserError(
                    f"{self.run.path}: stage {stage.name!r} has not finished; re-run the study "
                    "command that made this run to finish it"
                )
            self.results[stage.name] = stage.load(self.run.file(stage.folder))
        return self.results

    def timings(self) -> dict[str, float]:
        path = self.run.file(TIMINGS_FILE)
        return read_json(path) if path.is_file() else {}

    def _upstream(self, stage: Stage) -> dict:
        return jsonable(stage.depends(self.results)) if stage.depends else {}

    def _check_depends(self, stage: Stage) -> None:
        """A stage started or finished on other upstream outputs (retrained weights) is
        refused: its files were computed from those."""
        done = self.record.get(stage.name)
        if done is None:
            return
        keys = differing(done.get("depends", {}), self._upstream(stage))
        if keys:
            raise UserError(
                f"{self.run.path}: stage {stage.name!r} was {done['state']} on other outputs of "
                f"the stages before it ({', '.join(keys)} changed), so its results would not "
                "match; choose another --out or pass --overwrite"
            )

    def _mark(self, stage: Stage, state: str) -> None:
        record = self.record
        record[stage.name] = {"inputs": jsonable(stage.inputs), "state": state}
        if stage.depends:
            record[stage.name]["depends"] = self._upstream(stage)
        self.run.write_json(STAGES_FILE, record)

    def _spent(self, name: str, seconds: float) -> None:
        timings = self.timings()
        timings[f"{name}_s"] = timings.get(f"{name}_s", 0.0) + seconds
        self.run.write_json(TIMINGS_FILE, timings)


def _at(mapping: Mapping, dotted: str) -> Any:
    value: Any = mapping
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def open_staged_run(
    path: str | Path, kind: str, config: dict, stages: Sequence[Stage], overwrite: bool = False
) -> StageRunner:
    """The run directory of a staged job: new, the same run reopened, or the same kind of run
    with settings changed that no started stage depends on (the new config is recorded).
    Anything else is refused (or, with `overwrite`, replaced)."""
    path = Path(path)
    existing = read_run(path)
    if existing is not None and existing.get("kind") == kind and not overwrite:
        had_lock = held_here(path)
        reopen_or_refuse(path, None, overwrite=False)  # checks --out, takes the lock
        existing = read_run(path)  # again, now that no one else writes it
        if existing is not None and existing.get("kind") == kind:
            try:
                run = RunDir(path, kind, existing["config"], _took_lock=not had_lock)
                runner = StageRunner(run, stages)
                problem = runner.conflicts()  # refused here, before any stage runs
                if problem:
                    raise UserError(f"{path}: {problem}; choose another --out or pass --overwrite")
                if differing(existing["config"], jsonable(config)):
                    run.record(config)
            except BaseException:
                if not had_lock:
                    release(path)
                raise
            return runner
    return StageRunner(RunDir.create(path, kind, config, overwrite=overwrite), stages)
