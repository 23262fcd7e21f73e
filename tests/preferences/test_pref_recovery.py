"""Known answers for the recovery: weights behind simulated decisions come back; one-class and
separable scenarios are flagged, not zeroed; invalid replies are dropped and counted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reasonlens.errors import UserError
from reasonlens.studies.preferences.weights import (
    choice_agreement,
    differences,
    fit_scenario,
    pooled_correlation,
    recover_weights,
    rescale,
    separation,
    target_choice,
)
from reasonlens.tasks.preferences import Attribute, Decision, Scenario
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue


def _by_name(scenarios):
    return {s.short_name: s for s in scenarios}


@pytest.mark.parametrize("regression", ["l2", "unregularised"])
def test_simulated_decisions_recover_known_weights(synth, regression):
    scenarios = synth.make_scenarios(20)
    weights = synth.make_weights(scenarios)
    decisions = synth.simulate(scenarios, weights, n_trials=200)
    recovery = recover_weights(_by_name(scenarios), decisions, regression)
    assert recovery.excluded == {}
    assert len(recovery.learned) == 20
    r = pooled_correlation(recovery.learned, weights, n_boot=200)
    assert r.r > 0.9, r
    assert r.ci_low < r.r < r.ci_high
    for w in recovery.learned.values():
        assert max(abs(v) for v in w) == pytest.approx(100)
        assert not all(float(v).is_integer() for v in w)  # floats, not rounded


def test_planted_invalid_reply_is_dropped_and_counted_not_a(synth):
    scenario = synth.make_scenarios(1)[0]
    weights = synth.make_weights([scenario])
    decisions = synth.simulate([scenario], weights, n_trials=100)
    a, b = decisions[0].a, decisions[0].b
    planted = [*decisions, Decision(scenario.short_name, "maybe", a, b)]
    fit = fit_scenario(scenario, planted)
    clean = fit_scenario(scenario, decisions)
    assert fit.n_trials == 101 and fit.n_invalid == 1 and fit.n_valid == 100
    assert fit.n_a == clean.n_a  # "maybe" is not an "A"
    assert fit.slopes == pytest.approx(clean.slopes)
    agreement = choice_agreement({scenario.short_name: scenario}, weights, planted)
    assert agreement.n_invalid == 1 and agreement.n_valid == 100
    assert agreement.share_a == clean.n_a / 100


def test_one_class_scenarios_are_excluded_not_zeroed(synth):
    scenarios = synth.make_scenarios(3)
    weights = synth.make_weights(scenarios)
    decisions = synth.simulate(scenarios, weights, n_trials=60)
    decisions = [
        Decision(d.scenario, "A", d.a, d.b) if d.scenario == "thing_1" else d for d in decisions
    ]
    for regression in ("l2", "unregularised"):
        recovery = recover_weights(_by_name(scenarios), decisions, regression)
        assert "thing_1" not in recovery.learned
        assert recovery.excluded == {"thing_1": "one outcome class (all 60 valid are A)"}
        assert recovery.fits["thing_1"].weights is None
    only_invalid = [Decision("thing_0", "?", d.a, d.b) for d in decisions[:5]]
    fit = fit_scenario(scenarios[0], only_invalid)
    assert fit.excluded == "no valid decisions" and fit.n_invalid == 5


def test_separable_scenarios_are_flagged(synth):
    scenarios = synth.make_scenarios(4)
    weights = synth.make_weights(scenarios)
    noisy = synth.simulate(scenarios[:2], weights, n_trials=150, temperature=40)
    exact = synth.simulate(scenarios[2:], weights, n_trials=50, deterministic=True)
    named = _by_name(scenarios)
    unregularised = recover_weights(named, noisy + exact, "unregularised")
    assert set(unregularised.excluded) == {"thing_2", "thing_3"}
    for name in ("thing_2", "thing_3"):
        assert "complete separation" in unregularised.excluded[name]
        assert "no finite" in unregularised.excluded[name]
    assert set(unregularised.learned) == {"thing_0", "thing_1"}
    l2 = recover_weights(named, noisy + exact, "l2")
    assert set(l2.learned) == set(named)  # the prior keeps the estimate finite
    assert l2.separable == {"thing_2": "complete", "thing_3": "complete"}
    # the target rule's own choices recover the targets almost exactly under the prior
    assert (
        pooled_correlation({k: l2.learned[k] for k in ("thing_2", "thing_3")}, weights, n_boot=0).r
        > 0.9
    )


def test_separation_kinds():
    x = np.array([[-1.0], [-0.5], [0.5], [1.0]])
    assert separation(x, np.array([0, 0, 1, 1.0])) == "complete"
    assert separation(x, np.array([0, 1, 0, 1.0])) is None
    # a tie on the boundary: x = 0 is both an A and a B
    x = np.array([[-1.0], [0.0], [0.0], [1.0]])
    assert separation(x, np.array([0, 0, 1, 1.0])) == "quasi-complete"


def test_l2_is_the_map_with_an_unpenalised_intercept(synth):
    """sklearn C=1 (lbfgs) equals the MAP with N(0, 1) on the slopes and a flat intercept."""
    from scipy.optimize import minimize

    scenario = synth.make_scenarios(1)[0]
    weights = synth.make_weights([scenario])
    decisions = synth.simulate([scenario], weights, n_trials=80)
    # a strong A bias, so that a penalised intercept would visibly shrink
    decisions = [
        Decision(d.scenario, "A", d.a, d.b) if i % 3 == 0 else d for i, d in enumerate(decisions)
    ]
    x = np.array([differences(scenario, d.a, d.b) for d in decisions])
    y = np.array([d.choice == "A" for d in decisions], dtype=float)

    def neg_log_posterior(theta):
        z = theta[0] + x @ theta[1:]
        return np.sum(np.logaddexp(0, z) - y * z) + 0.5 * np.sum(theta[1:] ** 2)

    best = minimize(neg_log_posterior, np.zeros(6), method="BFGS", options={"gtol": 1e-9}).x
    fit = fit_scenario(scenario, decisions)
    assert fit.intercept == pytest.approx(best[0], abs=1e-4)
    assert fit.slopes == pytest.approx(best[1:], abs=1e-4)


def test_rescale_keeps_signs_and_refuses_all_zero():
    assert rescale([2.0, -4.0, 1.0, 0.0, 0.5]) == (50.0, -100.0, 25.0, 0.0, 12.5)
    assert rescale([0.0] * 5) is None


def test_target_choice_ties_go_to_b():
    scenario = Scenario("s", "?", tuple(Attribute(f"a{k}", 0.0, 10.0) for k in range(5)))
    same = (1.0, 2.0, 3.0, 4.0, 5.0)
    assert target_choice(scenario, (100, 0, 0, 0, 0), same, same) == "B"
    better = (2.0, 2.0, 3.0, 4.0, 5.0)
    assert target_choice(scenario, (100, 0, 0, 0, 0), better, same) == "A"
    assert target_choice(scenario, (-100, 0, 0, 0, 0), better, same) == "B"


def test_unknown_regression():
    with pytest.raises(UserError, match="unknown regression 'l1'"):
        recover_weights({}, [], "l1")  # type: ignore[arg-type]


def test_pooled_r_bootstrap_is_seeded_and_degenerate_inputs_give_none():
    rng = np.random.default_rng(0)
    x = {f"s{i}": tuple(rng.normal(size=5)) for i in range(10)}
    y = {k: tuple(np.array(v) + rng.normal(size=5)) for k, v in x.items()}
    one = pooled_correlation(x, y, n_boot=100, seed=3)
    assert one == pooled_correlation(x, y, n_boot=100, seed=3)
    assert one.n_scenarios == 10 and one.n_pairs == 50
    flat = {k: (1.0,) * 5 for k in x}
    assert pooled_correlation(x, flat).r is None
    assert pooled_correlation(x, {}).r is None
    assert not math.isnan(one.p)


def test_paired_correlation_compares_two_models_on_the_same_scenarios_and_resamples():
    from reasonlens.studies.preferences.weights import paired_correlation

    rng = np.random.default_rng(0)
    names = [f"s{i}" for i in range(12)]
    targets = {n: tuple(rng.uniform(-100, 100, 5)) for n in names}
    good = {n: tuple(np.add(targets[n], rng.normal(0, 30, 5))) for n in names}
    noise = {n: tuple(rng.uniform(-100, 100, 5)) for n in names[:10]}  # two have no fit
    out = paired_correlation(good, noise, targets, n_boot=500, seed=1)
    assert out["n_scenarios"] == 10  # only the scenarios both models have weights for
    assert out["difference"] == pytest.approx(out["r"] - out["control_r"])
    assert out["low"] > 0 and out["share_higher"] == 1.0 and out["n_resamples"] == 500
    assert out["r_low"] < out["r"] < out["r_high"]
    same = paired_correlation(good, good, targets, n_boot=200, seed=1)
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    assert same["share_higher"] == 0.0
    assert paired_correlation(good, {}, targets)["r"] is None


def test_sign_agreement_beats_the_commoner_letter_only_when_the_sign_follows_the_targets():
    from reasonlens.studies.preferences.weights import sign_agreement
    from reasonlens.tasks.preferences.scenarios import utility

    catalogue = load_catalogue()
    names = list(catalogue)[:8]
    targets = {n: T.draw_targets(catalogue[n], 0) for n in names}
    trials = [t for n in names for t in T.draw_trials(catalogue[n], targets[n], 30, 0, "test")]
    scen = {n: catalogue[n] for n in names}

    def decisions(read):
        return [Decision(t.scenario, "", t.a, t.b, read(t)) for t in trials]

    def margin(t):
        s, w = scen[t.scenario], targets[t.scenario]
        return utility(s, w, t.a) - utility(s, w, t.b)

    follows = sign_agreement(scen, targets, decisions(margin), n_boot=300, seed=0)
    assert follows["agreement"] == 1.0 and follows["n"] == len(trials)
    assert follows["versus_commoner_low"] > 0 and follows["share_above_commoner"] == 1.0
    always_a = sign_agreement(scen, targets, decisions(lambda t: 1.0), n_boot=300, seed=0)
    share_a = np.mean([t.target == "A" for t in trials])
    assert always_a["agreement"] == pytest.approx(share_a)
    assert always_a["commoner"] == pytest.approx(max(share_a, 1 - share_a))
    assert always_a["versus_commoner_high"] <= 0 + 1e-12
