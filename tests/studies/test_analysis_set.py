"""The analysis set: candidates scored in a seeded order only until enough are solved."""

from __future__ import annotations

import pytest

from reasonlens.studies.planning.analyses import select_analysis_set
from reasonlens.tasks.blocksworld import generate_problems


@pytest.fixture(scope="module")
def candidates():
    return generate_problems(4, 2, 40, unique=True, seed=3)


def _scorer(monkeypatch, scored: list):
    """Every third problem (by id) solved; each scored problem recorded."""
    from reasonlens.evaluate import teacher_forcing

    real = teacher_forcing.score_blanks

    def fake(model, examples, batch_size=16, **_kw):
        out = real(model, examples, batch_size=batch_size)
        scored.extend(examples)
        return [
            [type(b)(**{**b.to_dict(), "correct": hash(ex.input_ids) % 3 == 0}) for b in v]
            for ex, v in zip(examples, out, strict=True)
        ]

    monkeypatch.setattr(teacher_forcing, "score_blanks", fake)


def test_scoring_stops_once_enough_are_solved_and_picks_the_same_set(
    tiny_llama, candidates, monkeypatch, tmp_path
):
    scored: list = []
    _scorer(monkeypatch, scored)
    every, counts_all = select_analysis_set(tiny_llama, candidates, 40, seed=1, batch_size=4)
    assert counts_all["scored"] == 40 == len(scored)
    scored.clear()
    few, counts = select_analysis_set(tiny_llama, candidates, 3, seed=1, batch_size=4)
    assert counts["solved"] >= 3 and counts["chosen"] == 3
    assert counts["scored"] < 40 and len(scored) == counts["scored"]
    ids = [it.example.problem_id for it in few]
    assert ids == [it.example.problem_id for it in every][:3]
    # a cache: the second call scores nothing it already scored
    cache = tmp_path / "solved.json"
    scored.clear()
    select_analysis_set(tiny_llama, candidates, 3, seed=1, batch_size=4, cache=cache)
    first = len(scored)
    again, _ = select_analysis_set(tiny_llama, candidates, 3, seed=1, batch_size=4, cache=cache)
    assert len(scored) == first and [it.example.problem_id for it in again] == ids
    # a larger set resumes from the cached verdicts
    more, _ = select_analysis_set(tiny_llama, candidates, 6, seed=1, batch_size=4, cache=cache)
    assert [it.example.problem_id for it in more][:3] == ids
