"""The tiny-model planning study, run once for the tests that read its outputs."""

from __future__ import annotations

import pytest

import reasonlens.evaluate.task_eval  # noqa: F401  (binds the real scorer; see make_all_correct)
from reasonlens.studies import Settings, get_study, run_study
from reasonlens.studies.planning import presets
from reasonlens.studies.planning.presets import AnalysisLimits, PlanningPreset
from reasonlens.train.recipe import TrainRecipe

TINY_PRESET = PlanningPreset(
    name="tiny",
    description="test only",
    counts=((1, 4, 6, 5), (3, 4, 6, 5)),
    levels=(1, 3),
    blocks=(4,),
    train=TrainRecipe(method="full", epochs=1, batch_size=4, learning_rate=1e-3),
    eval_per_cell=None,
    analysis_blocks=None,
    limits=AnalysisLimits(analysis_set=5, flow=2, masking=2),
    horizon_levels=(1, 3),
)


@pytest.fixture
def tiny_preset() -> PlanningPreset:
    """The tiny planning preset (a fixture: test modules cannot import a conftest by name when
    several test directories have one)."""
    return TINY_PRESET


def make_all_correct(calls: list):
    """A random tiny model solves nothing: count every problem as solved when the analyses
    choose their problems. The evaluation stages keep the real scorer: `evaluate.task_eval`
    binds `score_blanks` when it is imported, which conftest does before any patch, so the
    study's numbers do not depend on which tests ran first."""
    from reasonlens.evaluate import teacher_forcing

    real = teacher_forcing.score_blanks

    def all_correct(*args, **kwargs):
        calls.append(1)
        return [
            [type(b)(**{**b.to_dict(), "correct": True}) for b in v] for v in real(*args, **kwargs)
        ]

    return all_correct


@pytest.fixture(scope="session")
def run_tiny_study(tiny_dir):
    """Run (or resume) the tiny study into a directory: (results, teacher-forcing passes)."""
    from reasonlens.evaluate import teacher_forcing

    def run(out):
        calls: list = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(presets.PRESETS, "tiny", TINY_PRESET)
            mp.setattr(teacher_forcing, "score_blanks", make_all_correct(calls))
            settings = Settings(preset="tiny", model=tiny_dir, progress=False)
            results = run_study(get_study("planning"), settings, out)
        return results, calls

    return run


@pytest.fixture(scope="session")
def tiny_study(run_tiny_study, tmp_path_factory):
    """(run directory, results) of the tiny study, run once per test session."""
    out = tmp_path_factory.mktemp("tiny-study") / "study"
    results, _ = run_tiny_study(out)
    return out, results


@pytest.fixture(scope="session")
def backtracking_study(tiny_dir, tmp_path_factory):
    """(run directory, results) of the tiny backtracking study on generated chains (the
    model's sampling replaced by the gold traces), run once per test session."""
    from tiny_backtracking import TINY, gold_samples

    from reasonlens.studies.backtracking import chains, presets

    out = tmp_path_factory.mktemp("bt-study") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(presets.PRESETS, "tiny", TINY)
        mp.setattr(chains, "sample_chains", gold_samples)
        settings = Settings(preset="tiny", model=tiny_dir, progress=False)
        results = run_study(get_study("backtracking"), settings, out)
    return out, results


@pytest.fixture(scope="session")
def backtracking_file_study(tiny_dir, tmp_path_factory):
    """(run directory, directory of the chains file) of the tiny backtracking study on a
    user's 12 annotated chains, run once per test session through the CLI."""
    from tiny_backtracking import TINY, file_run

    from reasonlens.cli import main
    from reasonlens.studies.backtracking import presets

    base = tmp_path_factory.mktemp("bt-file")
    out = base / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(presets.PRESETS, "tiny", TINY)
        try:
            main([str(a) for a in file_run(tiny_dir, base) + ["--out", out]])
        except SystemExit as exit_:
            assert exit_.code in (0, None), f"exit {exit_.code} (its stderr is above)"
    return out, base
