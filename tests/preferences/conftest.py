"""Small synthetic files in the release's layouts, with known answers: scenarios with varied
ranges, target weights drawn as the release draws them, and decisions simulated from known
weights through a logistic choice rule."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest

from reasonlens.analyses.preferences import utility
from reasonlens.tasks.preferences import Attribute, Decision, Scenario, write_decisions
from reasonlens.tasks.preferences.scenarios import CSV_COLUMNS


def make_scenarios(n: int, seed: int = 0) -> list[Scenario]:
    """`n` scenarios whose ranges differ in size and offset (so normalising matters)."""
    rng = random.Random(seed)
    scenarios = []
    for s in range(n):
        attributes = []
        for k in range(5):
            low = float(rng.choice([0, 1, 5, 300]))
            span = rng.choice([0.5, 4.0, 10.0, 70.0, 900.0])
            attributes.append(Attribute(f"dim_{s}_{k}", low, low + span, f"unit{k}"))
        scenarios.append(Scenario(f"thing_{s}", f"Which thing {s} would you prefer?", attributes))
    return scenarios


def make_weights(scenarios: list[Scenario], seed: int = 1) -> dict[str, tuple[float, ...]]:
    """Weights as the release draws them: U(-100, 100), rescaled so max |w| = 100, rounded."""
    rng = random.Random(seed)
    weights = {}
    for s in scenarios:
        raw = [rng.uniform(-100, 100) for _ in range(5)]
        top = max(raw, key=abs)
        weights[s.short_name] = tuple(float(round(100 * w / abs(top))) for w in raw)
    return weights


def draw_option(scenario: Scenario, rng: random.Random) -> tuple[float, ...]:
    return tuple(rng.uniform(a.low, a.high) for a in scenario.attributes)


def simulate(
    scenarios: list[Scenario],
    weights: dict[str, tuple[float, ...]],
    n_trials: int = 200,
    temperature: float = 15.0,
    seed: int = 2,
    deterministic: bool = False,
) -> list[Decision]:
    """Decisions from P(A) = sigmoid((U_A - U_B) / temperature) (or the target choice when
    `deterministic`, which makes every scenario completely separable)."""
    rng = random.Random(seed)
    decisions = []
    for s in scenarios:
        w = weights[s.short_name]
        for _ in range(n_trials):
            a, b = draw_option(s, rng), draw_option(s, rng)
            diff = utility(s, w, a) - utility(s, w, b)
            if deterministic:
                pick = "A" if diff > 0 else "B"
            else:
                pick = "A" if rng.random() < 1 / (1 + math.exp(-diff / temperature)) else "B"
            decisions.append(Decision(s.short_name, pick, a, b, model="sim"))
    return decisions


def write_scenarios_csv(path: Path, scenarios: list[Scenario], roles: bool = True) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for i, s in enumerate(scenarios):
            question = f"Imagine you are Role {i}, of Ur. {s.question}" if roles else s.question
            writer.writerow(
                [s.short_name, question, *s.names]
                + [a.low for a in s.attributes]
                + [a.high for a in s.attributes]
            )
    return path


def write_candidates(path: Path, scenarios: list[Scenario]) -> Path:
    path.write_text(json.dumps([s.to_dict() for s in scenarios]), encoding="utf-8")
    return path


def write_weights_csv(path: Path, weights: dict, prefix: str = "attr") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scenario", *(f"{prefix}{i}" for i in range(1, 6))])
        for name, w in weights.items():
            writer.writerow([name, *(int(v) if float(v).is_integer() else v for v in w)])
    return path


def write_reports_csv(path: Path, rows: list[tuple[str, tuple[float, ...]]], version="v") -> Path:
    """Parsed reports in the release layout (option values are dummies)."""
    header = ["explaining_model", "version", "scenario"]
    header += [f"report_attr{i}" for i in range(1, 6)]
    header += [f"A_attribute_{i}" for i in range(1, 6)] + [f"B_attribute_{i}" for i in range(1, 6)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for name, values in rows:
            writer.writerow(["ft:sim", version, name, *values, *([1.0] * 10)])
    return path


@pytest.fixture
def synth():
    """The helpers above, for tests that build their own variations."""
    import types

    return types.SimpleNamespace(
        make_scenarios=make_scenarios,
        make_weights=make_weights,
        simulate=simulate,
        write_scenarios_csv=write_scenarios_csv,
        write_candidates=write_candidates,
        write_weights_csv=write_weights_csv,
        write_reports_csv=write_reports_csv,
    )


@pytest.fixture
def release(tmp_path):
    """A small release: 12 scenarios in scenarios.csv (+ candidate_scenarios.json with 2
    more), target weights, 200 simulated decisions each, and self-reports equal to the targets
    plus noise (3 per scenario)."""
    scenarios = make_scenarios(14)
    used = scenarios[:12]
    weights = make_weights(used)
    decisions = simulate(used, weights)
    rng = random.Random(7)
    reports = [
        (s.short_name, tuple(round(w + rng.gauss(0, 20)) for w in weights[s.short_name]))
        for s in used
        for _ in range(3)
    ]
    paths = {
        "scenarios": write_scenarios_csv(tmp_path / "scenarios.csv", used),
        "units": write_candidates(tmp_path / "candidate_scenarios.json", scenarios),
        "targets": write_weights_csv(tmp_path / "instilled_weights.csv", weights),
        "decisions": write_decisions(tmp_path / "sim_instilled_selections.csv", decisions),
        "reports": write_reports_csv(tmp_path / "sim_instilled_weight_reports.csv", reports),
    }
    return {
        "paths": paths,
        "scenarios": used,
        "weights": weights,
        "decisions": decisions,
        "dir": tmp_path,
    }
