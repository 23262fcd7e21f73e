"""Whole data sets: presets, the resolved configuration, and the directory they are written to.

Directory layout (recorded in ``manifest.json``): one file per level and split,
``L{k}_train.jsonl`` and ``L{k}_test.jsonl``, holding every requested block count for that
level in increasing order of blocks, beside run.json/config.yaml (the directory is a run of kind
"data"). Files are written atomically and the manifest last, so a directory with a manifest is
complete, and re-running the same command after an interruption finishes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError, one_of
from reasonlens.runs import RunDir, differing, read_run
from reasonlens.runs.files import atomic_write, write_json
from reasonlens.runs.lock import holding
from reasonlens.runs.ownership import has_content
from reasonlens.runs.rundir import foreign_example, precheck
from reasonlens.tasks.blocksworld.colors import DEFAULT_COLORS, PAPER_COLORS
from reasonlens.tasks.blocksworld.example import Example
from reasonlens.tasks.blocksworld.files import examples_to_jsonl
from reasonlens.tasks.blocksworld.formats import PAPER, SEED, check_format
from reasonlens.tasks.blocksworld.generate import generate_split, parse_level
from reasonlens.tasks.blocksworld.planner import MAX_BLOCKS

#: The paper's Table 1: (blocks, level) -> (train, test). Totals 567 / 1579.
PAPER_TABLE1: dict[tuple[int, int], tuple[int, int]] = {
    (4, 1): (3, 24),
    (4, 2): (17, 60),
    (4, 3): (25, 80),
    (5, 1): (1, 34),
    (5, 2): (23, 115),
    (5, 3): (121, 268),
    (6, 1): (3, 57),
    (6, 2): (48, 232),
    (6, 3): (326, 709),
}


@dataclass(frozen=True)
class Preset:
    """Defaults a preset stands for; every one can be overridden."""

    name: str
    description: str
    format: str
    colors: tuple[str, ...]
    slots: int = 4
    levels: tuple[int, ...] = (1, 2, 3)
    blocks: tuple[int, ...] = (4, 5, 6)


PRESETS = {
    "paper": Preset(
        "paper",
        "the paper's Table 1 (567 train / 1579 test), its layout, 4 slots, Figure 2's colours",
        PAPER,
        PAPER_COLORS,
    ),
    "seed": Preset(
        "seed",
        "Table 1's counts in the public reproduction's JSONL layout (instruction/input/output)",
        SEED,
        DEFAULT_COLORS,
    ),
}

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines a data set's bytes."""

    preset: str
    seed: int
    format: str
    slots: int
    colors: tuple[str, ...]
    levels: tuple[int, ...]
    blocks: tuple[int, ...]
    counts: tuple[tuple[int, int, int, int], ...]  # (level, blocks, train, test)

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "seed": self.seed,
            "format": self.format,
            "slots": self.slots,
            "colors": list(self.colors),
            "levels": [f"L{k}" for k in self.levels],
            "blocks": list(self.blocks),
            "counts": [
                {"level": f"L{lv}", "blocks": b, "train": tr, "test": te}
                for lv, b, tr, te in self.counts
            ],
        }


def resolve_config(
    preset: str = "paper",
    *,
    levels: Sequence[str | int] | None = None,
    blocks: Sequence[int] | None = None,
    train: int | None = None,
    test: int | None = None,
    seed: int = 0,
    slots: int | None = None,
    colors: Sequence[str] | None = None,
    fmt: str | None = None,
) -> DatasetConfig:
    """Fill in a preset's defaults and check the request.

    ``train``/``test`` are counts per (level, block count); give either to leave Table 1 (the
    other then defaults to 0). Without them, every requested cell must be in Table 1.
    """
    if preset not in PRESETS:
        raise one_of("preset", preset, PRESETS)
    p = PRESETS[preset]
    lv = tuple(sorted({parse_level(x) for x in levels})) if levels else p.levels
    bl = tuple(sorted(set(blocks))) if blocks else p.blocks
    fmt = check_format(fmt or p.format)
    n_slots = p.slots if slots is None else slots
    if not 1 <= n_slots <= MAX_BLOCKS:
        raise UserError(
            f"--slots must be 1..{MAX_BLOCKS}, got {n_slots} (a table never holds more piles "
            f"than there are blocks, and at most {MAX_BLOCKS} blocks are supported)"
        )
    palette = tuple(colors) if colors else p.colors
    counts = []
    for level in lv:
        for b in bl:
            if train is None and test is None:
                if (b, level) not in PAPER_TABLE1:
                    raise UserError(
                        f"Table 1 has no counts for L{level} with {b} blocks; "
                        "pass --train N --test N"
                    )
                n_train, n_test = PAPER_TABLE1[(b, level)]
            else:
                n_train, n_test = train or 0, test or 0
            counts.append((level, b, n_train, n_test))
    return DatasetConfig(preset, seed, fmt, n_slots, palette, lv, bl, tuple(counts))


def file_name(level: int, split: str) -> str:
    return f"L{level}_{split}.jsonl"


def generate_dataset(config: DatasetConfig) -> dict[str, list[Example]]:
    """File name -> examples, for every level and split of ``config``."""
    files: dict[str, list[Example]] = {}
    for level, b, n_train, n_test in config.counts:
        train, test = generate_split(
            b,
            level,
            n_train=n_train,
            n_test=n_test,
            slots=config.slots,
            colors=config.colors,
            fmt=config.format,
            seed=config.seed,
        )
        files.setdefault(file_name(level, "train"), []).extend(train)
        files.setdefault(file_name(level, "test"), []).extend(test)
    return files


def _manifest(
    config: DatasetConfig, texts: dict[str, str], files: dict[str, list[Example]]
) -> dict[str, Any]:
    entries = {}
    totals = {"train": 0, "test": 0}
    for name, examples in files.items():
        split = "train" if name.endswith("_train.jsonl") else "test"
        by_blocks: dict[str, int] = {}
        for ex in examples:
            by_blocks[str(ex.n_blocks)] = by_blocks.get(str(ex.n_blocks), 0) + 1
        totals[split] += len(examples)
        entries[name] = {
            "split": split,
            "level": name.split("_")[0],
            "examples": len(examples),
            "by_blocks": by_blocks,
            "sha256": hashlib.sha256(texts[name].encode()).hexdigest(),
        }
    return {
        "task": "blocksworld",
        "version": MANIFEST_VERSION,
        "config": config.to_dict(),
        "layout": (
            "one file per level and split (L{k}_train.jsonl, L{k}_test.jsonl); one example per "
            "line, ordered by number of blocks; test problems are distinct, have a unique "
            "optimal plan and never occur in train"
        ),
        "totals": totals,
        "files": entries,
    }


KIND = "data"  # the run.json kind of a data-set directory


def dataset_settings(config: DatasetConfig) -> dict[str, Any]:
    """The config recorded in a data set's run.json (and config.yaml)."""
    return {"task": "blocksworld", **config.to_dict()}


def write_dataset(
    config: DatasetConfig, out_dir: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Generate ``config`` into ``out_dir`` and return the manifest written there.

    ``out_dir`` is a run directory of kind "data" (run.json and config.yaml first, then the
    files, the manifest last), locked while it is written. The same configuration is written
    again (byte-identical), which is how an interrupted run resumes; a different data set,
    another kind of run or files that are not a run are refused, unless ``overwrite`` (which
    replaces only a reasonlens run, never a user's files).
    """
    out = Path(out_dir)
    settings = dataset_settings(config)

    def holds() -> str | None:
        return _holds(out, settings)

    precheck(out, holds, overwrite)  # refuse before the work, not after it
    with holding(out):  # one writer from here on
        files = generate_dataset(config)  # a request that cannot be met fails: nothing left
        texts = {name: examples_to_jsonl(examples) for name, examples in files.items()}
        with RunDir.create(out, KIND, settings, overwrite=overwrite, holds=holds):
            for name, text in texts.items():
                atomic_write(out / name, text)
            manifest = _manifest(config, texts, files)
            write_json(out / MANIFEST, manifest)
    return manifest


def _holds(out: Path, settings: dict[str, Any]) -> str | None:
    """What ``out`` holds that is not this data set (None: nothing, or this very data set)."""
    if not has_content(out):
        return None
    run = read_run(out)
    if run is None:
        if (out / MANIFEST).is_file():
            return "a data set made by an older reasonlens (it has no run.json)"
        return f"files that are not a reasonlens run{foreign_example(out)}"
    if run.get("kind") != KIND:
        return f"a run of another kind ({run.get('kind')!r})"
    keys = differing(run.get("config", {}), settings)
    if keys:
        return f"a different Blocksworld data set (differs in: {', '.join(keys)})"
    return None
