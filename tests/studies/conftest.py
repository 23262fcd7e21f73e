"""The tiny-model planning study, run once for the tests that read its outputs."""

from __future__ import annotations

import pytest

from reasonlens.studies import planning
from reasonlens.studies.planning_analyses import AnalysisLimits

TINY_PRESET = planning.PlanningPreset(
    name="tiny",
    description="test only",
    counts=((1, 4, 6, 5), (3, 4, 6, 5)),
    levels=(1, 3),
    blocks=(4,),
    train={"method": "full", "epochs": 1, "batch_size": 4, "learning_rate": 1e-3},
    eval_per_cell=None,
    analysis_blocks=None,
    limits=AnalysisLimits(analysis_set=5, flow=2, masking=2),
    horizon_levels=(1, 3),
)


def make_all_correct(calls: list):
    """A random tiny model solves nothing: count every problem as solved for the analyses."""
    from reasonlens.evaluate import teacher_forcing

    real = teacher_forcing.score_blanks

    def all_correct(*args, **kwargs):
        calls.append(1)
        return [
            [type(b)(**{**b.to_dict(), "correct": True}) for b in v] for v in real(*args, **kwargs)
        ]

    return all_correct


@pytest.fixture(scope="module")
def run_tiny_study(tiny_dir):
    """Run (or resume) the tiny study into a directory: (results, teacher-forcing passes)."""
    from reasonlens.evaluate import teacher_forcing

    def run(out):
        calls: list = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(planning.PRESETS, "tiny", TINY_PRESET)
            mp.setattr(teacher_forcing, "score_blanks", make_all_correct(calls))
            results = planning.run_planning_study("tiny", tiny_dir, out, progress=False)
        return results, calls

    return run


@pytest.fixture(scope="module")
def tiny_study(run_tiny_study, tmp_path_factory):
    """(run directory, results) of the tiny study, run once per test module."""
    out = tmp_path_factory.mktemp("tiny-study") / "study"
    results, _ = run_tiny_study(out)
    return out, results
