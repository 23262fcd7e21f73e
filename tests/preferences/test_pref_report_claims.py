"""The preferences report's claims: r > 0 judged on its 95% CI over scenarios beside the
untrained model (report.verdicts.by_interval), with the sample-size rule first."""

from __future__ import annotations

from reasonlens.report.verdicts import AGREES, CONTROL_TOO, NOT_MEASURABLE, UNCLEAR
from reasonlens.studies.preferences.report import _agreement_claim, _r_claim


def _corr(r, low, high, n=6):
    return {"r": r, "ci_low": low, "ci_high": high, "n_scenarios": n}


def _said(c, control=None):
    return _r_claim("r > 0", c, control).verdict


def test_r_above_0_by_its_ci_beside_the_untrained_model():
    c = _corr(0.4, 0.2, 0.6)
    assert _said(c).word == AGREES  # no r for the control: it does not reach the claim
    assert _said(c, _corr(0.0, -0.2, 0.1)).word == AGREES
    assert _said(c, _corr(0.5, 0.3, 0.7)).word == CONTROL_TOO
    assert _said(c, _corr(0.1, -0.1, 0.3)).word == UNCLEAR
    assert _said(_corr(0.1, -0.1, 0.3)).word == UNCLEAR


def test_fewer_than_5_scenarios_give_no_verdict():
    said = _said(_corr(0.9, 0.8, 0.95, n=4))
    assert said.word == NOT_MEASURABLE
    assert str(said) == "not measurable (4 scenarios: a verdict needs at least 5)"
    assert _said(None).word == NOT_MEASURABLE


def test_agreement_has_no_interval_so_it_says_so():
    inst = {"agreement": 0.8, "target_share_a": 0.4, "n_scenarios": 6, "n_trials": 10}
    claim = _agreement_claim(inst, {"n_trials": 10, "n_invalid": 10})
    assert claim.verdict.word == NOT_MEASURABLE and "no interval" in claim.verdict.why
    assert "(60.0%)" in claim.text and claim.value == "80.0% of 10 valid"


def _pair(diff, low, high, share, n=6):
    return {
        "difference": diff,
        "low": low,
        "high": high,
        "share_higher": share,
        "n_resamples": 1000,
        "n_scenarios": n,
    }


def test_the_paired_difference_decides_against_the_untrained_model():
    """Two separate intervals can overlap while the paired one excludes 0 (the noise the two
    share cancels), and the reverse; with a pairing, the pairing decides."""
    c, control = _corr(0.4, 0.2, 0.6), _corr(0.25, 0.05, 0.45)
    assert _r_claim("r > 0", c, control).verdict.word == CONTROL_TOO  # unpaired: overlap
    claim = _r_claim("r > 0", c, control, paired=_pair(0.15, 0.05, 0.25, 0.99))
    assert claim.verdict.word == AGREES and "beats untrained model by 0.150" in claim.verdict.why
    assert "higher in 99.0% of 1000 resamples" in claim.control
    apart = _corr(0.0, -0.15, 0.15)
    said = _r_claim("r > 0", c, apart, paired=_pair(0.4, -0.05, 0.8, 0.9)).verdict
    assert said.word == UNCLEAR  # apart alone, but not by the pairing
    # a pairing on fewer than 5 scenarios has no interval to decide by
    few = _r_claim("r > 0", c, apart, paired=_pair(0.4, 0.1, 0.8, 1.0, n=4)).verdict
    assert few.word == AGREES and "against untrained model's" in few.why


def _sign(agree, low, high, common, d_low, d_high, n=6):
    return {
        "sign_agreement": {
            "agreement": agree,
            "agreement_low": low,
            "agreement_high": high,
            "commoner": common,
            "commoner_low": common - 0.05,
            "commoner_high": common + 0.05,
            "versus_commoner": agree - common,
            "versus_commoner_low": d_low,
            "versus_commoner_high": d_high,
            "share_above_commoner": 0.99,
            "n": 300,
            "n_scenarios": n,
        }
    }


def test_the_logit_sign_claim_is_judged_against_the_commoner_letter_share():
    from reasonlens.studies.preferences.report import _sign_claim

    inst, base = _sign(0.7, 0.6, 0.8, 0.52, 0.08, 0.28), _sign(0.5, 0.4, 0.6, 0.52, -0.1, 0.06)
    claim = _sign_claim(inst, base)
    assert claim.verdict.word == AGREES
    assert "vs the commoner letter's share 0.520" in claim.value
    assert "above it in 99.0% of resamples" in claim.value
    # a one-letter model agrees at the commoner share: its difference straddles 0
    flat = _sign(0.52, 0.45, 0.6, 0.52, -0.02, 0.02)
    assert _sign_claim(flat, base).verdict.word == UNCLEAR


def test_the_report_names_the_primary_read_out_of_a_one_sided_model():
    from reasonlens.studies.preferences.report import _primary_note

    one_sided = {
        "primary_readout": "logit_linear",
        "instilled": {"share_a": 1.0, "n_trials": 50, "n_invalid": 0},
    }
    note = _primary_note(one_sided)
    assert note.startswith("Primary read-out: logit(A) - logit(B)")
    assert 'answers "A" to every one of its 50 valid trials' in note
    assert _primary_note({"instilled": {}}).startswith("Primary read-out: the letter")


def test_the_quick_report_says_its_budget_is_below_what_instillation_needs(preferences_study):
    from reasonlens.studies.preferences.report import preferences_report

    _, results = preferences_study
    quick = preferences_report(None, {**results, "preset": "quick"}, {})
    assert any(
        "below what instillation needs" in x and "0.26 [-0.19, 0.65]" in x for x in quick.intro
    )
    assert not any("below what" in x for x in preferences_report(None, results, {}).intro)
