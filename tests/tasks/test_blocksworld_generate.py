"""The generator and the paper preset: counts, guarantees on test sets, reproducibility."""

from __future__ import annotations

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks.blocksworld import (
    PAPER_COLORS,
    PAPER_TABLE1,
    count_problems,
    generate_dataset,
    generate_problems,
    generate_split,
    parse_level,
    resolve_config,
    run_plan,
    solve,
    write_dataset,
)

RGB = ("red", "green", "blue")


@pytest.fixture(scope="module")
def paper():
    return generate_dataset(resolve_config("paper", seed=0))


def test_paper_preset_reproduces_table_1(paper):
    counts: dict[tuple[int, int], list[int]] = {}
    for name, examples in paper.items():
        level, split = int(name[1]), name.split("_")[1].removesuffix(".jsonl")
        for ex in examples:
            assert ex.level == level and ex.split == split
            counts.setdefault((ex.n_blocks, level), [0, 0])[split == "test"] += 1
    assert {k: tuple(v) for k, v in counts.items()} == PAPER_TABLE1
    assert sum(len(v) for k, v in paper.items() if "train" in k) == 567
    assert sum(len(v) for k, v in paper.items() if "test" in k) == 1579


def test_paper_preset_gold_plans_are_proven_optimal_and_tests_unique(paper):
    train_keys = {ex.problem.key for k, v in paper.items() if "train" in k for ex in v}
    test_keys = [ex.problem.key for k, v in paper.items() if "test" in k for ex in v]
    assert len(set(test_keys)) == len(test_keys), "test problems repeat"
    assert not train_keys & set(test_keys), "a test problem is in train"
    for examples in paper.values():
        for ex in examples:
            assert ex.slots == 4 and ex.format == "paper"
            assert set(ex.problem.blocks) <= set(PAPER_COLORS)
            assert not ex.problem.trivial
            sol = solve(ex.problem, cache=False) if ex.n_blocks == 4 else solve(ex.problem)
            assert sol.length == ex.n_steps and sol.n_optimal_plans == ex.n_optimal_plans
            world, bad, _ = run_plan(ex.problem, ex.plan)
            assert bad is None and world.satisfies(ex.problem.goal)
            if ex.split == "test":
                assert ex.n_optimal_plans == 1


def test_six_block_paper_problems_use_exactly_the_six_colours(paper):
    for ex in paper["L3_test.jsonl"]:
        if ex.n_blocks == 6:
            assert sorted(ex.problem.blocks) == sorted(PAPER_COLORS)


def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path):
    config = resolve_config("paper", levels=["L2", "L3"], blocks=[5], train=20, test=30, seed=4)
    write_dataset(config, tmp_path / "a")
    write_dataset(config, tmp_path / "b")
    other = resolve_config("paper", levels=["L2", "L3"], blocks=[5], train=20, test=30, seed=5)
    write_dataset(other, tmp_path / "c")
    names = sorted(
        p.name
        for p in (tmp_path / "a").iterdir()
        if not p.name.startswith(".") and p.name not in ("run.json", "config.yaml")
    )
    assert names == [
        "L2_test.jsonl",
        "L2_train.jsonl",
        "L3_test.jsonl",
        "L3_train.jsonl",
        "manifest.json",
    ]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a/L3_test.jsonl").read_bytes() != (
        tmp_path / "c/L3_test.jsonl"
    ).read_bytes()


def test_a_cell_does_not_depend_on_the_other_cells_requested():
    alone = generate_split(5, 2, n_train=3, n_test=4, colors=PAPER_COLORS, seed=9)
    both = generate_dataset(
        resolve_config("paper", levels=["L1", "L2"], blocks=[4, 5], train=3, test=4, seed=9)
    )
    assert [e.text for e in both["L2_test.jsonl"] if e.n_blocks == 5] == [e.text for e in alone[1]]


def test_three_blocks_one_move_has_thirty_problems_and_all_can_be_drawn():
    # 6 towers x 1 move + 6 (pile of 2 + 1) x 3 moves + 1 (three singletons) x 6 moves = 30
    assert count_problems(3, 1, colors=RGB, unique=True) == 30
    assert count_problems(3, 1, colors=RGB) == 30
    _, test = generate_split(3, 1, n_train=0, n_test=30, colors=RGB)
    assert len({ex.problem.key for ex in test}) == 30
    with pytest.raises(UserError, match="only 30 distinct problems have a unique optimal plan"):
        generate_split(3, 1, n_train=0, n_test=31, colors=RGB)
    with pytest.raises(UserError, match="only 30 distinct problems exist"):
        generate_split(3, 1, n_train=11, n_test=20, colors=RGB)


def test_train_fills_the_rest_of_a_small_pool_without_touching_test():
    train, test = generate_split(3, 1, n_train=20, n_test=10, colors=RGB, seed=1)
    keys = [ex.problem.key for ex in train + test]
    assert len(set(keys)) == 30


def test_train_keeps_multi_optimal_problems_with_one_plan_each():
    train, _ = generate_split(6, 3, n_train=200, n_test=0, colors=PAPER_COLORS, seed=0)
    multi = [ex for ex in train if ex.n_optimal_plans > 1]
    assert multi, "expected some problems with several optimal plans"
    for ex in multi:
        assert solve(ex.problem).length == ex.n_steps == 6


def test_extension_levels_and_larger_problems():
    for n_blocks, level in ((7, 4), (8, 5), (3, 3)):
        for ex in generate_problems(n_blocks, level, 5, unique=True, seed=1):
            assert ex.n_blocks == n_blocks and ex.n_steps == 2 * level
            assert solve(ex.problem).n_optimal_plans == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(levels=["L9"]), "unknown level 'L9'"),
        (dict(levels=["L4"]), "Table 1 has no counts for L4"),
        (dict(fmt="latex"), "unknown format 'latex'"),
    ],
)
def test_bad_requests_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message):
        resolve_config("paper", **kwargs)


def test_palette_too_small_and_bad_colours_are_refused():
    with pytest.raises(UserError, match="need 7 colours but the palette has 6"):
        generate_split(7, 1, n_train=1, n_test=1, colors=PAPER_COLORS)
    with pytest.raises(UserError, match="names a colour twice"):
        generate_split(3, 1, n_train=1, n_test=1, colors=("red", "red", "blue", "green"))
    with pytest.raises(UserError, match="reserved word"):
        generate_split(3, 1, n_train=1, n_test=1, colors=("red", "table", "blue"))


def test_levels_parse():
    assert [parse_level(x) for x in ("L1", "l2", "3", 5)] == [1, 2, 3, 5]


def test_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, reasonlens.tasks.blocksworld; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
