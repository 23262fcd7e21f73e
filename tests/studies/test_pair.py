"""`reasonlens pair` on a tiny model with a tiny preset: the stages run (data, warm-up,
distilled, rl, eval), the three problem sets are disjoint, pair.json says which model is
which and the arms load as models, every model is evaluated on the same held-out problems with
CIs, and a re-run resumes without re-running anything."""

from __future__ import annotations

import json

import pytest

from reasonlens.studies.pair import presets
from reasonlens.studies.pair.presets import PairPreset, TaskPlan
from reasonlens.testing import run_cli
from reasonlens.train.recipe import GrpoRecipe, Recipe, TrainRecipe

_SFT = Recipe(
    TrainRecipe(method="full", epochs=1, batch_size=4, learning_rate=1e-3), max_length=1024
)
_RL = GrpoRecipe(
    weights="lora", max_steps=2, prompts_per_step=2, num_generations=2,
    max_completion_length=8, batch_size=4, learning_rate=1e-3,
)  # fmt: skip
TINY = PairPreset(
    "tiny",
    "test only",
    {
        "blocksworld": TaskPlan(8, 6, 4, _SFT, _SFT, _RL, eval_batch=4, max_new_tokens=8),
        "maze": TaskPlan(0, 6, 4, None, _SFT, _RL, eval_batch=4, max_new_tokens=8, rooms=(4, 5)),
    },
)


@pytest.fixture
def tiny_preset(monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)


@pytest.mark.parametrize("task", ["blocksworld", "maze"])
def test_a_tiny_pair_runs_resumes_and_says_which_model_is_which(
    task, tiny_preset, tiny_dir, tmp_path, capsys
):
    from reasonlens.models import load_model

    out = tmp_path / "pair"
    argv = ["pair", "--task", task, "-m", tiny_dir, "-o", out, "--preset", "tiny", "--quiet"]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    record = json.loads((out / "pair.json").read_text())
    assert record["task"] == task and record["rl"] == str(out / "rl")
    assert record["distilled"] == str(out / "distilled")
    assert record["start"] == ("warmup" if task == "blocksworld" else "base")
    load_model(record["rl"]), load_model(record["distilled"])
    data = out / "data"
    ids = {
        name: [json.loads(x)["prompt"] for x in (data / f"{name}.jsonl").read_text().splitlines()]
        for name in ("train", "test") + (("warmup",) if task == "blocksworld" else ())
    }
    assert len(ids["train"]) == 6 and len(ids["test"]) == 4
    seen = [p for group in ids.values() for p in group]
    assert len(seen) == len(set(seen))  # disjoint sets of distinct problems
    results = json.loads((out / "results.json").read_text())
    models = results["eval"]["models"]
    roles = (
        ["base", "warmup", "distilled", "rl"]
        if task == "blocksworld"
        else ["base", "distilled", "rl"]
    )
    assert list(models) == roles
    for m in models.values():
        assert m["n"] == 4 and m["reward"]["low"] <= m["reward"]["value"] <= m["reward"]["high"]
    # the trained models are also sampled (8 a problem at the RL temperature), the base not
    assert "sampled_reward" not in models["base"]
    for role in roles[1:]:
        m = models[role]
        assert m["samples"] == {"per_problem": 8, "temperature": 1.0}
        assert 0.0 <= m["sampled_solved"]["value"] <= 1.0
        rows = (out / "eval" / f"samples_{role}.jsonl").read_text().splitlines()
        assert len(rows) == 4 and all(len(json.loads(r)["outputs"]) == 8 for r in rows)
    comps = results["eval"]["comparisons"]
    assert "rl-distilled:sampled_reward" in comps and "rl-base:sampled_reward" not in comps
    assert ("rl-warmup:sampled_reward" in comps) == (task == "blocksworld")
    assert results["training"]["rl"]["method"] == "grpo"
    report = (out / "report.md").read_text()
    assert "GRPO raises the held-out reward" in report and "rl/reward.png" in report
    assert ("GRPO raises the held-out expected reward (8 samples" in report) == (
        task == "blocksworld"
    )
    stages = json.loads((out / "stages.json").read_text())
    code, _, err = run_cli(argv, capsys)  # finished: read back, nothing runs again
    assert code == 0, err
    assert json.loads((out / "stages.json").read_text()) == stages


def test_the_cpu_preset_is_quick_with_blocksworlds_longer_grpo():
    """`cpu` changes one thing from quick: the steps of Blocksworld's GRPO (the budget found
    to beat the warm-up model); the maze and every other setting are quick's."""
    import dataclasses

    quick, cpu = presets.PRESETS["quick"], presets.PRESETS["cpu"]
    assert cpu.tasks["maze"] == quick.tasks["maze"]
    bw_quick, bw_cpu = quick.tasks["blocksworld"], cpu.tasks["blocksworld"]
    assert (bw_quick.rl.max_steps, bw_cpu.rl.max_steps) == (48, 120)
    same = dataclasses.replace(bw_cpu.rl, max_steps=48, save_steps=bw_quick.rl.save_steps)
    assert dataclasses.replace(bw_cpu, rl=same) == bw_quick
