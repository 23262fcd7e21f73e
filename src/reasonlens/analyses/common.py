"""Helpers shared by the analyses: input checks, length-sorted batching, JSON output."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from reasonlens.errors import UserError
from reasonlens.models.loading import LoadedModel

Target = tuple[int, int]  # (position N, gold token id)


def check_inputs(
    model: LoadedModel, input_ids: Sequence[Sequence[int]], per_example: Sequence, what: str
) -> None:
    """Fail with a clear message when the per-example lists do not line up with the inputs."""
    if len(input_ids) == 0:
        raise UserError("no examples given")
    if len(per_example) != len(input_ids):
        raise UserError(
            f"{what} are given for {len(per_example)} examples but there are {len(input_ids)}"
        )
    vocab = model.vocab_size
    for e, ids in enumerate(input_ids):
        if len(ids) == 0:
            raise UserError(f"example {e} has no tokens")
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise UserError(f"example {e}: token id {bad[0]} is outside the vocabulary ({vocab})")


def check_position(e: int, pos: int, length: int, what: str) -> None:
    if not 0 <= pos < length:
        raise UserError(f"example {e}: {what} {pos} is outside its {length} tokens")


def length_batches(lengths: Sequence[int], size: int) -> Iterator[list[int]]:
    """Indices in batches of `size`, shortest first, so each batch pads as little as possible.

    The order is a stable sort, so the batches (and the numbers) are the same on every run.
    """
    if size < 1:
        raise UserError("batch size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), size):
        yield order[start : start + size]
