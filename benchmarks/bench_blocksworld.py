"""Blocksworld speed: the paper preset, 10,000 unique-optimal L5 problems, planner cost.

Run: ``uv run python benchmarks/bench_blocksworld.py``. Every timing starts from cold caches.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import tempfile
import time

from reasonlens.tasks.blocksworld import resolve_config, solve, write_dataset
from reasonlens.tasks.blocksworld.generate import (
    ProblemPool,
    clear_caches,
    count_problems,
    generate_problems,
)
from reasonlens.tasks.blocksworld.planner import goal_tree, label, shapes


def arrangements(n: int, slots: int) -> int:
    """Hand-empty states of n labelled blocks in at most ``slots`` piles (sum of Lah numbers)."""
    from math import comb, factorial

    return sum(
        comb(n - 1, k - 1) * factorial(n) // factorial(k) for k in range(1, min(n, slots) + 1)
    )


def bench_paper() -> None:
    clear_caches()
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_dataset(resolve_config("paper"), tmp)
    dt = time.perf_counter() - t
    print(
        f"paper preset: {manifest['totals']['train']} train + {manifest['totals']['test']} test "
        f"generated, checked and written in {dt:.2f} s"
    )


def bench_l5(n: int = 10_000) -> None:
    clear_caches()
    t = time.perf_counter()
    examples = generate_problems(6, 5, n, unique=True, seed=0)
    dt = time.perf_counter() - t
    assert len({ex.problem.key for ex in examples}) == n
    print(
        f"{n} unique-optimal L5 (10-step) problems, 6 blocks, 4 slots: {dt:.2f} s "
        f"= {n / dt:,.0f} problems/s (search, exact uniqueness count, plan, text, spans)"
    )
    t = time.perf_counter()
    assert all(solve(ex.problem).n_optimal_plans == 1 for ex in examples)
    dt = time.perf_counter() - t
    print(f"re-checking all {n} with solve() (warm cache): {dt:.2f} s = {n / dt:,.0f} problems/s")


def bench_planner(samples: int = 20) -> None:
    print("\ncold planner cost for one problem (mean over random problems at that length):")
    print("states = hand-empty arrangements reachable in 4 slots; expanded = states the")
    print("search from the goal expands before the init's distance is final")
    print(
        f"{'blocks':>6} {'states':>8} {'level':>5} {'steps':>5} {'problems':>13} "
        f"{'unique':>13} {'expanded':>9} {'ms/solve':>9}"
    )
    rng = random.Random(0)
    for n in range(3, 9):
        colors = [f"c{i}" for i in range(n)]
        for level in range(1, 6):
            total = count_problems(n, level, colors=colors)
            unique = count_problems(n, level, colors=colors, unique=True)
            if total == 0:
                print(
                    f"{n:>6} {arrangements(n, 4):>8} {'L' + str(level):>5} {2 * level:>5} "
                    f"{0:>13,} {0:>13,} {'-':>9} {'-':>9}"
                )
                continue
            problems = generate_problems(n, level, samples, colors=colors, seed=rng.random())
            expanded, times = [], []
            for ex in problems:
                lab = label(ex.problem)
                t = time.perf_counter()
                tree = goal_tree(lab.shape, 4, cache=False)
                assert tree.find(lab.init) == level
                times.append(time.perf_counter() - t)
                expanded.append(tree.expanded)
            print(
                f"{n:>6} {arrangements(n, 4):>8} {'L' + str(level):>5} {2 * level:>5} "
                f"{total:>13,} {unique:>13,} {statistics.mean(expanded):>9,.0f} "
                f"{1000 * statistics.mean(times):>9.2f}"
            )
    print("\nwarm: after one search per goal shape, a solve is a dictionary lookup.")
    clear_caches()
    t = time.perf_counter()
    for sh in shapes(8, 4):
        goal_tree(sh, 4).grow_to(5)
    print(
        f"building all {len(shapes(8, 4))} goal-shape searches for 8 blocks to depth L5: "
        f"{time.perf_counter() - t:.2f} s"
    )
    ProblemPool._cache.clear()


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    bench_paper()
    bench_l5()
    bench_planner()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
