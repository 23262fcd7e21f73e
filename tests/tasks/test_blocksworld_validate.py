"""The validator, on single plans and on a data file with the public reproduction's faults."""

from __future__ import annotations

import json

from reasonlens.tasks.blocksworld import (
    Problem,
    check_plan,
    generate_problems,
    make_problem,
    pick_up,
    stack,
    validate_file,
)
from reasonlens.tasks.blocksworld.formats import SEED_INSTRUCTION, SEED_RULE

FIG2 = Problem(
    init=((), ("black",), ("blue", "red", "gray", "white"), ("green",)),
    goal=(("black", "gray"), ("blue", "red"), ("green",), ("white",)),
)
GOLD = (
    "step 1: pick-up white\nstep 2: stack white on-top-of table\n"
    "step 3: pick-up gray\nstep 4: stack gray on-top-of black"
)


def test_gold_plan_is_legal_optimal_and_matches():
    check = check_plan(FIG2, GOLD, reference=GOLD)
    assert check.parsed and check.legal and check.goal_reached and check.optimal
    assert (check.n_steps, check.optimal_length, check.n_optimal_plans) == (4, 4, 1)
    assert check.exact_match is True and not check.trivial
    assert check.to_dict()["optimal"] is True


def test_a_detour_reaches_the_goal_but_is_not_optimal():
    detour = [
        pick_up("white"),
        stack("white", "green"),
        pick_up("white"),
        stack("white", "table"),
        pick_up("gray"),
        stack("gray", "black"),
    ]
    check = check_plan(FIG2, detour, reference=GOLD)
    assert check.legal and check.goal_reached and not check.optimal
    assert check.exact_match is False


def test_first_illegal_step_and_reason():
    plan = "step 1: pick-up white\nstep 2: stack white on-top-of table\nstep 3: pick-up red"
    check = check_plan(FIG2, plan)
    assert check.parsed and not check.legal and not check.goal_reached
    assert check.first_illegal_step == 3
    assert check.illegal_reason == "cannot pick up red: gray is on it"


def test_unparseable_and_unfinished_plans():
    check = check_plan(FIG2, "step 1: pick up white")
    assert not check.parsed and "plan line 1" in check.parse_error and not check.legal
    check = check_plan(FIG2, "step 1: pick-up white")
    assert check.legal and not check.goal_reached  # still holding white


def test_an_already_solved_problem_is_flagged():
    p = make_problem([["red"], ["green", "blue"]], [["green", "blue"], ["red"]], slots=4)
    check = check_plan(p, "step 1: pick-up red\nstep 2: stack red on-top-of table")
    assert check.trivial and check.goal_reached and not check.optimal
    assert check.optimal_length == 0
    assert check_plan(p, "").optimal


def seed_record(init: list[str], goal: list[str], steps: list[str], **extra) -> str:
    rec = {
        "instruction": SEED_INSTRUCTION,
        "input": f"Rule:\n{SEED_RULE}\n\nInit state:\n"
        + "\n".join(init)
        + "\n\nGoal state:\n"
        + "\n".join(goal),
        "output": "Plan:\n" + "\n".join(f"step {k}: {s}" for k, s in enumerate(steps, 1)),
        **extra,
    }
    return json.dumps(rec)


def test_validate_file_finds_the_reproduction_faults(tmp_path):
    good = seed_record(
        ["<green on blue>", "<yellow>", "<red>"],
        ["<yellow>", "<red>", "<blue on green>"],
        [
            "pick-up green",
            "stack green on-top-of table",
            "pick-up blue",
            "stack blue on-top-of green",
        ],
    )
    # Its order-sensitive goal test made this 4 steps; moving yellow alone solves it.
    not_optimal = seed_record(
        ["<blue on green>", "<yellow on red>"],
        ["<blue on green>", "<yellow>", "<red>"],
        [
            "pick-up yellow",
            "stack yellow on-top-of table",
            "pick-up red",
            "stack red on-top-of table",
        ],
    )
    trivial = seed_record(
        ["<red>", "<blue on green>"],
        ["<blue on green>", "<red>"],
        ["pick-up red", "stack red on-top-of table"],
    )
    duplicate = seed_record(  # the first problem again, piles listed in another order
        ["<red>", "<yellow>", "<green on blue>"],
        ["<blue on green>", "<yellow>", "<red>"],
        [
            "pick-up green",
            "stack green on-top-of table",
            "pick-up blue",
            "stack blue on-top-of green",
        ],
    )
    in_train = generate_problems(4, 1, 1, fmt="seed", seed=3)[0]
    wrong_count = seed_record(  # two optimal plans: either block may move first
        ["<red>", "<blue>", "<green>", "<yellow>"],
        ["<blue on red>", "<yellow on green>"],
        [
            "pick-up blue",
            "stack blue on-top-of red",
            "pick-up yellow",
            "stack yellow on-top-of green",
        ],
        split="test",
        n_optimal_plans=1,
    )
    bad_state = seed_record(["<red on red>"], ["<red on red>"], [])
    illegal = seed_record(["<red on blue>"], ["<blue on red>"], ["pick-up blue"])
    lines = [
        good,
        not_optimal,
        trivial,
        duplicate,
        in_train.to_json(),
        wrong_count,
        bad_state,
        "{not json",
        illegal,
    ]
    path, train = tmp_path / "test.jsonl", tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    train.write_text(in_train.to_json() + "\n")

    report = validate_file(path, against=train)
    assert report.totals() == {
        "total": 9,
        "parsed": 7,
        "legal": 6,
        "goal_reached": 6,
        "optimal": 4,
        "trivial": 1,
        "duplicates": 1,
        "conflicting_gold": 0,
        "multiple_optimal": 1,
        "with_issues": 8,
        "overlap": 1,
        "problems": 6,  # distinct: the duplicate and the three unparsed lines are not new
        "trivial_problems": 1,
        "multiple_optimal_problems": 1,
        "overlap_problems": 1,
    }
    issues = "\n".join(report.issue_lines())
    assert f"{path}:2: the plan has 4 steps but an optimal plan has 2" in issues
    assert f"{path}:3: the goal already holds" in issues
    assert f"{path}:4: same problem as line 1" in issues
    assert f"{path}:5: problem also in {train} (line 1)" in issues
    assert f"{path}:6: n_optimal_plans says 1 but the planner finds 2" in issues
    assert f"{path}:6: test problem has 2 optimal plans" in issues
    assert f"{path}:7: colour 'red' appears twice in the init state" in issues
    assert f"{path}:8: invalid JSON" in issues
    assert f"{path}:9: step 1 is illegal: cannot pick up blue: red is on it" in issues
    assert report.findings[0].issues == []
    assert report.findings[1].to_dict()["optimal_length"] == 2


def test_a_seed_file_has_no_table_limit_unless_slots_says_so(tmp_path):
    """Five blocks, a goal of five separate piles: the optimal plan needs a fifth pile on the
    table, which the public reproduction's generator allows and its files never forbid."""
    record = seed_record(
        ["<red on blue on green on yellow on white>"],
        ["<red>", "<blue>", "<green>", "<yellow>", "<white>"],
        [
            f"{verb} {block}" if verb == "pick-up" else f"stack {block} on-top-of table"
            for block in ("red", "blue", "green", "yellow")
            for verb in ("pick-up", "stack")
        ],
    )
    path = tmp_path / "seed.jsonl"
    path.write_text(record + "\n")
    report = validate_file(path)
    totals = report.totals()
    assert totals["legal"] == 1 and totals["optimal"] == 1 and totals["with_issues"] == 0
    assert "no table limit" in report.slots_rule
    limited = validate_file(path, slots=4)
    assert limited.totals()["legal"] == 0 and "4 table slots" in limited.slots_rule
    assert "4 slots" in limited.findings[0].issues[0]
    # a problem's name does not depend on the table limit it is read with
    small = tmp_path / "small.jsonl"
    steps = ["pick-up red", "stack red on-top-of table", "pick-up blue", "stack blue on-top-of red"]
    small.write_text(seed_record(["<red on blue>"], ["<blue on red>"], steps) + "\n")
    names = {validate_file(small, slots=n).findings[0].problem_id for n in (2, 3, None)}
    assert len(names) == 1 and None not in names


def test_duplicates_whose_gold_plans_differ_are_reported(tmp_path):
    init, goal = ["<blue>", "<red>", "<green>"], ["<blue on red>", "<green>"]
    lines = [
        seed_record(init, goal, ["pick-up blue", "stack blue on-top-of red"]),
        seed_record(init, goal, ["pick-up blue", "stack blue on-top-of red"]),
        seed_record(init, goal, ["pick-up green", "stack green on-top-of table"]),
    ]
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = validate_file(path)
    totals = report.totals()
    assert totals["total"] == 3 and totals["problems"] == 1
    assert totals["duplicates"] == 2 and totals["conflicting_gold"] == 1
    issues = list(report.issue_lines())
    assert f"{path}:2: same problem as line 1" in issues
    assert f"{path}:3: same problem as line 1 with a different gold plan" in issues
