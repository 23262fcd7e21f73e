"""The preferences study's data: scenarios, target weights, every trial, and the training files.

    data/
      scenarios.json          the chosen scenarios (instilled first, then native)
      targets.csv             scenario,attr1..attr5: the target weights (drawn for all of them)
      trials.json             {split: [{scenario, a, b, target}]}: train, val, test (instilled),
                              native, report (one per self-report), introspect (training)
      train.jsonl, val.jsonl  decision examples of the instilled scenarios (rendered prompts)
      introspect.jsonl        reports of the target weights, for the first half of them
      manifest.json           which scenarios play which part, counts, the prompt texts

Everything is drawn from the seed (:mod:`reasonlens.tasks.preferences.trials`), so the same
seed and preset give the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.runs import read_state, write_json
from reasonlens.runs.files import atomic_write
from reasonlens.studies.preferences.presets import PreferencesPreset
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue
from reasonlens.tasks.preferences.release import WEIGHT_COLUMNS, read_weights, write_weights
from reasonlens.tasks.preferences.scenarios import Scenario, load_scenarios, write_scenarios_json
from reasonlens.tasks.preferences.task import record

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test", "native", "report", "introspect")


def choose(p: PreferencesPreset) -> tuple[list[str], list[str]]:
    """(instilled, native) scenario names of a preset; a UserError when the catalogue lacks
    them."""
    catalogue = load_catalogue()
    instilled, native = p.scenario_names(list(catalogue))
    names = instilled + native
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise UserError(f"preset {p.name!r}: scenarios not in the catalogue: {', '.join(unknown)}")
    if len(instilled) < p.n_instilled or len(native) < p.n_native:
        raise UserError(
            f"preset {p.name!r} needs {p.n_instilled + p.n_native} scenarios; the catalogue "
            f"has {len(catalogue)}"
        )
    if len(set(names)) != len(names):
        raise UserError(f"preset {p.name!r} names a scenario twice")
    if p.n_instilled < 2:
        raise UserError(f"preset {p.name!r}: introspection training needs 2 instilled scenarios")
    return instilled, native


@dataclass
class StudyData:
    """The data stage's files, read back."""

    directory: Path
    scenarios: dict[str, Scenario]
    targets: dict[str, tuple[float, ...]]
    trials: dict[str, list[T.Trial]]
    manifest: dict[str, Any]

    @property
    def instilled(self) -> list[str]:
        return self.manifest["instilled"]

    @property
    def native(self) -> list[str]:
        return self.manifest["native"]

    @property
    def held_out(self) -> list[str]:
        """The instilled scenarios introspection training does not see."""
        return self.manifest["introspect_test"]

    def file(self, name: str) -> Path:
        return self.directory / name

    def subset(self, names: list[str]) -> dict[str, Scenario]:
        return {n: self.scenarios[n] for n in names}


def make_data(p: PreferencesPreset, seed: int, tokenizer, directory: Path) -> None:
    """Draw and write everything (see the module docstring)."""
    catalogue = load_catalogue()
    instilled, native = choose(p)
    scenarios = {n: catalogue[n] for n in instilled + native}
    targets = {n: T.draw_targets(s, seed) for n, s in scenarios.items()}
    splits: dict[str, list[T.Trial]] = {k: [] for k in SPLITS}
    for name in instilled:
        s, w = scenarios[name], targets[name]
        seen = T.draw_trials(s, w, p.train_trials + p.val_trials, seed, "train")
        train = seen[: p.train_trials]
        val = seen[p.train_trials :]
        if p.mirror:
            # each training trial twice, the second with its options swapped (the target
            # flips): both letters are equally often right, so the loss falls only by
            # reading the values
            swapped = [T.make_trial(s, w, t.b, t.a) for t in train]
            train = [x for pair in zip(train, swapped, strict=True) for x in pair]
        splits["train"] += train
        splits["val"] += val
        # no test trial is a trained or validation trial, nor one of their mirrors (the same
        # options in the other order), whether or not the mirrors were trained on
        mirrors = [T.make_trial(s, w, t.b, t.a) for t in seen]
        splits["test"] += T.draw_trials(s, w, p.test_trials, seed, "test", avoid=seen + mirrors)
    for name in native:
        s = scenarios[name]
        splits["native"] += T.draw_trials(s, targets[name], p.native_trials, seed, "native")
    for name in instilled + native:
        s = scenarios[name]
        splits["report"] += T.draw_trials(s, targets[name], p.reports, seed, "report")
    half = len(instilled) // 2
    trained, held_out = instilled[:half], instilled[half:]
    for name in trained:
        s = scenarios[name]
        splits["introspect"] += T.draw_trials(
            s, targets[name], p.introspect_examples, seed, "introspect"
        )

    directory.mkdir(parents=True, exist_ok=True)
    write_scenarios_json(directory / "scenarios.json", scenarios.values())
    write_weights(directory / "targets.csv", targets, columns=WEIGHT_COLUMNS)
    write_json(directory / "trials.json", {k: [t.to_dict() for t in v] for k, v in splits.items()})
    for split in ("train", "val"):
        _write_jsonl(
            directory / f"{split}.jsonl", decision_records(tokenizer, scenarios, splits[split])
        )
    _write_jsonl(
        directory / "introspect.jsonl",
        report_records(tokenizer, scenarios, targets, splits["introspect"]),
    )
    shares = {k: _share_a(v) for k, v in splits.items() if k in ("train", "val", "test", "native")}
    write_json(
        directory / MANIFEST,
        {
            "seed": seed,
            "instilled": instilled,
            "native": native,
            "introspect_train": trained,
            "introspect_test": held_out,
            "counts": {k: len(v) for k, v in splits.items()},
            "target_share_a": shares,
            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
            "system": T.SYSTEM,
            "decision_task": T.DECISION_TASK,
            "introspection_task": T.INTROSPECTION_TASK,
            "streams": T.STREAMS,
        },
    )


def _share_a(trials: list[T.Trial]) -> float | None:
    return sum(t.target == "A" for t in trials) / len(trials) if trials else None


def decision_records(tokenizer, scenarios: dict[str, Scenario], trials: list[T.Trial]) -> list:
    out = []
    for t in trials:
        s = scenarios[t.scenario]
        prompt = T.render(tokenizer, T.decision_prompt(s, t.a, t.b))
        out.append(record("decision", t.scenario, s.names, t.a, t.b, prompt, t.target))
    return out


def report_records(tokenizer, scenarios, targets, trials: list[T.Trial]) -> list:
    out = []
    for t in trials:
        s = scenarios[t.scenario]
        prompt = T.render(tokenizer, T.introspection_prompt(s, t.a, t.b))
        completion = T.report_json(s, targets[t.scenario])
        out.append(record("report", t.scenario, s.names, t.a, t.b, prompt, completion))
    return out


def _write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_data(directory: Path) -> StudyData:
    directory = Path(directory)
    scenarios = load_scenarios(directory / "scenarios.json")
    targets = read_weights(directory / "targets.csv", scenarios)
    raw = read_state(directory / "trials.json")
    trials = {k: [T.Trial.from_dict(d) for d in raw[k]] for k in SPLITS}
    return StudyData(directory, scenarios, targets, trials, read_state(directory / MANIFEST))
