"""The declared rewards score hand-built completions as intended, and a reward function that
raises or returns anything but a finite number stops the run naming the completion."""

from __future__ import annotations

import random

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks import get_task
from reasonlens.tasks.backtracking.puzzle import random_maze
from reasonlens.tasks.backtracking.traces import generate_trace, to_record
from reasonlens.tasks.blocksworld import make_example, make_problem, optimal_plan
from reasonlens.train.rewards import (
    TaskReward,
    blocksworld_reward,
    group_stats,
    import_reward,
    maze_reward,
    resolve_reward,
)

BW = get_task("blocksworld")
MAZE = get_task("backtracking")

# red on blue on the table, green alone; goal: blue on red on green (3 slots)
_PROBLEM = make_problem([["blue", "red"], ["green"]], [["green", "red", "blue"]], slots=3)
ITEM = BW.item(make_example(_PROBLEM, optimal_plan(_PROBLEM)))


def bw(plan: str) -> float:
    completion = BW.cut(plan)
    return blocksworld_reward(ITEM, completion, BW.score(ITEM, completion))


def test_blocksworld_reward_orders_plans_as_intended():
    optimal = ITEM.completion
    steps = optimal.strip().splitlines()
    assert bw(optimal) == pytest.approx(1.0)  # parsed, legal, goal, optimal
    # legal and reaches the goal, two steps longer (red to the table and back up)
    longer = (
        "step 1: pick-up red\nstep 2: stack red on-top-of table\nstep 3: pick-up red\n"
        "step 4: stack red on-top-of green\nstep 5: pick-up blue\n"
        "step 6: stack blue on-top-of red\n"
    )
    assert BW.score(ITEM, BW.cut(longer))["goal_reached"]
    assert bw(longer) == pytest.approx(0.8)  # no optimal bonus
    # legal but stops short of the goal: parsed only: legality earns nothing
    assert bw(steps[0] + "\n") == pytest.approx(0.1)
    # every block to the table: always legal, nothing earned
    table = "step 1: pick-up red\nstep 2: stack red on-top-of table\n"
    assert BW.score(ITEM, BW.cut(table))["legal"] and bw(table) == pytest.approx(0.1)
    # red onto green: one of the two missing relations made, the goal not reached: no credit
    half_way = "\n".join(steps[:2]) + "\n"
    assert BW.score(ITEM, BW.cut(half_way))["goal_progress"] == 0.5
    assert bw(half_way) == pytest.approx(0.1)
    # first step illegal (red is on blue): parsed, nothing more
    assert bw("step 1: pick-up blue\n" + "\n".join(steps[1:]) + "\n") == pytest.approx(0.1)
    # the goal's steps after an illegal one do not count: the plan fails where it breaks a rule
    half = steps[:2] + ["step 3: pick-up green", steps[3]]
    assert not BW.score(ITEM, BW.cut("\n".join(half) + "\n"))["goal_reached"]
    assert bw("\n".join(half) + "\n") == pytest.approx(0.1)
    assert bw("I do not know.\n") == 0.0  # unparsed
    assert bw("") == 0.0


def _maze_item():
    rng = random.Random(3)
    maze = random_maze(rng, 7)
    trace = generate_trace(maze, rng)
    return MAZE.item_from_record(to_record(trace, "m0")), trace


def test_maze_reward_orders_searches_as_intended():
    item, trace = _maze_item()

    def r(text: str) -> float:
        cut = MAZE.cut(text)
        return maze_reward(item, cut, MAZE.score(item, cut))

    assert r(trace.text) == pytest.approx(1.0)  # readable, solved, no false moves
    unsolved = trace.text.split("</think>")[0]  # the search without its answer
    assert r(unsolved) == pytest.approx(0.2)  # readable only
    assert r("Let me think about mazes in general.") == 0.0  # unreadable
    # a wrong final path: readable, the goal not reached by the answer
    start, goal = trace.path[0], trace.path[-1]
    wrong = trace.text.replace(f"Path: {' '.join(trace.path)}", f"Path: {start} {goal} {start}")
    assert r(wrong) == pytest.approx(0.2)


def test_a_task_without_a_declared_reward_and_bad_specs_are_refused():
    with pytest.raises(UserError, match="has no verifier reward"):
        resolve_reward(None, get_task("preferences"))
    with pytest.raises(UserError, match="cannot import reward function 'no_such_mod:f'"):
        import_reward("no_such_mod:f")
    with pytest.raises(UserError, match="give a task's reward"):
        import_reward("justaname")
    assert resolve_reward("maze", MAZE)[1] is maze_reward
    with pytest.raises(UserError, match="but the data is blocksworld"):
        resolve_reward("maze", BW)


def test_a_reward_from_a_file_is_imported(tmp_path):
    path = tmp_path / "myreward.py"
    path.write_text("def shaped(item, completion, verdicts):\n    return len(completion) / 10\n")
    fn = import_reward(f"{path}:shaped")
    assert fn(ITEM, "abcde", {}) == 0.5


def _reward(fn):
    return TaskReward(BW, [ITEM], fn, "mine:fn", group=2)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda item, c, v: 1 / 0, "raised ZeroDivisionError"),
        (lambda item, c, v: None, "returned NoneType None, not a finite number"),
        (lambda item, c, v: "1.0", "returned str '1.0'"),
        (lambda item, c, v: float("nan"), "returned nan"),
        (lambda item, c, v: True, "returned bool True"),
    ],
    ids=["raises", "none", "string", "nan", "bool"],
)
def test_a_bad_reward_stops_the_run_naming_the_completion(fn, message):
    with pytest.raises(UserError) as err:
        _reward(fn)(prompts=["p", "p"], completions=["step 1: x", "hello"], item_index=[0, 0])
    text = str(err.value)
    assert message in text and "completion 0" in text and ITEM.id in text
    assert "step 1: x" in text and "\n" not in text


def test_group_stats_spread_and_zero_variance_share():
    stats = group_stats([1.0, 1.0, 0.0, 1.0, 0.5, 0.5], 2)
    assert stats["zero_variance_groups"] == pytest.approx(2 / 3)
    assert stats["reward_group_spread"] == pytest.approx(0.5 / 3)
    logged = {}
    out = _reward(lambda item, c, v: len(c))(
        prompts=["p"] * 2,
        completions=["ab", "abc"],
        item_index=[0, 0],
        log_metric=logged.__setitem__,
    )
    assert out == [2.0, 3.0] and logged["zero_variance_groups"] == 0.0
