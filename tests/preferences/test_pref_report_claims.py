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
