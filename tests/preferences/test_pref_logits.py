"""Recoveries from logit(A) - logit(B): its sign as the decision, the difference itself in a
least-squares fit, and whether it depends on the options at all."""

from __future__ import annotations

import random

import pytest

from reasonlens.studies.preferences.weights import pooled_correlation, utility
from reasonlens.studies.preferences.weights.logits import (
    recover_from_logits,
    recover_from_sign,
    sign_decisions,
    value_sensitivity,
)
from reasonlens.tasks.preferences import Decision
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue


@pytest.fixture(scope="module")
def simulated():
    """Logit differences linear in the target utility difference, plus noise."""
    catalogue = load_catalogue()
    scenarios = {n: catalogue[n] for n in list(catalogue)[10:30]}
    rng = random.Random(0)
    targets, decisions = {}, []
    for name, s in scenarios.items():
        w = T.draw_targets(s, 0)
        targets[name] = w
        for t in T.draw_trials(s, w, 40, 0, "test"):
            d = (utility(s, w, t.a) - utility(s, w, t.b)) / 25 + rng.gauss(0, 0.5)
            reply = rng.choice(["A", "B", "A.", ""])  # the replies do not matter here
            decisions.append(Decision(name, reply, t.a, t.b, d))
    return scenarios, targets, decisions


def test_the_linear_fit_recovers_the_weights_behind_the_logits(simulated):
    scenarios, targets, decisions = simulated
    recovery = recover_from_logits(scenarios, decisions)
    assert recovery.regression == "logit-linear" and set(recovery.learned) == set(scenarios)
    assert all(max(abs(v) for v in w) == pytest.approx(100) for w in recovery.learned.values())
    assert pooled_correlation(recovery.learned, targets, n_boot=0).r > 0.9


def test_the_sign_is_a_decision_for_every_trial_even_an_invalid_reply(simulated):
    scenarios, targets, decisions = simulated
    signed = sign_decisions(decisions)
    assert len(signed) == len(decisions) and all(d.choice in ("A", "B") for d in signed)
    assert all((d.choice == "A") == (d.logit_diff > 0) for d in signed)
    recovery = recover_from_sign(scenarios, decisions)
    assert recovery.regression.startswith("logit-sign") and recovery.n_invalid == 0
    assert pooled_correlation(recovery.learned, targets, n_boot=0).r > 0.8


def test_too_few_trials_or_no_logits_are_excluded_with_the_reason(simulated):
    scenarios, _, decisions = simulated
    name = decisions[0].scenario
    few = [d for d in decisions if d.scenario == name][:6]
    assert "too few" in recover_from_logits(scenarios, few).excluded[name]
    bare = [Decision(d.scenario, d.reply, d.a, d.b) for d in few]
    assert sign_decisions(bare) == []


def test_a_logit_difference_that_never_changes_gives_no_weights_not_rescaled_noise(simulated):
    scenarios, _, decisions = simulated
    name = decisions[0].scenario
    flat = [
        Decision(d.scenario, d.reply, d.a, d.b, -0.125) for d in decisions if d.scenario == name
    ]
    recovery = recover_from_logits(scenarios, flat)
    assert recovery.learned == {} and "same on every trial" in recovery.excluded[name]


def test_sensitivity_tells_a_model_that_reads_the_values_from_one_that_ignores_them(simulated):
    scenarios, _, decisions = simulated
    reads = value_sensitivity(scenarios, decisions)
    rng = random.Random(1)
    ignores = value_sensitivity(
        scenarios, [Decision(d.scenario, d.reply, d.a, d.b, rng.gauss(0, 1)) for d in decisions]
    )
    assert reads["n_scenarios"] == ignores["n_scenarios"] == len(scenarios)
    assert reads["mean_r2"] > 0.6 > ignores["mean_r2"]
    assert ignores["mean_r2"] == pytest.approx(ignores["permuted_r2"], abs=0.05)
    assert reads["permuted_r2"] == pytest.approx(5 / 39, abs=0.05)  # 5 slopes, 40 trials
