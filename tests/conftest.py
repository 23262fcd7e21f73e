import os

# Nothing in the test suite may reach for the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from reasonlens.models.tiny import tiny_model  # noqa: E402

# One thread: the suite's models are small, and on a busy 2-core machine two BLAS threads
# wait on each other (measured: 3 s vs 97 s for the analyses tests).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def default_model():
    """The real default model (SmolLM2-135M), loaded once for the slow end-to-end tests."""
    from reasonlens.models import load_model

    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random llama saved as a model directory (what --model takes)."""
    from reasonlens.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")
