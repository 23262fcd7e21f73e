"""The planning study end to end on a tiny model: every stage, every file, resumable."""

import json

import numpy as np
import pytest

from reasonlens.studies.planning import presets


def test_study_runs_every_stage_and_resumes(tiny_study, run_tiny_study):
    out, results = tiny_study
    for name in (
        "run.json",
        "config.yaml",
        "timings.json",
        "results.json",
        "summary.md",
        "report.md",
        "report.html",
        "accuracy.png",
        "data/manifest.json",
        "train/model/config.json",
        "eval_base/results.json",
        "eval_finetuned/examples.jsonl",
        "analyses/extraction.json",
        "analyses/flow.json",
        "analyses/masking.json",
        "analyses/information_flow.png",
        "analyses/history_intervention.png",
        "analyses/probes.json",
        "analyses/probe_state_linear.png",
        "analyses/probe_future_matrix.png",
        "analyses/horizon_L1/probes.json",
        "analyses/solved_L3_b4.json",
        "analyses/extraction_per_problem.safetensors",
        "analyses/flow_per_problem.safetensors",
        "analyses/masking_per_problem.safetensors",
        "analyses/solved_L1_b4.json",
    ):
        assert (out / name).is_file(), name
    assert results["analysis_set"]["chosen"] == 5
    assert (out / "analyses" / "horizons.png").is_file()
    # L3 is the main analysis level: its future-decision probes are reused, not refitted
    assert not (out / "analyses" / "horizon_L3").exists()
    assert set(results["analyses"]["horizons"]["future_matrix_linear"]) == {"L1", "L3"}
    assert set(results["eval"]["finetuned"]["by_cell"]) == {"L1/4", "L3/4"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Extraction rate" in html
    # five problems cannot support or refute a claim: the report must not pretend they do
    report = (out / "report.md").read_text()
    assert "not measurable (5 problems: a verdict needs at least 30)" in report
    assert "Beyond the paper: longer plans" in report and "| L1 | 5 of 5 | 5 |" in report
    assert "| agrees" not in report and "| differs" not in report and "| unclear" not in report
    before = (out / "results.json").read_text()
    again, calls = run_tiny_study(out)
    assert json.loads(before)["eval"] == json.loads(json.dumps(again["eval"]))
    assert calls == [], "a resumed study re-scored problems whose verdicts it had kept"
    assert again["analysis_set"] == results["analysis_set"]
    # a resumed session adds only what it spent: the training time stays that of the training
    trained, resumed = results["timings_s"]["train_s"], again["timings_s"]["train_s"]
    assert trained <= resumed < trained + 5.0


def test_horizon_figure_from_future_matrices(tmp_path):
    from reasonlens.studies.planning.horizons import plot_horizons, reach_by_distance

    matrix = {
        "probe": {"2": {"1": 0.9}, "3": {"1": 0.5, "2": 0.8}},
        "baseline": {"2": {"1": 0.4}, "3": {"1": 0.3, "2": 0.4}},
    }
    reach = reach_by_distance(matrix)
    assert reach[1] == pytest.approx((0.85, 0.4)) and reach[2] == pytest.approx((0.5, 0.3))
    path = plot_horizons({3: matrix, 4: matrix}, tmp_path / "h.png", "test")
    assert path.stat().st_size > 1000


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_asks_for_problems_that_exist(name):
    """A preset whose cell asks for more unique-optimal problems than exist would fail only
    after minutes of a real run; check the counts against the exact pool sizes."""
    from reasonlens.tasks.blocksworld.generate import count_problems

    p = presets.PRESETS[name]
    config = p.dataset(seed=0)
    for level, blocks, n_train, n_test in p.counts:
        assert level in p.levels and blocks in p.blocks
        available = count_problems(
            blocks, level, slots=config.slots, colors=config.colors, unique=True
        )
        assert n_train + n_test <= available, (name, level, blocks, available)
    assert p.analysis_level in p.levels
    assert set(p.horizon_levels) <= set(p.levels)


def test_future_matrix_grid_puts_each_cell_at_future_row_and_current_column(tmp_path):
    from reasonlens.studies.planning.future_matrix import _grid, plot_future_matrix

    matrix = {"probe": {"2": {"1": 0.5}, "3": {"1": 0.25, "2": float("nan")}}}
    grid = _grid(matrix["probe"], 3)
    assert grid[1, 0] == 0.5 and grid[2, 0] == 0.25
    assert np.isnan(grid[2, 1]) and np.isnan(grid[0]).all()  # no step-1 row: nothing precedes it
    matrix["baseline"] = {"2": {"1": 0.1}, "3": {"1": 0.1, "2": 0.1}}
    path = plot_future_matrix(matrix, {2: {1: 0.85}}, tmp_path / "m.png", "t")
    assert path.is_file() and path.stat().st_size > 1000
