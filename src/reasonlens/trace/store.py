"""The activation store: captured activations streamed to disk as sharded safetensors.

Layout of a store directory::

    meta.json                    what was captured: model (name and weights fingerprint),
                                 sites, positions, dtype, inputs hash
    shard-00000.safetensors      one tensor per site [rows, ...], plus the exact input tokens
    ...

Rows are the kept token positions of each example, example after example. Each shard holds
whole examples and carries `input_ids`/`token_offsets` (the tokens), `row_offsets` (which
rows belong to which example) and `positions` (each row's token index). A shard appears
only once fully written (write, then rename), so a re-run with the same configuration skips
finished shards and an interrupted capture resumes where it stopped; a shard that is there but
not whole (truncated, e.g. by a copy) is found on resume (`verify_shards`) and written again.
The store's identity includes the model's weights (`model_weights`, see
reasonlens.models.fingerprint), so a model retrained at the same path never adds its rows to
a store of the old weights. Reads are lazy: one site, or a range of examples, at a time,
memory-mapped by safetensors; a damaged shard is reported by name (UserError).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from reasonlens.errors import UserError
from reasonlens.models.fingerprint import safetensors_problem
from reasonlens.runs import (
    atomic_save_tensors,
    differing,
    read_json,
    reopen_or_refuse,
    write_json,
)

FORMAT = "reasonlens-activations"
VERSION = 1
META = "meta.json"
log = logging.getLogger(__name__)

# Configuration keys that must match for a re-run to resume an existing store.
IDENTITY_KEYS = (
    "model",
    "model_weights",
    "sites",
    "positions",
    "dtype",
    "shard_examples",
    "inputs_sha256",
)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def prepare_store(path: Path, meta: dict, overwrite: bool) -> set[int]:
    """Create or reopen a store; return the indices of shards already written.

    A directory that holds something else, or a store of a different capture, is refused
    unless `overwrite` (the one reopen-or-refuse rule of run directories, which also takes the
    directory's lock and, with `overwrite`, deletes only what reasonlens wrote there), so
    nothing already written is lost by mistake. The store is a run directory of kind "trace":
    run.json and config.yaml record the capture.
    """
    from reasonlens.runs import RUN_FILE, RunDir, clear_run

    path = Path(path)
    kept = reopen_or_refuse(path, lambda: _holds(path, meta), overwrite)
    done: set[int] = set()
    if kept and not overwrite:
        done = {i for i in range(meta["n_shards"]) if (path / shard_name(i)).is_file()}
    elif kept:  # the same capture, asked to start again
        clear_run(path)
    path.mkdir(parents=True, exist_ok=True)
    write_meta(path, {**meta, "complete": len(done) == meta["n_shards"]})
    if not (path / RUN_FILE).is_file():
        skip = ("format", "version", "reasonlens", "complete")
        config = {k: v for k, v in meta.items() if k not in skip}
        RunDir(path, "trace", config).record(config)
    return done


def _holds(path: Path, meta: dict) -> str | None:
    """What `path` holds that is not this capture (None: nothing, or this very capture)."""
    from reasonlens.runs.ownership import has_content
    from reasonlens.runs.rundir import foreign_example, read_run

    if not has_content(path):
        return None
    if not (path / META).is_file():
        run = read_run(path)
        if run is not None and run.get("kind") == "trace":
            return f"a trace run without its {META}"
        if run is not None:
            return f"a run of another kind ({run.get('kind')!r})"
        return f"files that are not an activation store{foreign_example(path)}"
    try:
        old = read_json(path / META)
    except (OSError, ValueError):
        return f"an unreadable {META}"
    if not isinstance(old, dict) or old.get("format") != FORMAT:
        return f"a {META} that is not an activation store's"
    identity = {k: meta.get(k) for k in IDENTITY_KEYS}
    differs = differing({k: old.get(k) for k in IDENTITY_KEYS}, identity)
    return f"a different capture (differs in: {', '.join(differs)})" if differs else None


def verify_shards(path: Path, done: set[int]) -> set[int]:
    """The shards of `done` that are whole (header parses, size matches it; cheap). Damaged
    ones are deleted, to be written again, and the store is marked incomplete meanwhile."""
    bad = {}
    for index in sorted(done):
        problem = safetensors_problem(path / shard_name(index))
        if problem is not None:
            bad[index] = problem
    for index, problem in bad.items():
        log.warning("%s is damaged (%s); writing it again", path / shard_name(index), problem)
        (path / shard_name(index)).unlink(missing_ok=True)
    if bad:
        meta = read_json(path / META)
        write_meta(path, {**meta, "complete": False})
    return done - set(bad)


def mark_complete(path: Path) -> None:
    meta = read_json(path / META)
    write_meta(path, {**meta, "complete": True})


def write_meta(path: Path, meta: dict) -> None:
    write_json(path / META, meta)


@dataclass
class ShardWriter:
    """Writes shards on a background thread so disk I/O overlaps the next forward pass."""

    path: Path
    max_pending: int = 2
    bytes_written: int = 0
    seconds_writing: float = 0.0
    _queue: queue.Queue = field(init=False)
    _thread: threading.Thread = field(init=False)
    _error: BaseException | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._queue = queue.Queue(maxsize=self.max_pending)
        self._thread = threading.Thread(target=self._run, name="shard-writer", daemon=True)
        self._thread.start()

    def submit(self, index: int, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
        self._raise_if_failed()
        self._queue.put((index, tensors, metadata))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue
            index, tensors, metadata = item
            try:
                start = time.perf_counter()
                final = self.path / shard_name(index)
                atomic_save_tensors(final, tensors, metadata)
                self.seconds_writing += time.perf_counter() - start
                self.bytes_written += final.stat().st_size
            except BaseException as err:  # surfaced on the main thread by submit/close
                self._error = err


class ActivationStore:
    """Read a store lazily: a site (a layer) or a range of examples at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            raise UserError(f"{self.path} is not an activation store (no {META})")
        try:
            self.meta = read_json(meta_path)
        except (OSError, ValueError, RecursionError) as err:
            raise UserError(
                f"{meta_path} is corrupt ({err}); re-run the trace command that made it"
            ) from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise UserError(f"{self.path}: {META} is not a reasonlens activation store")
        missing = [i for i in range(self.meta["n_shards"]) if not self._shard(i).is_file()]
        if missing:
            raise UserError(
                f"{self.path} is incomplete: {len(missing)} of {self.meta['n_shards']} shards "
                "missing; re-run the same trace command to resume it"
            )
        self._row_offsets: torch.Tensor | None = None

    @property
    def sites(self) -> list[str]:
        return list(self.meta["sites"])

    @property
    def n_examples(self) -> int:
        return int(self.meta["n_examples"])

    def _shard(self, index: int) -> Path:
        return self.path / shard_name(index)

    @contextlib.contextmanager
    def _open(self, index: int) -> Iterator:
        """A shard opened for reading; a damaged one is a UserError naming the file."""
        path = self._shard(index)
        try:
            with safe_open(path, framework="pt") as handle:
                yield handle
        except (SafetensorError, OSError) as err:
            problem = safetensors_problem(path) or str(err).splitlines()[0]
            raise UserError(
                f"{path} is damaged: {problem}; re-run the same trace command to write it again"
            ) from None

    def _read(self, index: int, key: str) -> torch.Tensor:
        with self._open(index) as handle:
            return handle.get_tensor(key)

    def _check_site(self, site: str) -> None:
        if site not in self.meta["sites"]:
            raise UserError(
                f"site {site!r} is not in this store; it has: {', '.join(self.meta['sites'])}"
            )

    def _shards_for(self, examples: range) -> list[int]:
        per = self.meta["shard_examples"]
        if not examples:
            return []
        return list(range(examples.start // per, (examples.stop - 1) // per + 1))

    def get(self, site: str, examples: range | slice | None = None) -> torch.Tensor:
        """Rows of one site for a range of examples (all by default), concatenated."""
        self._check_site(site)
        rng = self._range(examples)
        parts = []
        per = self.meta["shard_examples"]
        for index in self._shards_for(rng):
            first = index * per
            offsets = self._read(index, "row_offsets")
            lo, hi = max(rng.start, first) - first, min(rng.stop, first + per) - first
            with self._open(index) as handle:
                rows = handle.get_slice(site)[int(offsets[lo]) : int(offsets[hi])]
            parts.append(rows)
        if not parts:
            return torch.empty(0)
        return torch.cat(parts)

    def layer(self, layer: int, site: str = "resid_post") -> torch.Tensor:
        return self.get(f"layers.{layer}.{site}")

    def example(self, index: int, site: str) -> torch.Tensor:
        """The rows (kept positions) of one example at one site."""
        return self.get(site, range(index, index + 1))

    def input_ids(self, index: int) -> list[int]:
        """The exact tokens the model saw for one example."""
        per = self.meta["shard_examples"]
        shard, local = divmod(index, per)
        offsets = self._read(shard, "token_offsets")
        tokens = self._read(shard, "input_ids")
        return tokens[int(offsets[local]) : int(offsets[local + 1])].tolist()

    def token_ids(self) -> list[list[int]]:
        """The exact tokens of every example, in order (one read per shard)."""
        out: list[list[int]] = []
        for index in range(self.meta["n_shards"]):
            offsets = self._read(index, "token_offsets").tolist()
            tokens = self._read(index, "input_ids").tolist()
            out.extend(tokens[lo:hi] for lo, hi in zip(offsets, offsets[1:], strict=False))
        return out

    def positions(self, examples: range | slice | None = None) -> torch.Tensor:
        """Each row's token index within its example."""
        rng = self._range(examples)
        per = self.meta["shard_examples"]
        parts = []
        for index in self._shards_for(rng):
            first = index * per
            offsets = self._read(index, "row_offsets")
            lo, hi = max(rng.start, first) - first, min(rng.stop, first + per) - first
            parts.append(self._read(index, "positions")[int(offsets[lo]) : int(offsets[hi])])
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)

    def row_offsets(self) -> torch.Tensor:
        """Global row offsets: rows of example i are row_offsets[i]:row_offsets[i+1]."""
        if self._row_offsets is None:
            counts = [
                torch.diff(self._read(i, "row_offsets")) for i in range(self.meta["n_shards"])
            ]
            merged = torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)
            self._row_offsets = torch.cat([torch.zeros(1, dtype=torch.long), merged.cumsum(0)])
        return self._row_offsets

    def _range(self, examples: range | slice | None) -> range:
        if examples is None:
            return range(self.n_examples)
        if isinstance(examples, slice):
            return range(*examples.indices(self.n_examples))
        return examples

    def __repr__(self) -> str:
        return (
            f"ActivationStore({str(self.path)!r}, model={self.meta['model']!r}, "
            f"examples={self.n_examples}, sites={len(self.sites)})"
        )
