"""The directions study on tiny random models: one model and two, end to end (results,
report, summary PNG), a resume that recomputes nothing, and bad inputs refused before anything
is written. A random model has no reasoning direction: these tests check the wiring and the
controls, not the science."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reasonlens.studies import Settings, get_study, run_study
from reasonlens.studies.directions import presets, stages
from reasonlens.studies.directions.presets import DirectionsPreset
from reasonlens.tasks.reasoning import arithmetic_items, blocksworld_items, maze_items, read_prompts
from reasonlens.testing import run_cli, save_tiny_model

TINY = DirectionsPreset(
    "tiny",
    "test only",
    train=8,
    val=4,
    test=4,
    candidates=2,
    alpha_candidates=(1.0, 2.0),
    doses=1,
    n_random=1,
    max_new_tokens=2,
    batch_size=8,
    resamples=50,
    patch_pool=40,
    patch_pairs=3,
)


@pytest.fixture
def tiny_preset(monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)


@pytest.fixture(scope="module")
def second_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-b"), "llama", seed=1)


def _run(model, out, **options):
    settings = Settings(preset="tiny", model=model, progress=False, options=options)
    return run_study(get_study("directions"), settings, out)


def test_arithmetic_items_are_checkable_and_distinct():
    items = arithmetic_items(40, seed=3)
    assert len({x.question for x in items}) == 40
    for x in items:
        assert x.answer != x.copy and len(x.answer) == 1 and x.question.split()[2] == x.copy


def test_one_model_end_to_end_and_resume(tiny_dir, tmp_path, tiny_preset, monkeypatch):
    out = tmp_path / "one"
    results = _run(tiny_dir, out)
    m = results["per_model"]["model_a"]
    assert m["chosen"]["layer"] in (0, 1) and m["n_layers"] == 2
    assert (
        len(m["probe"]["accuracy"]) == 2 and len(m["logit_lens"]["reasoning (answer)"]["top1"]) == 2
    )
    top = m["steering"]["dose_grid"]["largest"]  # the KL budget's choice among 1 and 2
    assert [r["alpha"] for r in m["steering"]["per_alpha"]] == [-top, 0.0, top]
    assert m["steering"]["vectors"] == ["direction", "random 0", "shuffled labels"]
    assert results["comparison"] is None and results["prompts"]["train"] == 8
    assert (out / "summary.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "chosen layer" in report and "KL on control prompts" in report
    assert "up to the largest candidate whose steering" in report
    ranges = m["layer_ablation"]  # 2 layers: windows of one layer, the pick from validation
    assert ranges["width"] == 1 and [w["layers"] for w in ranges["reasoning"]["windows"]] == [
        [0],
        [1],
    ]
    assert ranges["chosen"]["index"] == int(np.argmin(ranges["val_effect"]))
    assert "lowers the computation score more than the control prompts' copy score" in report
    patching = m["patching"]  # the byte tokenizer aligns each prompt with its control
    assert len(patching["restored"]) == 2 and patching["layer"] == m["chosen"]["layer"]
    assert 2 <= patching["n_pairs"] <= 3
    # at layer 0 the last token has seen nothing of the reasoning run: nothing is restored
    assert patching["restored"][0]["value"] == pytest.approx(0.0, abs=1e-5)
    assert "restores the computation score at the direction's layer" in report
    assert "steering along it raises the solve rate" in report
    assert json.loads((out / "results.json").read_text())["per_model"]["model_a"]["label"]
    calls = []
    monkeypatch.setattr(stages, "analyse_model", lambda *a, **k: calls.append(1))
    assert _run(tiny_dir, out)["per_model"] == results["per_model"]
    assert calls == []  # a resumed run recomputes nothing


def test_two_models_compare(tiny_dir, second_dir, tmp_path, tiny_preset):
    results = _run(tiny_dir, tmp_path / "two", models=f"{tiny_dir},{second_dir}")
    c = results["comparison"]
    assert set(results["per_model"]) == {"model_a", "model_b"}
    assert len(c["cosines"]["cosine"]) == 2 and len(c["cka"]["diagonal"]) == 2
    assert len(c["transfer"]) == 2
    report = (tmp_path / "two" / "report.md").read_text()
    assert "Across the two models" in report and "directions align beyond random" in report


def _pair_starting_at_its_distilled_arm(tmp_path, task, distilled, rl):
    """A pair record whose start (warm-up) model is its distilled arm."""
    pair = tmp_path / "pair"
    pair.mkdir()
    record = {"task": task, "start": "warmup", "distilled": distilled, "rl": rl,
              "models": {"warmup": distilled, "distilled": distilled, "rl": rl}}  # fmt: skip
    (pair / "pair.json").write_text(json.dumps(record))
    return pair


def test_a_pair_adds_the_model_both_arms_started_from(tiny_dir, second_dir, tmp_path, tiny_preset):
    """A constructed pair whose start model IS its distilled arm: the distilled arm has moved
    nowhere (divergence 0), the RL arm is as far from the start as from the distilled arm, so
    the difference is 0 at every layer; the report states the three-model claim."""
    pair = _pair_starting_at_its_distilled_arm(tmp_path, "blocksworld", tiny_dir, second_dir)
    out = tmp_path / "run"
    results = _run(tiny_dir, out, pair=str(pair))
    three = results["comparison"]["three_models"]
    assert three["reference"] == "start (warmup)"
    records = [results["per_model"][r] for r in ("model_a", "model_b")]
    assert (three["layer"], three["layer_rule"]) == stages.judged_layer(records, 2)
    for row in three["per_layer"]:
        assert row["first_arm_to_start"] == pytest.approx(0.0, abs=1e-6)
        assert row["second_arm_to_start"] == pytest.approx(row["arms"], abs=1e-6)
        assert row["difference"] == pytest.approx(0.0, abs=1e-6)
        assert row["low"] <= 1e-6 and row["high"] >= -1e-6
        assert row["split_half"] > 0
    report = (out / "report.md").read_text()
    assert "the RL model's direction differs from the distilled model's more than either" in report


def test_user_prompts_file(tiny_dir, tmp_path, tiny_preset):
    path = tmp_path / "p.jsonl"
    rows = [{"question": x.question, "answer": f"so #### {x.answer}"} for x in arithmetic_items(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, dropped = read_prompts(path)
    assert len(items) == 12 and dropped == 0
    split = stages.split_items(Settings("tiny", tiny_dir, options={"prompts": str(path)}), TINY)
    assert split["source"]["kind"] == "file" and len(split["train"]) == 6


@pytest.mark.parametrize(
    "case",
    ["three", "missing", "empty", "no_answer", "layers", "pair", "needs_layers", "blank"],
)
def test_bad_input_exit_2_nothing_written(case, tiny_dir, second_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["study", "directions", "--preset", "quick", "--model", tiny_dir, "--out", out]
    prompts = tmp_path / "p.jsonl"
    if case == "three":
        args += ["--models", f"{tiny_dir},{second_dir},{tiny_dir}"]
    elif case == "missing":
        args += ["--models", f"{tiny_dir},{tmp_path / 'nope'}"]
    elif case == "empty":
        prompts.write_text("")
        args += ["--prompts", prompts]
    elif case == "no_answer":
        prompts.write_text(json.dumps({"question": "Ana has 3 pens."}) + "\n")
        args += ["--prompts", prompts]
    elif case == "layers":
        args[3] = "layer_specific"
        args += ["--layers", "1-5"]
    elif case == "pair":
        (tmp_path / "pairdir").mkdir()
        args += ["--pair", tmp_path / "pairdir"]
    elif case == "needs_layers":
        args[3] = "layer_specific"
    elif case == "blank":  # an empty value is refused, not read as "not given"
        args += ["--chains", ""]
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_study_with_the_backtracking_direction(tiny_dir, tmp_path, monkeypatch):
    import dataclasses

    tiny = dataclasses.replace(
        TINY,
        maze_train=4,
        maze_val=2,
        maze_test=2,
        window=2,
        chain_tokens=6,
        generate_batch=8,
    )
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny)
    out = tmp_path / "run"
    results = _run(tiny_dir, out, behaviour="backtracking")
    b = results["per_model"]["model_a"]["behaviour"]
    assert b["chosen"]["layer"] in b["layers"] and len(b["val_auc"]) == len(b["layers"])
    s = b["steering"]
    assert s["vectors"] == ["direction", "random 0", "random windows"]
    assert s["n_prompts"] == 2 and 0.0 <= s["monotone_share"] <= 1.0
    grid = s["dose_grid"]  # chosen by the KL budget on validation prompts: 3 doses
    assert s["alphas"] == list(grid["alphas"]) and len(grid["alphas"]) == 3
    assert grid["largest"] in (1.0, 2.0) and len(grid["kl"]) == 2
    assert (out / "model_a" / "steering_backtracking.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "backtracking direction" in report
    # a random model writes no search: no condition has a backtrack, so no verdict is given
    assert "not measurable (every chain of every condition (18: direction and controls at" in report


TINY_BEHAVIOUR = dict(
    maze_train=4, maze_val=2, maze_test=2, window=2, chain_tokens=6, generate_batch=8
)


@pytest.mark.parametrize("every_dose", [True, False], ids=["controls-every-dose", "at-ends"])
def test_the_start_models_backtracking_direction_steers_each_arm(
    every_dose, tiny_dir, second_dir, tmp_path, monkeypatch
):
    """Ward et al.'s transfer on a constructed pair whose start model IS its distilled arm:
    the start's direction is the distilled arm's own, so steering the distilled arm with it
    must give exactly the arm's own dose-response, and steering the start (the same weights)
    the same again; the RL arm gets the same direction at the same layer. With the controls
    only at the end doses (quick), five doses: the controls are missing in between, and the
    report and the summary figure say so and still render."""
    import dataclasses

    shape = {} if every_dose else {"doses": 2, "controls_every_dose": False, "grid_prompts": 2}
    monkeypatch.setitem(
        presets.PRESETS, "tiny", dataclasses.replace(TINY, **TINY_BEHAVIOUR, **shape)
    )
    pair = _pair_starting_at_its_distilled_arm(tmp_path, "maze", tiny_dir, second_dir)
    out = tmp_path / "run"
    results = _run(tiny_dir, out, pair=str(pair), behaviour="backtracking")
    moved = results["comparison"]["behaviour_transfer"]
    own = results["per_model"]["model_a"]["behaviour"]
    assert moved["source"]["chosen"] == own["chosen"]
    assert moved["source"]["val_auc"] == own["val_auc"]
    start = "start (warmup)"
    sweeps = moved["sweeps"]
    assert list(sweeps) == [f"{start} -> {start}", f"{start} -> distilled", f"{start} -> RL"]
    assert [s["own"] for s in sweeps.values()] == [True, False, False]
    for key in (f"{start} -> {start}", f"{start} -> distilled"):
        assert sweeps[key]["per_alpha"] == own["steering"]["per_alpha"]
        assert sweeps[key]["dose_grid"] == own["steering"]["dose_grid"]
    rl = sweeps[f"{start} -> RL"]
    assert rl["source_layer"] == rl["target_layer"] == own["chosen"]["layer"]
    assert rl["vectors"] == ["direction", "random 0", "random windows"]
    report = (out / "report.md").read_text()
    assert f"{start} -> RL: the backtracking direction (layer" in report
    assert "(its own model)" in report and "the model both arms started from" in report
    if not every_dose:
        for steer in (rl, own["steering"], results["per_model"]["model_b"]["steering"]):
            rows = steer["per_alpha"]
            assert len(rows) == 5 and steer["settings"]["control_alphas"] == [
                rows[0]["alpha"], 0.0, rows[-1]["alpha"]
            ]  # fmt: skip
            assert all(r["direction"]["metric"]["value"] is not None for r in rows)
            assert [r["random_mean"]["metric"]["value"] is None for r in rows] == [
                False, True, False, True, False
            ]  # fmt: skip
        assert "The controls were swept at alphas" in report
        # a random model writes no search: the sweeps are degenerate, with or without the
        # controls at every dose, and say so instead of giving a verdict
        claims = [x for x in report.splitlines() if "the backtracking direction: " in x]
        assert claims and all("not measurable (every chain of every condition" in x for x in claims)
        assert "direction and controls at every alpha swept) has 0 backtracks" in claims[0]
        # the doses are chosen by the KL on the first 2 of the 4 validation control prompts
        assert own["steering"]["dose_grid"]["n_prompts"] == rl["dose_grid"]["n_prompts"] == 2
        assert "on 2 validation control prompts" in report
        assert (out / "summary.png").stat().st_size > 0


def test_two_models_swap_backtracking_directions(tiny_dir, second_dir, tmp_path, monkeypatch):
    """Without a pair, each model's backtracking direction (kept by its own stage) steers the
    other at the layer of matching depth."""
    import dataclasses

    monkeypatch.setitem(presets.PRESETS, "tiny", dataclasses.replace(TINY, **TINY_BEHAVIOUR))
    results = _run(
        tiny_dir, tmp_path / "two", models=f"{tiny_dir},{second_dir}", behaviour="backtracking"
    )
    sweeps = results["comparison"]["behaviour_transfer"]["sweeps"]
    a, b = (results["per_model"][r] for r in ("model_a", "model_b"))
    assert list(sweeps) == [f"{a['label']} -> {b['label']}", f"{b['label']} -> {a['label']}"]
    for (src, _), s in zip(((a, b), (b, a)), sweeps.values(), strict=True):
        assert s["source_layer"] == s["target_layer"] == src["behaviour"]["chosen"]["layer"]
        assert not s["own"] and len(s["per_alpha"]) == 3


def test_the_three_model_claim_is_judged_where_a_selection_passed():
    passed = {"label": "RL", "selection": {"fallback": None}, "chosen": {"layer": 7}}
    failed = {
        "label": "distilled",
        "selection": {"fallback": "no candidate"},
        "chosen": {"layer": 0},
    }
    assert stages.judged_layer([failed, passed], 30) == (
        7,
        "RL's layer, chosen on validation prompts",
    )
    assert stages.judged_layer([failed, failed], 30)[0] == 15


def test_patching_pairs_are_the_largest_group_of_one_length():
    f = stages.Formatted(
        reasoning=[[1, 2], [1, 2, 3], [4, 5, 6], [7, 8, 9], [1]],
        control=[[1, 2], [1, 2, 4], [4, 5], [7, 8, 0], [2]],  # the third's control is shorter
        answer=[1, 2, 3, 4, 5],
        copy=[6, 7, 8, 9, 0],
    )
    group = stages.aligned_group(f, cap=5)
    assert group.reasoning == [[1, 2, 3], [7, 8, 9]] and group.answer == [2, 4]
    assert group.copy == [7, 9] and stages.aligned_group(f, cap=1) is None


def test_each_reasoning_prompt_aligns_with_its_control_on_the_default_tokenizer():
    """Patching between a prompt and its control needs them token for token the same length."""
    from reasonlens.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    items = [x.to_dict() for x in arithmetic_items(20, seed=0)]
    f = stages.format_split(tok, items)
    assert all(len(r) == len(c) for r, c in zip(f.reasoning, f.control, strict=True))


def test_maze_contrast_items_are_checkable():
    """The room after the start on the shortest path (the answer), by a search of the
    question's own corridors; the start (the copy); the start has two or more exits."""
    import re
    from collections import deque

    for item in maze_items(30, seed=2):
        start, goal = re.search(r"from room (\w+) to room (\w+)", item.question).groups()
        corridors = re.search(r"Corridors: (.*)\.", item.question).group(1).split(", ")
        exits: dict[str, list[str]] = {}
        for a, b in (c.split("-") for c in corridors):
            exits.setdefault(a, []).append(b)
            exits.setdefault(b, []).append(a)
        back, todo = {start: None}, deque([start])
        while todo:
            room = todo.popleft()
            for nxt in exits[room]:
                if nxt not in back:
                    back[nxt], _ = room, todo.append(nxt)
        path = [goal]
        while back[path[-1]] is not None:
            path.append(back[path[-1]])
        assert item.answer == path[-2] and item.copy == start and len(exits[start]) >= 2


def test_blocksworld_contrast_items_are_checkable():
    """The first block of the one optimal plan (the planner, on the question's own states) and
    the top of the first pile; their first letters differ."""
    from reasonlens.tasks.blocksworld import make_problem, optimal_plan, parse_text, solve

    items = blocksworld_items(20, seed=1)
    for item in items:
        parsed = parse_text(item.question + "\nPlan:\n", "paper")
        problem = make_problem(parsed.init, parsed.goal, slots=len(parsed.init))
        assert solve(problem).n_optimal_plans == 1
        assert item.answer == optimal_plan(problem)[0].block
        assert item.copy == next(p[-1] for p in parsed.init if p)
        assert item.answer[0] != item.copy[0]


@pytest.mark.parametrize("contrast", ["maze", "blocksworld"])
def test_study_on_a_task_contrast_set(tiny_dir, tmp_path, tiny_preset, contrast):
    out = tmp_path / contrast
    results = _run(tiny_dir, out, contrast=contrast)
    assert results["prompts"]["source"]["kind"] == contrast
    prompts = json.loads((out / "prompts" / "prompts.json").read_text())
    assert prompts["test"][0]["source"] == contrast
    assert "steering along it raises the solve rate" in (out / "report.md").read_text()


def _chains_file(path, n=10):
    """Plain-layout chains: each has a backtracking span starting with 'Wait'."""
    rows = []
    for i in range(n):
        head = f"Let me add {i} and {i + 2}. That gives {2 * i + 2}. "
        span = f"Wait, I should check {i} again. "
        tail = "Yes, it holds."
        text = head + span + tail
        rows.append(
            {
                "id": f"c{i}",
                "text": text,
                "problem": f"What is {i} plus {i + 2}?",
                "spans": [{"start": len(head), "end": len(head + span), "label": "backtracking"}],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_backtrack_words_per_100_words():
    from reasonlens.studies.directions.behaviour import backtrack_words

    assert backtrack_words("Wait, no. Hmm. waiting is fine") == pytest.approx(100 * 2 / 6)
    assert backtrack_words("") == 0.0


def test_study_with_a_users_annotated_chains(tiny_dir, tmp_path, monkeypatch):
    import dataclasses

    tiny = dataclasses.replace(TINY, window=2, chain_tokens=6, generate_batch=8)
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny)
    chains = _chains_file(tmp_path / "chains.jsonl")
    out = tmp_path / "run"
    results = _run(tiny_dir, out, chains=str(chains))
    b = results["per_model"]["model_a"]["behaviour"]
    assert b["source"].startswith("annotated chains") and b["n_traces"] == {
        "train": 5, "val": 2, "test": 3
    }  # fmt: skip
    assert b["n_windows"] >= 1 and b["steering"]["metric"] == "'Wait'/'Hmm' per 100 words"
    assert b["steering"]["n_prompts"] == 3
    # a chain 'Wait ...' per 7-9 words in the gold chains
    assert 5 < b["gold_backtracks_per_chain"] < 10
    assert "'Wait'/'Hmm' per 100 words" in (out / "report.md").read_text()


def test_chains_without_backtracking_are_refused(tiny_dir, tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    rows = [{"id": f"c{i}", "text": "Fine. Done.", "spans": [], "problem": "Q?"} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    code, _, err = run_cli(
        ["study", "directions", "-m", tiny_dir, "--chains", path, "-o", out, "--quiet"], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "backtracking" in err
    assert not out.exists()


def test_a_patch_that_changes_nothing_is_not_measurable():
    from reasonlens.studies.directions.report import _patching_claim

    zero = {"value": 1e-6, "low": -1.2e-6, "high": 3.3e-6}  # float noise, as measured
    some = {"value": 0.2, "low": 0.1, "high": 0.3}
    record = {
        "layer": 0, "restored": [zero, some], "restored_mismatched": [zero, some],
        "beyond_mismatched": zero, "clean_minus_corrupt": 1.0,
    }  # fmt: skip
    assert _patching_claim(record).verdict.word == "not measurable"
    record["layer"] = 1
    assert _patching_claim(record).verdict.word != "not measurable"


def test_path_patching_when_the_preset_asks(tiny_dir, tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setitem(presets.PRESETS, "tiny", dataclasses.replace(TINY, path_patching=True))
    out = tmp_path / "run"
    results = _run(tiny_dir, out)
    paths = results["per_model"]["model_a"]["patching"]["paths"]
    # two layers: the senders are layer 0's attention and MLP outputs, the receiver layer 1
    assert [x["sender"] for x in paths["senders"]] == ["layers.0.attn_out", "layers.0.mlp_out"]
    assert paths["receivers"] == ["layers.1.resid_pre"]
    assert "Path patching (descriptive, no claim)" in (out / "report.md").read_text()


def test_a_floor_at_the_judged_alpha_is_not_measurable():
    """Every condition at 0 with no spread at the largest alpha (a floor): no verdict there,
    though lower alphas differ; a sweep with spread at that alpha gets its verdict."""
    from reasonlens.studies.directions.report import _judged

    def cell(v, lo=None, hi=None):
        return {
            "metric": {"value": v, "low": v if lo is None else lo, "high": v if hi is None else hi}
        }

    steer = {
        "vectors": ["direction", "random 0"],
        "n_prompts": 4,
        "per_alpha": [
            {"alpha": 1.0, "direction": cell(0.25, 0.0, 0.5), "random 0": cell(0.0)},
            {"alpha": 2.0, "direction": cell(0.0), "random 0": cell(0.0)},
        ],
        "versus_random_at_max_alpha": {"word": "unclear", "why": "0 includes 0", "label": None},
    }
    assert _judged(steer, 2.0, "solved").word == "not measurable"
    assert "at alpha 2" in _judged(steer, 2.0, "solved").why
    assert _judged(steer, 1.0, "solved").word == "unclear"
