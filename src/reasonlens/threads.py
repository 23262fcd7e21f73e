"""How many CPU threads torch uses for a stretch of work, put back afterwards.

Fitting many small problems (probes) on a busy machine can be many times faster with one
thread than with an oversubscribed pool; the thread count can also change float rounding, so a
caller that needs numbers to match across machines fixes it. Torch is imported only when a
count is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from reasonlens.errors import UserError


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch using ``n`` CPU threads (None: leave the setting alone), then
    restore the count it had, also when the block fails."""
    if n is None:
        yield
        return
    if n < 1:
        raise UserError(f"threads must be at least 1, got {n}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
