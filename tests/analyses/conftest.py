"""Tiny real-architecture models with config overrides, for hand-set known-answer tests."""

import pytest
import torch

from reasonlens.models.loading import LoadedModel
from reasonlens.models.tiny import tiny_model


def build_model(
    arch: str = "llama",
    n_layers: int = 2,
    seed: int = 0,
    attn_implementation: str = "eager",
    **overrides,
) -> LoadedModel:
    return tiny_model(
        arch, seed=seed, n_layers=n_layers, attn_implementation=attn_implementation, **overrides
    )


@pytest.fixture
def single_thread():
    """One torch thread for the test: on a shared, busy CPU two OpenMP threads wait on each
    other and these small forward/backward passes run tens of times slower (3 s vs 97 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_model():
    """A function building a fresh tiny model (safe to edit its weights)."""
    return build_model


def random_ids(lengths, seed=0, low=3, high=250):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(low, high, (n,), generator=gen).tolist() for n in lengths]


@pytest.fixture
def make_ids():
    return random_ids
