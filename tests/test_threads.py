"""torch_threads: one helper for the thread count of a stretch of torch work."""

from __future__ import annotations

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.threads import torch_threads


def test_the_count_is_set_inside_and_restored_after_even_on_error():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_no_threads_is_refused_as_a_user_error():
    with pytest.raises(UserError, match="at least 1"), torch_threads(0):
        pass
