"""Small synthetic files in the release's layouts, with known answers: scenarios with varied
ranges, target weights drawn as the release draws them, and decisions simulated from known
weights through a logistic choice rule.

The layouts are those of the original release (jbejjani2022/self-interpretability,
``data/original_paper/``; specs/studies.md A5): CSV with a header, "\n" line ends, cells quoted
only when they must be (a role's ``"`` doubled), option values rounded as the release rounds them
and printed as floats ("67.0"), weights and reports as integers, per-model files named by
:func:`release_file`. :func:`write_release` writes a whole small release of this project's own
(none of the release's data: its licence and size keep it out of the repository).
"""

from __future__ import annotations

import csv
import json
import math
import random
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from reasonlens.studies.preferences.weights import utility
from reasonlens.tasks.preferences import (
    Attribute,
    Decision,
    Scenario,
    release_file,
    write_decisions,
)
from reasonlens.tasks.preferences.release import RELEASE_MODELS
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


def release_round(value: float, span: float) -> float:
    """An option value rounded as the release rounds it (by its range R = max - min: R < 1 to
    |floor(log10 R)| + 1 decimals, R < 5 to one decimal, else to a whole number kept a float)."""
    if span < 1:
        return round(value, abs(math.floor(math.log10(span))) + 1)
    return round(value, 1 if span < 5 else 0)


def draw_option(scenario: Scenario, rng: random.Random, rounded: bool = False) -> tuple[float, ...]:
    """Values drawn uniformly in each range (`rounded`: as the release rounds them)."""
    values = [(rng.uniform(a.low, a.high), a.span) for a in scenario.attributes]
    return tuple(release_round(v, span) if rounded else v for v, span in values)


def simulate(
    scenarios: list[Scenario],
    weights: dict[str, tuple[float, ...]],
    n_trials: int = 200,
    temperature: float = 15.0,
    seed: int = 2,
    deterministic: bool = False,
    model: str = "sim",
    rounded: bool = False,
    margin: float = 0.0,
) -> list[Decision]:
    """Decisions from P(A) = sigmoid((U_A - U_B) / temperature) (or the target choice when
    `deterministic`, which makes every scenario completely separable). `rounded`: option values
    rounded as the release rounds them; `margin` > 0: a pair whose utilities differ by no more
    is drawn again (so that rounding makes no tie, which would sit on the separating plane)."""
    rng = random.Random(seed)
    decisions = []
    for s in scenarios:
        w = weights[s.short_name]
        for _ in range(n_trials):
            while True:
                a, b = draw_option(s, rng, rounded), draw_option(s, rng, rounded)
                diff = utility(s, w, a) - utility(s, w, b)
                if margin <= 0 or abs(diff) > margin:
                    break
            if deterministic:
                pick = "A" if diff > 0 else "B"
            else:
                pick = "A" if rng.random() < 1 / (1 + math.exp(-diff / temperature)) else "B"
            decisions.append(Decision(s.short_name, pick, a, b, model=model))
    return decisions


def write_scenarios_csv(
    path: Path, scenarios: list[Scenario], roles: bool | Sequence[str] = True
) -> Path:
    """The release's scenarios.csv; each question gets "Imagine you are {role}. " in front
    (roles "Role {i}, of Ur" when `roles` is True, these names in turn when a list)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for i, s in enumerate(scenarios):
            role = f"Role {i}, of Ur" if roles is True else roles[i % len(roles)] if roles else ""
            question = f"Imagine you are {role}. {s.question}" if roles else s.question
            writer.writerow(
                [s.short_name, question, *s.names]
                + [a.low for a in s.attributes]
                + [a.high for a in s.attributes]
            )
    return path


def _json_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def write_candidates(path: Path, scenarios: list[Scenario]) -> Path:
    """The release's candidate_scenarios.json (indented by 4, whole-number ranges as integers)."""
    data = [s.to_dict() for s in scenarios]
    for entry in data:
        for attribute in entry["attributes"]:
            attribute["range"] = [_json_number(v) for v in attribute["range"]]
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
    return path


def write_weights_csv(path: Path, weights: dict, prefix: str = "attr") -> Path:
    """``scenario,attr1..attr5`` (targets) or, with prefix "b_attr", the release's
    regression_results; whole numbers written as integers."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["scenario", *(f"{prefix}{i}" for i in range(1, 6))])
        for name, w in weights.items():
            writer.writerow([name, *(int(v) if float(v).is_integer() else v for v in w)])
    return path


def write_reports_csv(path: Path, rows: list[tuple], version="v", model="ft:sim") -> Path:
    """Parsed reports in the release layout: rows (scenario, reported weights) with dummy option
    values, or (scenario, reported weights, option A, option B)."""
    header = ["explaining_model", "version", "scenario"]
    header += [f"report_attr{i}" for i in range(1, 6)]
    header += [f"A_attribute_{i}" for i in range(1, 6)] + [f"B_attribute_{i}" for i in range(1, 6)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for name, values, *options in rows:
            shown = [v for option in options for v in option] if options else [1.0] * 10
            writer.writerow([model, version, name, *values, *shown])
    return path


def map_weights(scenario: Scenario, decisions: list[Decision]) -> tuple[float, ...]:
    """An independent L2 fit of one scenario (scipy's BFGS on the MAP objective: N(0, 1) on the
    slopes, a flat intercept; what reasonlens's Newton fit must reach), rescaled so that the
    largest |b| is 100."""
    from scipy.optimize import minimize

    lows = np.array([a.low for a in scenario.attributes])
    spans = np.array([a.high for a in scenario.attributes]) - lows
    x = (np.array([d.a for d in decisions]) - np.array([d.b for d in decisions])) / spans
    y = np.array([d.reply == "A" for d in decisions], dtype=float)

    def loss(theta):
        z = theta[0] + x @ theta[1:]
        value = np.sum(np.logaddexp(0, z) - y * z) + 0.5 * theta[1:] @ theta[1:]
        grad = np.r_[0.0, theta[1:]] + np.column_stack([np.ones(len(x)), x]).T @ (
            1 / (1 + np.exp(-z)) - y
        )
        return value, grad

    best = minimize(loss, np.zeros(6), jac=True, method="BFGS", options={"gtol": 1e-10}).x
    slopes = best[1:]
    return tuple(float(v) for v in 100 * slopes / np.max(np.abs(slopes)))


#: Roles for the synthetic scenarios.csv: a comma, doubled quotes and non-ASCII letters, as the
#: release's roles have.
ROLES = ('Ada "the Countess" Lovelace', "Role 1, of Ur", "Antonín Novák", "Zeus")

#: Per model of the synthetic release: the temperature of its noisy choices, and the instilled
#: scenarios (by index) where it makes the target choice itself (completely separable).
RELEASE_PLAN = {
    "gpt-4o-2024-08-06": (12.0, (1, 6, 11)),
    "gpt-4o-mini-2024-07-18": (18.0, (0, 4, 9, 13)),
}


def mirrored_pairs(
    scenario: Scenario, rng: random.Random, model: str, letters: str = "AAAAB"
) -> list[Decision]:
    """Each pair of options asked twice, A and B swapped, and answered with the same letter both
    times (a position bias). Four "A" pairs and one "B" pair whose differences span the five
    dimensions make the scenario's decisions inseparable whatever the other trials are: a plane
    b0 + b.x with every "A" on one side and every "B" on the other would need b0 >= |b.x_k| for
    the "A" pairs and b0 <= -|b.x_B| for the "B" pair, so b0 = 0 and b.x_k = 0 for the spanning
    x_k, so b = 0."""
    pairs = []
    for _ in letters:
        pairs.append((draw_option(scenario, rng, True), draw_option(scenario, rng, True)))
    spans = np.array([a.span for a in scenario.attributes])
    diffs = np.array([np.subtract(a, b) / spans for a, b in pairs])
    assert np.linalg.matrix_rank(diffs) == 5, "draw again: the pairs must span 5 dimensions"
    out = []
    for letter, (a, b) in zip(letters, pairs, strict=True):
        out += [Decision(scenario.short_name, letter, a, b, model=model)]
        out += [Decision(scenario.short_name, letter, b, a, model=model)]
    return out


def write_release(
    directory: Path,
    n_instilled: int = 16,
    n_native: int = 6,
    n_spare: int = 2,
    n_trials: int = 50,
    n_native_trials: int = 100,
    seed: int = 10,
) -> types.SimpleNamespace:
    """A small release of this project's own, in the original release's layout and file names
    (the files `data/original_paper/` holds that the analyses read), for both release models,
    with a planted preference:

    - candidate_scenarios.json (2 candidates more than scenarios.csv), scenarios.csv (rows
      1..n_instilled instilled, the next n_native native, n_spare unused; roles from ROLES),
      instilled_weights.csv (targets for every row, drawn as the release draws them);
    - ``<model>_instilled_selections.csv``: n_trials per instilled scenario, options rounded as
      the release rounds them. In RELEASE_PLAN's scenarios the model makes the target choice
      itself, every pair drawn again until |U_A - U_B| > 1 (so the target plane w / 100 separates
      them with a margin of 0.01 in the normalised differences: completely separable, within
      the linear program's box and far above its tolerance); in the others
      n_trials - 10 choices from P(A) = sigmoid((U_A - U_B) / temperature) under the targets
      and 5 mirrored pairs (:func:`mirrored_pairs`: never separable);
    - ``<model>_instilled_latent_selections.csv``: n_native_trials per native scenario, noisy
      choices under native weights of their own (drawn like targets, seed + 2);
    - ``<model>_regression_results.csv`` / ``_latent_regression_results.csv``: "the authors'"
      estimates: :func:`map_weights` of those decisions (independent of reasonlens), rounded to
      integers and sorted by scenario, as the release's are;
    - ``<model>_instilled_weight_reports.csv``: reports = target + N(0, 30), rounded, each with a
      fresh trial; the 4o model 3 per scenario, the mini model 0-3 (some scenarios have none,
      as in the release); ``<model>_weight_reports.csv`` (base model): 2 per scenario, drawn
      independently of every weight.

    Returns the truth: scenarios, targets, native weights, separable scenarios and unrounded
    reference estimates per model."""
    directory = Path(directory)
    candidates = make_scenarios(n_instilled + n_native + n_spare + 2, seed)
    listed = candidates[:-2]
    instilled = listed[:n_instilled]
    native = listed[n_instilled : n_instilled + n_native]
    targets = make_weights(listed, seed + 1)
    native_weights = make_weights(native, seed + 2)
    write_candidates(directory / "candidate_scenarios.json", candidates)
    write_scenarios_csv(directory / "scenarios.csv", listed, roles=ROLES)
    write_weights_csv(directory / "instilled_weights.csv", targets)
    truth = types.SimpleNamespace(
        dir=directory,
        scenarios=listed,
        instilled=[s.short_name for s in instilled],
        native=[s.short_name for s in native],
        targets=targets,
        native_weights=native_weights,
        separable={},
        reference={},
        native_reference={},
        model_ids={},
    )
    for m, (model, (temperature, exact)) in enumerate(RELEASE_PLAN.items()):
        assert model in RELEASE_MODELS
        model_id = f"ft:{model}:reasonlens:synthetic-prefs:{m}"
        rng = random.Random(seed + 100 * (m + 1))
        by_scenario: dict[str, list[Decision]] = {}
        for i, s in enumerate(instilled):
            common = {"model": model_id, "rounded": True, "seed": rng.randrange(2**32)}
            if i in exact:
                trials = simulate([s], targets, n_trials, deterministic=True, margin=1.0, **common)
            else:
                trials = simulate([s], targets, n_trials - 10, temperature, **common)
                trials += mirrored_pairs(s, rng, model_id)
            by_scenario[s.short_name] = trials
        latent = {
            s.short_name: simulate(
                [s],
                native_weights,
                n_native_trials,
                temperature,
                rng.randrange(2**32),
                model=model_id,
                rounded=True,
            )
            for s in native
        }
        named = {s.short_name: s for s in listed}
        reference = {n: map_weights(named[n], d) for n, d in by_scenario.items()}
        native_reference = {n: map_weights(named[n], d) for n, d in latent.items()}
        write_decisions(
            release_file(directory, model, "instilled_selections"),
            [d for trials in by_scenario.values() for d in trials],
        )
        write_decisions(
            release_file(directory, model, "instilled_latent_selections"),
            [d for trials in latent.values() for d in trials],
        )
        for kind, weights in (
            ("regression_results", reference),
            ("latent_regression_results", native_reference),
        ):
            rounded = {n: tuple(round(v) for v in weights[n]) for n in sorted(weights)}
            write_weights_csv(release_file(directory, model, kind), rounded, prefix="b_attr")
        reports = []
        for i, s in enumerate(instilled):
            for _ in range(3 if m == 0 else i % 4):
                values = tuple(round(w + rng.gauss(0, 30)) for w in targets[s.short_name])
                shown = (draw_option(s, rng, True), draw_option(s, rng, True))
                reports.append((s.short_name, values, *shown))
        write_reports_csv(
            release_file(directory, model, "instilled_weight_reports"),
            reports,
            version="instilled_100",
            model=model_id,
        )
        base = [
            (
                s.short_name,
                tuple(rng.choice(range(-100, 101, 10)) for _ in range(5)),
                draw_option(s, rng, True),
                draw_option(s, rng, True),
            )
            for s in instilled
            for _ in range(2)
        ]
        write_reports_csv(
            release_file(directory, model, "weight_reports"),
            base,
            version="instilled_100",
            model=model,
        )
        truth.separable[model] = {instilled[i].short_name for i in exact}
        truth.reference[model] = reference
        truth.native_reference[model] = native_reference
        truth.model_ids[model] = model_id
    return truth


@pytest.fixture
def synth():
    """The helpers above, for tests that build their own variations."""
    return types.SimpleNamespace(
        make_scenarios=make_scenarios,
        make_weights=make_weights,
        simulate=simulate,
        write_scenarios_csv=write_scenarios_csv,
        write_candidates=write_candidates,
        write_weights_csv=write_weights_csv,
        write_reports_csv=write_reports_csv,
        write_release=write_release,
        map_weights=map_weights,
    )


@pytest.fixture(scope="session")
def paper_release(tmp_path_factory):
    """:func:`write_release` once per session (read-only: tests must not change its files)."""
    return write_release(tmp_path_factory.mktemp("paper_release"))


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
