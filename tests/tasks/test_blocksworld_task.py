"""Blocksworld behind the task interface: where a generated plan ends, the validator's
verdicts on known plans, and the items, records and breakdowns the task gives."""

from __future__ import annotations

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks import TASKS, TaskItem, task_for_record
from reasonlens.tasks.blocksworld import (
    BlocksworldTask,
    cut_plan,
    generate_problems,
    parse_action,
    plan_finished,
    plan_verdicts,
    run_plan,
    write_examples,
)
from reasonlens.testing import illegal_plan, longer_plan


@pytest.fixture(scope="module")
def bw_examples():
    """L1/4 blocks, L2/5 blocks and L3/6 blocks test problems."""
    return (
        generate_problems(4, 1, 3, unique=True, seed=1)
        + generate_problems(5, 2, 3, unique=True, seed=1)
        + generate_problems(6, 3, 2, unique=True, seed=1)
    )


@pytest.fixture(scope="module")
def task():
    return TASKS["blocksworld"]


@pytest.mark.parametrize(
    ("text", "plan", "finished"),
    [
        ("step 1: pick-up red\nstep 2: stack red on-top-of blue", None, False),
        ("step 1: pick-up red\nstep 2: stack red on-top-of blue\n", None, False),
        ("step 1: pick-up red\nstep 2: stack red on-top-of blue\n\nRule:\nYou", 2, True),
        ("step 1: pick-up red\nstep 2: stack red on-top-of blue\nThat is all.", 2, False),
        ("step 1: pick-up red\nThat is all.\nstep 2: x", 1, True),
        ("\n\nstep 1: pick-up red\n\n", 1, True),
        ("step 1: pick-up red\nstep 2: stack red on-to", None, False),
        ("The plan is simple.\nstep 1: pick-up red", "The plan is simple.", True),
        ("", "", False),
        ("\n", "", False),
    ],
)
def test_the_plan_ends_at_the_first_line_that_is_not_a_step(task, text, plan, finished):
    if plan is None:  # kept whole (a truncated last line too)
        plan = text.rstrip("\n")
    elif isinstance(plan, int):  # the first `plan` lines
        plan = "\n".join(text.strip("\n").split("\n")[:plan])
    assert cut_plan(text) == plan == task.cut(text)
    assert plan_finished(text) is finished is task.stop(text)


def test_verdicts_on_the_gold_plan_are_all_true(bw_examples):
    for ex in bw_examples:
        check = plan_verdicts(ex, ex.completion)
        assert (check.parsed, check.legal, check.goal_reached, check.optimal) == (True,) * 4
        assert check.exact_match is True and check.n_steps == len(ex.plan)


def test_a_longer_plan_that_reaches_the_goal_is_neither_optimal_nor_exact(bw_examples):
    for ex in bw_examples:
        plan = longer_plan(ex)
        actions = [parse_action(line.split(": ", 1)[1]) for line in plan.split("\n")]
        world, bad, _ = run_plan(ex.problem, actions)
        assert bad is None and world.satisfies(ex.problem.goal)  # the fixture is what it says
        check = plan_verdicts(ex, plan)
        assert (check.parsed, check.legal, check.goal_reached) == (True, True, True)
        assert (check.optimal, check.exact_match) == (False, False)
        assert check.n_steps == len(ex.plan) + 2 == check.optimal_length + 2


def test_an_illegal_plan_names_its_first_illegal_step(bw_examples):
    for ex in bw_examples:
        check = plan_verdicts(ex, illegal_plan(ex))
        assert check.parsed and not check.legal and check.first_illegal_step == 2
        assert check.illegal_reason
        assert (check.goal_reached, check.optimal, check.exact_match) == (False, False, False)


@pytest.mark.parametrize("garbage", ["I would move the red block.", "step one: pick-up red", ""])
def test_garbage_and_empty_output_do_not_parse(bw_examples, garbage):
    check = plan_verdicts(bw_examples[0], garbage)
    assert not check.parsed and check.parse_error
    assert not any((check.legal, check.goal_reached, check.optimal, check.exact_match))


def test_an_example_becomes_an_item_with_its_spans_labels_and_cell(task, bw_examples):
    ex = bw_examples[4]  # L2, 5 blocks
    item = task.item(ex)
    assert (item.id, item.prompt, item.completion, item.text) == (
        ex.problem_id,
        ex.prompt,
        ex.completion,
        ex.text,
    )
    assert list(item.labels.items()) == [("level", 2), ("n_blocks", 5), ("n_steps", 4)]
    assert item.group == "L2/5" and item.split == "" and item.source is ex
    answers = [item.text[a:b] for a, b in item.spans["answers"]]
    assert answers == [a.answer for a in ex.plan]
    assert [item.text[a:b] for a, b in item.spans["steps"]] == ex.completion.split("\n")
    assert task.item(item) is item
    with pytest.raises(TypeError, match="Examples"):
        task.item("step 1: pick-up red")


def test_score_is_the_validator_verdict_with_or_without_the_source(task, bw_examples):
    ex = bw_examples[0]
    item = task.item(ex)
    bare = TaskItem(item.id, item.prompt, item.completion)  # no source: re-read from its text
    for plan in (ex.completion, longer_plan(ex), illegal_plan(ex), ""):
        assert task.score(item, plan) == plan_verdicts(ex, plan).to_dict() == task.score(bare, plan)
    assert set(task.metrics) <= set(task.score(item, ex.completion))


def test_breakdowns_name_the_level_and_the_block_count(task):
    by_level, by_blocks = task.breakdowns["by_level"], task.breakdowns["by_blocks"]
    assert list(task.breakdowns) == ["by_level", "by_blocks"]
    assert by_level({"level": 3, "n_blocks": 4}) == "L3"
    assert by_level({"level": None, "n_blocks": 4}) == "odd"
    assert by_blocks({"level": 3, "n_blocks": 4}) == "4"
    assert (by_level.label("L3"), by_blocks.label("4")) == ("L3", "4 blocks")
    assert (task.header("goal_reached"), task.header("parsed")) == ("goal", "parsed")


def test_files_are_read_as_items_and_records_recognised(task, bw_examples, tmp_path):
    path = tmp_path / "bw.jsonl"
    write_examples(path, bw_examples)
    items = task.read(path)
    assert [it.source for it in items] == bw_examples
    assert all(isinstance(it, TaskItem) for it in items)
    assert task_for_record(bw_examples[0].to_record()) is task
    assert task_for_record({"instruction": "x", "input": "y", "output": "z"}) is task
    assert task_for_record({"prompt": "Q:", "completion": " A"}) is None
    assert task_for_record(["not", "a", "dict"]) is None
    path.write_text('{"format": "paper", "prompt": "x", "completion": "y"}\n')
    with pytest.raises(UserError, match="bw.jsonl:1: field 'prompt' must end"):
        task.read(path)


def test_the_registry_builds_one_task_per_name():
    assert set(TASKS) == {"blocksworld", "preferences", "backtracking"}
    assert isinstance(TASKS["blocksworld"], BlocksworldTask)
    assert TASKS["blocksworld"] is TASKS["blocksworld"]
    assert TASKS["blocksworld"].title == "Planning"
