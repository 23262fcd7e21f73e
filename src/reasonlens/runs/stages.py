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
from reasonlens.runs.files import DAMAGED, json_kind, jsonable, read_state
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
    # say on the terminal which stage runs, and when each one is done
    announce: bool = False

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")

    @property
    def record(self) -> dict[str, dict]:
        """stages.json, checked: a damaged one is a UserError naming it (see read_record)."""
        return read_record(self.run.file(STAGES_FILE))

    def conflicts(self) -> str | None:
        """Why this run's stages cannot continue with the current inputs (None: they can)."""
        found = self.conflict()
        if found is None:
            return None
        stage, keys = found
        done = self.record[stage.name]
        old, new = done["inputs"], jsonable(stage.inputs)
        shown = "; ".join(f"{k}: {_short(_at(old, k))} -> {_short(_at(new, k))}" for k in keys[:3])
        return (
            f"stage {stage.name!r} was {done['state']} with other settings ({shown}), "
            "so its results would not match"
        )

    def conflict(self) -> tuple[Stage, list[str]] | None:
        """The first stage started or finished with other inputs, and which differ."""
        record = self.record
        for stage in self.stages:
            done = record.get(stage.name)
            if done is None:
                continue
            keys = differing(done["inputs"], jsonable(stage.inputs))
            if keys:
                return stage, keys
        return None

    def check_readable(self) -> None:
        """Refuse a run whose recorded state cannot be read back (stages.json, or the files
        of a finished stage) with a UserError naming the file. Runs nothing; what it reads is
        kept as those stages' results."""
        for stage in self.stages:
            if self.finished(stage.name) and stage.name not in self.results:
                self.results[stage.name] = self._read_back(stage)

    def damage(self) -> str | None:
        """Why this run's recorded state cannot be read back (None: it can)."""
        try:
            self.check_readable()
        except UserError as err:
            return str(err).removesuffix(f"; {DAMAGED}")
        return None

    def finished(self, name: str) -> bool:
        return self.record.get(name, {}).get("state") == "finished"

    def execute(self) -> dict[str, Any]:
        """Run every stage not yet finished, in order; return every stage's result."""
        problem = self.conflicts()
        if problem:
            raise UserError(f"{self.run.path}: {problem}; choose another --out or pass --overwrite")
        for i, stage in enumerate(self.stages, 1):
            directory = self.run.file(stage.folder)
            start = time.perf_counter()
            where = f"stage {i}/{len(self.stages)} {stage.name}"
            self._check_depends(stage)
            if self.finished(stage.name):
                log.info("stage %s: finished earlier, reading its results", stage.name)
                self._say(f"{where}: finished earlier, read back")
                if stage.name not in self.results:
                    self.results[stage.name] = self._read_back(stage)
            else:
                log.info("stage %s: running", stage.name)
                self._say(f"{where}: running")
                self._mark(stage, "started")
                stage.run(directory, dict(self.results))
                self._mark(stage, "finished")
                self.results[stage.name] = stage.load(directory)
                self._say(f"{where}: done in {time.perf_counter() - start:.0f} s")
            self._spent(stage.name, time.perf_counter() - start)
        return self.results

    def _say(self, text: str) -> None:
        if self.announce:
            from reasonlens.progress import say

            say(text)

    def load_finished(self) -> dict[str, Any]:
        """Every stage's result, read back without running anything (for re-rendering a
        report); refuses when a stage has not finished."""
        for stage in self.stages:
            if not self.finished(stage.name):
                raise UserError(
                    f"{self.run.path}: stage {stage.name!r} has not finished; re-run the study "
                    "command that made this run to finish it"
                )
            if stage.name not in self.results:
                self.results[stage.name] = self._read_back(stage)
        return self.results

    def _read_back(self, stage: Stage) -> Any:
        """A stage finished earlier, read from its files: files a reader cannot parse are a
        UserError (the readers name the file; anything else names the stage's directory)."""
        directory = self.run.file(stage.folder)
        try:
            return stage.load(directory)
        except UserError:
            raise
        except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            raise UserError(
                f"{directory}: the files of the finished stage {stage.name!r} cannot be read "
                f"back ({reason}); {DAMAGED}"
            ) from None

    def timings(self) -> dict[str, float]:
        """Seconds per stage so far. A damaged timings.json is only a record of seconds: it
        is started again from empty (with a warning), never a reason to refuse a run."""
        path = self.run.file(TIMINGS_FILE)
        if not path.exists():
            return {}
        why = "it only records seconds per stage: starting it again from empty"
        try:
            timings = read_state(path, fix=why)
            bad = [k for k, v in timings.items() if type(v) not in (int, float)]
            if bad:
                raise UserError(f"{path}: {bad[0]!r} is not a number of seconds; {why}")
        except UserError as err:
            log.warning("%s", err)
            self.run.write_json(TIMINGS_FILE, {})
            return {}
        return timings

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


STATES = ("started", "finished")


def read_record(path: Path) -> dict[str, dict]:
    """A run's stages.json ({} when there is none), every entry checked: an object with an
    'inputs' object, a 'state' of started or finished and, if any, a 'depends' object. A
    damaged one is a UserError naming the file, what is wrong and what to do."""
    if not path.exists():
        return {}
    record = read_state(path)
    for name, done in record.items():
        where = f"{path}: stage {name!r}"
        problem = None
        if not isinstance(done, dict):
            problem = f"holds {json_kind(done)}, expected a JSON object {{inputs, state}}"
        elif not isinstance(done.get("inputs"), dict):
            problem = "has no 'inputs' object"
        elif done.get("state") not in STATES:
            problem = f"has state {done.get('state')!r}, expected 'started' or 'finished'"
        elif not isinstance(done.get("depends", {}), dict):
            problem = "has a 'depends' that is not an object"
        if problem:
            raise UserError(f"{where} {problem}; {DAMAGED}")
    return record


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    Anything else is refused (or, with `overwrite`, replaced; so is the same run when its
    state files are damaged, which it cannot resume from)."""
    path = Path(path)
    existing = read_run(path)
    if existing is not None and existing.get("kind") == kind and not overwrite:
        had_lock = held_here(path)
        reopen_or_refuse(path, None, overwrite=False)  # checks --out, takes the lock
        existing = read_run(path)  # again, now that no one else writes it
        if existing is not None and existing.get("kind") == kind:
            try:
                recorded = _recorded_config(path, existing)
                run = RunDir(path, kind, recorded, _took_lock=not had_lock)
                runner = StageRunner(run, stages)
                if runner.conflict() is not None:  # refused here, before any stage runs
                    raise UserError(_changed(path, recorded, jsonable(config), runner))
                runner.check_readable()  # so is a finished stage whose files are damaged
                if differing(recorded, jsonable(config)):
                    run.record(config)
            except BaseException:
                if not had_lock:
                    release(path)
                raise
            return runner
    holds = None
    if overwrite and existing is not None and existing.get("kind") == kind:
        recorded = existing.get("config")
        run = RunDir(path, kind, recorded if isinstance(recorded, dict) else {})
        damage = StageRunner(run, stages).damage()
        if damage is not None:
            holds = lambda: f"a run whose files are damaged ({damage})"  # noqa: E731
    return StageRunner(RunDir.create(path, kind, config, overwrite=overwrite, holds=holds), stages)


def _recorded_config(path: Path, record: dict) -> dict:
    config = record.get("config")
    if not isinstance(config, dict):
        raise UserError(f"{path / 'run.json'} has no 'config' object; {DAMAGED}")
    return config


#: The settings a user chooses for a study (its config's header), and its options.
CHOSEN = ("preset", "model", "seed")


def _chosen(old: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
    """(setting, recorded, asked for) for each user-chosen setting that differs: preset,
    model, seed and every study option (a file's digest shown as its first 12 digits)."""
    out = [(k, old.get(k), new.get(k)) for k in CHOSEN if old.get(k) != new.get(k)]
    before, after = old.get("options") or {}, new.get("options") or {}
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            a, b = before.get(key), after.get(key)
            if a == b:
                continue
            if str(key).endswith("_sha256"):
                name = f"--{str(key).removesuffix('_sha256')} file content"
                a, b = (f"sha256 {v[:12]}" if isinstance(v, str) else v for v in (a, b))
                out.append((name, a, b))
            else:
                out.append((f"--{key}", a, b))
    return out


def _described(chosen: list[tuple[str, Any, Any]], which: int) -> str:
    parts = []
    for name, *values in chosen:
        value = values[which]
        if value is None:
            parts.append(f"no {name}")
        elif isinstance(value, str) and value.startswith("sha256 "):
            parts.append(f"{name} {value}")
        else:
            parts.append(f"{name} {_short(value)}")
    return " and ".join(parts)


def _changed(path: Path, recorded: dict, config: dict, runner: StageRunner) -> str:
    """Why a run cannot continue with this config: in the user's terms (the preset, model,
    seed or option it was made with) where those differ, else the stage's own inputs."""
    again = "choose another --out, or pass --overwrite to start it again"
    chosen = _chosen(recorded, config)
    found = runner.conflict()
    if not chosen or found is None:
        return f"{path}: {runner.conflicts()}; {again}"
    stage = found[0]
    state = runner.record[stage.name]["state"]
    return (
        f"{path} was made with {_described(chosen, 0)} (you asked for "
        f"{_described(chosen, 1)}), which its {state} stage {stage.name!r} depends on; {again}"
    )
