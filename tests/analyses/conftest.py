"""Tiny real-architecture models with config overrides, for hand-set known-answer tests."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasonlens.models.architectures import architecture_for
from reasonlens.models.loading import LoadedModel
from reasonlens.models.tiny import tiny_config, tiny_tokenizer


def build_model(
    arch: str = "llama",
    n_layers: int = 2,
    seed: int = 0,
    attn_implementation: str = "eager",
    **overrides,
) -> LoadedModel:
    tokenizer = tiny_tokenizer()
    config = tiny_config(arch, len(tokenizer), n_layers=n_layers)
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation=attn_implementation
    )
    hf.eval()
    return LoadedModel(
        name=f"tiny-{arch}", hf=hf, tokenizer=tokenizer, arch=architecture_for(hf), source="random"
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
