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


def _preferences_tiny_preset():
    from reasonlens.studies.preferences.presets import PreferencesPreset
    from reasonlens.train.recipe import Lora, Recipe, TrainRecipe

    return PreferencesPreset(
        name="tiny",
        description="test only",
        n_instilled=4,
        n_native=2,
        instil=Recipe(TrainRecipe(method="full", epochs=1, batch_size=4, learning_rate=1e-3)),
        introspect=Recipe(
            TrainRecipe(method="lora", epochs=1, batch_size=4, learning_rate=1e-3),
            lora=Lora(4, 8),
        ),
        train_trials=6,
        val_trials=2,
        test_trials=8,
        native_trials=8,
        reports=2,
        introspect_examples=2,
        report_tokens=6,
        n_boot=50,
        smoke=True,  # 4 scenarios: fewer than a CI needs
    )


@pytest.fixture(scope="session")
def preferences_tiny_preset():
    """The tiny preferences preset (a fixture: test modules cannot import a conftest by name)."""
    return _preferences_tiny_preset()


@pytest.fixture(scope="session")
def run_preferences_study(tiny_dir, preferences_tiny_preset):
    """Run (or resume) the tiny preferences study into a directory; its results."""
    from reasonlens.studies import Settings, get_study, run_study
    from reasonlens.studies.preferences import presets

    def run(out):
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(presets.PRESETS, "tiny", preferences_tiny_preset)
            settings = Settings(preset="tiny", model=tiny_dir, progress=False)
            return run_study(get_study("preferences"), settings, out)

    return run


@pytest.fixture(scope="session")
def preferences_study(run_preferences_study, tmp_path_factory):
    """(run directory, results) of the tiny preferences study, run once per test session (for
    tests/preferences: its own conftest holds the synthetic release files)."""
    out = tmp_path_factory.mktemp("prefs-study") / "run"
    return out, run_preferences_study(out)
