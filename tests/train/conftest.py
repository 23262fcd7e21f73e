"""Shared fixtures: a tiny saved model, small data files, and a quick config."""

from __future__ import annotations

import json

import pytest
import torch

from reasonlens.tasks.blocksworld import generate_dataset, resolve_config, write_examples
from reasonlens.train import TrainConfig


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models gain nothing from threads, and on a busy machine threads spin: 1 is
    several times faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bw_examples():
    files = generate_dataset(resolve_config("paper", levels=[1, 2], blocks=[4], train=8, test=0))
    return files["L1_train.jsonl"] + files["L2_train.jsonl"]  # 16 examples, 2 and 4 steps


@pytest.fixture(scope="session")
def bw_file(tmp_path_factory, bw_examples):
    path = tmp_path_factory.mktemp("data") / "bw_train.jsonl"
    write_examples(path, bw_examples)
    return str(path)


@pytest.fixture(scope="session")
def generic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "qa.jsonl"
    rows = [{"prompt": f"Q: {i} plus one?\nA:", "completion": f" {i + 1}"} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def quick(tiny_dir, bw_file):
    """A TrainConfig for a few CPU steps on the tiny model; keyword arguments override."""

    def make(**kwargs) -> TrainConfig:
        values = dict(
            data=[bw_file],
            model=tiny_dir,
            method="lora",
            max_steps=4,
            batch_size=2,
            learning_rate=1e-3,
            save_steps=2,
            device="cpu",
        )
        values.update(kwargs)
        return TrainConfig(**values)

    return make
