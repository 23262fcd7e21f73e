"""Rules and the optimal planner: hand-worked answers, and a naive step-level BFS as referee."""

from __future__ import annotations

import random
from collections import deque

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks.blocksworld import (
    Problem,
    World,
    make_problem,
    optimal_plan,
    optimal_plans,
    pick_up,
    run_plan,
    solve,
    stack,
)
from reasonlens.tasks.blocksworld.planner import shapes

# The paper's Figure 2 problem (piles bottom to top): init <empty>, <black>,
# <white on gray on red on blue>, <green>; goal <gray on black>, <red on blue>, <green>, <white>.
FIG2 = Problem(
    init=((), ("black",), ("blue", "red", "gray", "white"), ("green",)),
    goal=(("black", "gray"), ("blue", "red"), ("green",), ("white",)),
)
FIG2_PLAN = (
    pick_up("white"),
    stack("white", "table"),
    pick_up("gray"),
    stack("gray", "black"),
)


def naive_solve(problem: Problem) -> tuple[int | None, int]:
    """Plain BFS over step-level states (piles + held block), counting shortest paths."""

    def canon(piles):
        return tuple(sorted(p for p in piles if p))

    start = (canon(problem.init), None)
    goal = (canon(problem.goal), None)
    dist, count, queue = {start: 0}, {start: 1}, deque([start])
    while queue:
        piles, held = u = queue.popleft()
        if u == goal:
            return dist[u], count[u]
        nexts = []
        if held is None:
            for i, p in enumerate(piles):
                rest = piles[:i] + ((p[:-1],) if len(p) > 1 else ()) + piles[i + 1 :]
                nexts.append((canon(rest), p[-1]))
        else:
            if len(piles) < problem.slots:
                nexts.append((canon(piles + ((held,),)), None))
            for i, p in enumerate(piles):
                nexts.append((canon(piles[:i] + (p + (held,),) + piles[i + 1 :]), None))
        for v in nexts:
            if v not in dist:
                dist[v], count[v] = dist[u] + 1, count[u]
                queue.append(v)
            elif dist[v] == dist[u] + 1:
                count[v] += count[u]
    return None, 0


def random_problem(rng: random.Random, n: int, slots: int) -> Problem:
    def state():
        blocks = [f"c{i}" for i in range(n)]
        rng.shuffle(blocks)
        k = rng.randint(1, min(n, slots))
        cuts = sorted(rng.sample(range(1, n), k - 1))
        piles = [tuple(blocks[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
        return piles + [()] * (slots - len(piles))

    return make_problem(state(), state(), slots)


def test_figure2_problem_has_one_optimal_plan_of_four_steps():
    assert solve(FIG2).length == 4
    assert solve(FIG2).n_optimal_plans == 1
    assert optimal_plans(FIG2) == [FIG2_PLAN]


def test_two_independent_moves_give_two_optimal_plans():
    # four blocks on the table; goal: b on a, d on c. Either move may come first.
    p = make_problem([["a"], ["b"], ["c"], ["d"]], [["a", "b"], ["c", "d"]], slots=4)
    assert solve(p).length == 4 and solve(p).n_optimal_plans == 2
    assert [[str(s) for s in plan] for plan in optimal_plans(p)] == [
        ["pick-up b", "stack b on-top-of a", "pick-up d", "stack d on-top-of c"],
        ["pick-up d", "stack d on-top-of c", "pick-up b", "stack b on-top-of a"],
    ]


def test_reversing_a_tower_of_three_takes_six_steps_one_way():
    p = make_problem([["a", "b", "c"]], [["c", "b", "a"]], slots=2)
    assert solve(p).length == 6 and solve(p).n_optimal_plans == 1
    assert [str(s) for s in optimal_plan(p)] == [
        "pick-up c",
        "stack c on-top-of table",
        "pick-up b",
        "stack b on-top-of c",
        "pick-up a",
        "stack a on-top-of b",
    ]


def test_one_slot_makes_the_reversal_unreachable():
    p = make_problem([["a", "b", "c"]], [["c", "b", "a"]], slots=1)
    assert solve(p).length is None and solve(p).n_optimal_plans == 0
    with pytest.raises(UserError, match="cannot be reached"):
        optimal_plan(p)


def test_the_slot_limit_changes_the_number_of_optimal_plans():
    # b must go to the table and d onto c; with 4 slots full, d must move first.
    init = [["a", "b"], ["c"], ["d"], ["e"]]
    goal = [["a"], ["b"], ["c", "d"], ["e"]]
    assert solve(make_problem(init, goal, slots=4)).n_optimal_plans == 1
    assert [str(s) for s in optimal_plan(make_problem(init, goal, slots=4))][:2] == [
        "pick-up d",
        "stack d on-top-of c",
    ]
    assert solve(make_problem(init, goal, slots=5)).n_optimal_plans == 2
    assert solve(make_problem(init, goal, slots=5)).length == 4


def test_a_solved_problem_has_length_zero():
    p = make_problem([["red"], ["blue", "green"]], [["blue", "green"], ["red"]], slots=4)
    assert p.trivial
    assert solve(p).length == 0 and solve(p).n_optimal_plans == 1


def test_planner_agrees_with_naive_bfs_on_random_problems():
    rng = random.Random(7)
    for _ in range(250):
        n, slots = rng.randint(1, 5), rng.randint(1, 4)
        p = random_problem(rng, n, slots)
        length, count = naive_solve(p)
        sol = solve(p)
        assert (sol.length, sol.n_optimal_plans) == (length, count), p
        if length is not None and count <= 50:
            plans = optimal_plans(p)
            assert len(plans) == count == len(set(plans))
            for plan in plans:
                world, bad, _ = run_plan(p, plan)
                assert bad is None and len(plan) == length and world.satisfies(p.goal)


def test_cold_and_cached_searches_agree():
    rng = random.Random(3)
    for _ in range(30):
        p = random_problem(rng, 6, 4)
        assert solve(p, cache=False) == solve(p)


def test_shapes_are_the_partitions_that_fit_the_slots():
    assert shapes(4, 4) == [(4,), (3, 1), (2, 2), (2, 1, 1), (1, 1, 1, 1)]
    assert shapes(4, 2) == [(4,), (3, 1), (2, 2)]


# --- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "step", "reason"),
    [
        ([pick_up("gray")], 1, "cannot pick up gray: white is on it"),
        ([pick_up("white"), pick_up("green")], 2, "the hand already holds white"),
        ([stack("white", "table")], 1, "cannot stack white: the hand is empty"),
        ([pick_up("white"), stack("gray", "table")], 2, "the hand holds white"),
        ([pick_up("white"), stack("white", "white")], 2, "cannot stack white on itself"),
        ([pick_up("white"), stack("white", "red")], 2, "cannot stack white on red: gray is on it"),
        ([pick_up("purple")], 1, "there is no block 'purple'"),
        ([pick_up("green"), stack("green", "pink")], 2, "there is no block 'pink'"),
        ([pick_up("table")], 1, "cannot pick-up the table"),
    ],
)
def test_illegal_steps_are_caught_with_the_reason(plan, step, reason):
    _, bad, why = run_plan(FIG2, plan)
    assert bad == step
    assert reason in why


def test_table_needs_a_free_slot():
    full = make_problem([["a", "b"], ["c"], ["d"], ["e"]], [["a"], ["b"], ["c", "d"], ["e"]], 4)
    _, bad, why = run_plan(full, [pick_up("b"), stack("b", "table")])
    assert bad == 2 and "all 4 slots hold piles" in why
    # a block picked up alone frees its own slot
    world = World(full.init)
    world.apply(pick_up("c"))
    world.apply(stack("c", "table"))
    assert world.state() == tuple(sorted(p for p in full.init if p))


@pytest.mark.parametrize(
    ("init", "goal", "slots", "message"),
    [
        ([["red", "red"]], [["red", "red"]], 4, "'red' appears twice in the init state"),
        ([["red"], ["blue"]], [["red"], ["pink"]], 4, "goal state names 'pink'"),
        ([["red"], ["blue"]], [["red", "blue"], ["green"]], 4, "goal state names 'green'"),
        ([["red"], ["blue"]], [["red"]], 4, "leaves out 'blue'"),
        ([["a"], ["b"], ["c"]], [["a", "b", "c"]], 2, "3 piles but only 2 table slots"),
        ([["table"]], [["table"]], 4, "reserved word"),
        ([["re d"]], [["re d"]], 4, "not a colour name"),
        ([[]], [[]], 4, "has no blocks"),
    ],
)
def test_malformed_problems_raise_a_clear_user_error(init, goal, slots, message):
    with pytest.raises(UserError, match=message):
        make_problem(init, goal, slots)
