"""Capture activations at any set of sites and token positions, over a batched dataset.

Two entry points:

* `run_with_cache` — one forward pass over one batch, full tensors back (for patching,
  interactive work and tests);
* `capture` — a dataset, batch by batch, keeping only the chosen positions, either in memory
  (`Activations`) or streamed to an `ActivationStore` on disk, resumable.

Hooks select rows inside the forward pass, so nothing larger than the kept rows of one
batch is ever held; padding never reaches the results.

Every input is checked (token ids within the vocabulary, no empty input, positions within
each example) in one streaming pass before anything is computed or written, so a bad input
never leaves a store behind; a capture that fails later with no shard written leaves none.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reasonlens import __version__
from reasonlens.errors import UserError
from reasonlens.models.fingerprint import model_fingerprint
from reasonlens.models.loading import LoadedModel
from reasonlens.models.prompts import format_prompt, pad_batch, tokenize
from reasonlens.parallel import World
from reasonlens.progress import Progress
from reasonlens.runs.lock import held_here, release
from reasonlens.trace.hooks import ForwardContext, StopForward, site_hooks
from reasonlens.trace.inputs import JsonlInputs, TraceInput, as_inputs, fingerprint
from reasonlens.trace.sites import SiteRef, resolve_sites
from reasonlens.trace.store import (
    FORMAT,
    META,
    VERSION,
    ActivationStore,
    ShardWriter,
    mark_complete,
    prepare_store,
    shard_name,
    verify_shards,
)

log = logging.getLogger(__name__)

POSITION_MODES = ("all", "last", "given")


def run_with_cache(
    model: LoadedModel,
    batch: dict[str, torch.Tensor],
    sites: str | list[str] | list[SiteRef],
    grad: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the full tensor of every site ([batch, seq, ...]) for one forward pass."""
    refs = resolve_sites(model, sites)
    cache: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def fn(x: torch.Tensor, _ctx: ForwardContext) -> None:
            cache[name] = x if grad else x.detach()

        return fn

    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.set_grad_enabled(grad), site_hooks(model, [(r, keep(r.name)) for r in refs]):
        logits = model.hf(**batch).logits
    return logits, cache


@dataclass
class Activations:
    """Captured rows in memory, laid out exactly as in an ActivationStore."""

    sites: list[str]
    data: dict[str, torch.Tensor]
    row_offsets: torch.Tensor
    positions_: torch.Tensor
    tokens: list[list[int]]
    meta: dict = field(default_factory=dict)

    @property
    def n_examples(self) -> int:
        return len(self.tokens)

    def get(self, site: str, examples: range | slice | None = None) -> torch.Tensor:
        if site not in self.data:
            raise UserError(f"site {site!r} was not captured; captured: {', '.join(self.sites)}")
        if examples is None:
            return self.data[site]
        rng = examples if isinstance(examples, range) else range(*examples.indices(self.n_examples))
        return self.data[site][int(self.row_offsets[rng.start]) : int(self.row_offsets[rng.stop])]

    def layer(self, layer: int, site: str = "resid_post") -> torch.Tensor:
        return self.get(f"layers.{layer}.{site}")

    def example(self, index: int, site: str) -> torch.Tensor:
        return self.get(site, range(index, index + 1))

    def input_ids(self, index: int) -> list[int]:
        return self.tokens[index]

    def token_ids(self) -> list[list[int]]:
        """The exact tokens of every example, in order (as ActivationStore.token_ids)."""
        return [list(t) for t in self.tokens]

    def positions(self, examples: range | slice | None = None) -> torch.Tensor:
        if examples is None:
            return self.positions_
        rng = examples if isinstance(examples, range) else range(*examples.indices(self.n_examples))
        lo, hi = int(self.row_offsets[rng.start]), int(self.row_offsets[rng.stop])
        return self.positions_[lo:hi]


@dataclass
class CaptureStats:
    examples: int = 0
    tokens: int = 0
    seconds: float = 0.0
    bytes_written: int = 0
    seconds_writing: float = 0.0
    skipped_shards: int = 0


def _batches(items: Iterable[TraceInput], size: int) -> Iterator[list[TraceInput]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _token_ids(tok, item: TraceInput, chat: bool) -> list[int]:
    if item.input_ids is not None:
        return list(item.input_ids)
    return tokenize(tok, format_prompt(tok, item.text, chat))


def _checked(
    model: LoadedModel, items: Iterable[TraceInput], positions: str, chat: bool
) -> Iterator[TraceInput]:
    """`items`, each checked as the capture will use it (UserError on the first bad one)."""
    vocab = model.hf.get_input_embeddings().num_embeddings
    context = getattr(model.hf.config, "n_positions", None)  # learned position embeddings
    tok = model.tokenizer
    for number, item in enumerate(items):
        if item.input_ids is not None:
            bad = [t for t in item.input_ids if not 0 <= t < vocab]
            if bad:
                raise UserError(
                    f"example {number}: token id {bad[0]} is outside the model's vocabulary "
                    f"(0-{vocab - 1})"
                )
        ids = _token_ids(tok, item, chat)
        if not ids:
            raise UserError(f"example {number}: the input is empty (no tokens)")
        if context is not None and len(ids) > context:
            raise UserError(
                f"example {number}: {len(ids)} tokens, more than the model's context ({context})"
            )
        _select([len(ids)], [item], positions, number)
        yield item


def _select(lengths: list[int], items: list[TraceInput], mode: str, first: int) -> list[list[int]]:
    """Per example, the token indices to keep (validated, negatives resolved)."""
    chosen = []
    for offset, (length, item) in enumerate(zip(lengths, items, strict=True)):
        if mode == "all":
            chosen.append(list(range(length)))
        elif mode == "last":
            chosen.append([length - 1])
        else:
            if item.positions is None:
                raise UserError(f"example {first + offset}: positions='given' but it has none")
            resolved = [p + length if p < 0 else p for p in item.positions]
            bad = [p for p, r in zip(item.positions, resolved, strict=True) if not 0 <= r < length]
            if bad:
                raise UserError(
                    f"example {first + offset}: position {bad[0]} is outside its {length} tokens"
                )
            chosen.append(resolved)
    return chosen


def capture(
    model: LoadedModel,
    inputs: Iterable[TraceInput | str] | JsonlInputs,
    sites: str | list[str] | list[SiteRef],
    positions: str = "all",
    batch_size: int = 8,
    out: str | Path | None = None,
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
    chat: bool = False,
    progress: bool = True,
    stats: CaptureStats | None = None,
    world: World | None = None,
) -> Activations | ActivationStore:
    """Capture `sites` at `positions` ("all", "last", or "given" per example) over `inputs`.

    With `out`, rows stream to an ActivationStore (one shard per batch, resumable) and the
    store is returned; otherwise an in-memory `Activations`. `attn_pattern` rows are
    [heads, keys] with keys padded to the batch width, so it is kept in memory only.

    With `world` (one of several launched processes, :mod:`reasonlens.parallel`) and `out`,
    each process computes and writes the shards of its own batches (round robin) and rank 0
    alone prepares, locks and completes the store: the same store as a 1-process run.
    """
    if positions not in POSITION_MODES:
        raise UserError(f"unknown positions {positions!r}; valid: {', '.join(POSITION_MODES)}")
    if batch_size < 1:
        raise UserError("batch size must be at least 1")
    refs = resolve_sites(model, sites)
    items = as_inputs(inputs)
    stats = stats if stats is not None else CaptureStats()
    out_dtype = dtype or model.dtype
    world = world if world is not None and world.parallel and out is not None else World()
    if out is not None and any(r.site == "attn_pattern" for r in refs):
        raise UserError(
            "attn_pattern cannot be streamed to a store (its rows grow with sequence length); "
            "capture it in memory, or choose other sites"
        )
    inputs_sha, n_examples = fingerprint(_checked(model, items, positions, chat))
    if n_examples == 0:
        raise UserError("no inputs to trace")
    n_shards = -(-n_examples // batch_size)
    store_path = Path(out) if out is not None else None
    done: set[int] = set()
    writer = None
    if store_path is not None:
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "reasonlens": __version__,
            "model": model.name,
            "model_weights": model_fingerprint(model),
            "model_source": model.source,
            "architecture": model.arch.name,
            "sites": [r.name for r in refs],
            "positions": positions,
            "dtype": str(out_dtype).removeprefix("torch."),
            "shard_examples": batch_size,
            "n_examples": n_examples,
            "n_shards": n_shards,
            "inputs_sha256": inputs_sha,
            "chat_template": chat,
        }
        had_lock = held_here(store_path)
        if world.is_main:  # other processes wait for the store rank 0 prepares
            done = verify_shards(store_path, prepare_store(store_path, meta, overwrite))
        done = world.broadcast(done)
        took_lock = not had_lock and held_here(store_path)  # release it when capture ends
        stats.skipped_shards = len(done)
        writer = ShardWriter(store_path)

    names = [r.name for r in refs]
    collected: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    all_tokens: list[list[int]] = []
    all_positions: list[torch.Tensor] = []
    counts: list[int] = []
    last_layer = max(r.layer for r in refs)
    tok = model.tokenizer

    bar = Progress(progress and world.is_main, n_shards, "tracing")
    start = time.perf_counter()
    try:
        try:
            for index, chunk in enumerate(_batches(items, batch_size)):
                if index in done or not world.mine(index):
                    bar.advance()
                    continue
                ids = [_token_ids(tok, x, chat) for x in chunk]
                lengths = [len(x) for x in ids]
                keep = _select(lengths, chunk, positions, index * batch_size)
                rows = _capture_batch(model, refs, ids, keep, out_dtype, last_layer)
                row_counts = [len(k) for k in keep]
                pos = torch.tensor([p for k in keep for p in k], dtype=torch.long)
                stats.examples += len(chunk)
                stats.tokens += sum(lengths)
                if writer is not None:
                    tensors = dict(rows)
                    tensors["input_ids"] = torch.tensor(
                        [t for x in ids for t in x], dtype=torch.long
                    )
                    tensors["token_offsets"] = _offsets(lengths)
                    tensors["row_offsets"] = _offsets(row_counts)
                    tensors["positions"] = pos
                    writer.submit(index, tensors, {"first_example": str(index * batch_size)})
                else:
                    for name in names:
                        collected[name].append(rows[name])
                    all_tokens.extend(ids)
                    all_positions.append(pos)
                    counts.extend(row_counts)
                bar.advance()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
                stats.bytes_written += writer.bytes_written
                stats.seconds_writing += writer.seconds_writing
            stats.seconds += time.perf_counter() - start
    except BaseException:
        if store_path is not None and world.is_main:
            _discard_if_empty(store_path, n_shards)
            if took_lock:
                release(store_path)
        raise

    if store_path is not None:
        world.barrier()  # every process has written its shards
        if world.is_main:
            mark_complete(store_path)
        world.barrier()
        if took_lock:
            release(store_path)
        return ActivationStore(store_path)

    data = {name: _cat_rows(parts, name) for name, parts in collected.items()}
    return Activations(
        sites=names,
        data=data,
        row_offsets=_offsets(counts),
        positions_=torch.cat(all_positions),
        tokens=all_tokens,
        meta={"model": model.name, "positions": positions, "dtype": str(out_dtype)},
    )


def _discard_if_empty(path: Path, n_shards: int) -> None:
    """After a failure, a store with no shard yet holds nothing worth keeping: remove what
    was written (meta.json, the run record), so that any command, the corrected one too,
    starts afresh there. A store with shards keeps them for the same command to resume."""
    if any((path / shard_name(i)).is_file() for i in range(n_shards)):
        return
    try:
        from reasonlens.runs import clear_run
    except ImportError:  # pragma: no cover - older run layer: the store is meta.json only
        clear_run = None
    try:
        if clear_run is not None:
            clear_run(path)
        else:
            (path / META).unlink(missing_ok=True)
    except (UserError, OSError) as err:
        log.warning("could not remove the empty store %s: %s", path, err)


def _cat_rows(parts: list[torch.Tensor], name: str) -> torch.Tensor:
    if len(parts) == 1:
        return parts[0]
    if name.endswith("attn_pattern"):
        width = max(p.shape[-1] for p in parts)
        parts = [torch.nn.functional.pad(p, (0, width - p.shape[-1])) for p in parts]
    return torch.cat(parts)


def _offsets(counts: list[int]) -> torch.Tensor:
    return torch.tensor([0, *itertools.accumulate(counts)], dtype=torch.long)


def _capture_batch(
    model: LoadedModel,
    refs: list[SiteRef],
    ids: list[list[int]],
    keep: list[list[int]],
    out_dtype: torch.dtype,
    last_layer: int,
) -> dict[str, torch.Tensor]:
    """One forward pass; each hook keeps only the chosen rows, moved off the device at the end."""
    batch = pad_batch(ids, model.tokenizer.pad_token_id, "right")
    batch = {k: v.to(model.device) for k, v in batch.items()}
    width = batch["input_ids"].shape[1]
    rows_b = torch.tensor([b for b, k in enumerate(keep) for _ in k], device=model.device)
    rows_p = torch.tensor([p for k in keep for p in k], device=model.device)
    flat = rows_b * width + rows_p  # row indices into [batch * seq, d]
    kept: dict[str, torch.Tensor] = {}

    def keep_rows(name: str, pattern: bool):
        def fn(x: torch.Tensor, _ctx: ForwardContext) -> None:
            # a sharded model's layers run on several devices: index where the tensor is
            if pattern:  # attention weights are [batch, heads, query, key]
                kept[name] = x[rows_b.to(x.device), :, rows_p.to(x.device)]
            else:  # one gather of the kept rows of [batch, seq, d]
                kept[name] = x.reshape(-1, x.shape[-1]).index_select(0, flat.to(x.device))

        return fn

    hooks = [(r, keep_rows(r.name, r.site == "attn_pattern")) for r in refs]
    with (
        torch.inference_mode(),
        site_hooks(model, hooks, stop_after_layer=last_layer),
        contextlib.suppress(StopForward),
    ):
        model.hf(**batch, use_cache=False)
    return {name: x.to("cpu", out_dtype) for name, x in kept.items()}
