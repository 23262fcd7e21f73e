"""The backtracking study's verdict, and its known answers: a lag is "beyond the text" only
when the onset AUC clears chance and the permutation null and beats every control by the
minimum effect; a control (or the null) at the ceiling makes a lag not measurable; nothing
"beats" a control below chance without clearing chance; the headline is the contiguous run.
End to end: pure noise earns neither "beyond the text" nor "lexical" at any lag over 10 seeds,
and templated chains whose spans any control predicts are not measurable at every lag."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from tiny_backtracking import TINY

from reasonlens.analyses.lag_probes import LagProbeConfig, TensorChains
from reasonlens.report.verdicts import (
    AGREES,
    CONTROL_TOO,
    DIFFERS,
    NOT_MEASURABLE,
    UNCLEAR,
    Estimate,
    Floor,
    Versus,
    beyond_controls,
)
from reasonlens.studies.backtracking import presets
from reasonlens.studies.backtracking.analysis import analyse, lexical_sources
from reasonlens.studies.backtracking.report import (
    BEYOND,
    LEXICAL,
    NO_SIGNAL,
    UNTRAINED_TOO,
    furthest_run,
    lag_verdict,
    lag_verdicts,
)
from reasonlens.testing import run_cli


def _row(auc=(0.80, 0.75, 0.85), upper=0.55, n_positive=5, **controls) -> dict:
    """One onset lag's row: the probe's AUC (value, low, high), the null's upper percentile,
    and per control (value, low, high, diff_low, diff_high); defaults beat everything."""
    beaten = (0.60, 0.55, 0.65, 0.10, 0.30)
    given = {n: controls.get(n, beaten) for n in ("prefix", "bag", "embed", "random")}
    given |= {n: v for n, v in controls.items() if n == "untrained"}
    return {
        "lag": 4,
        "auc": dict(zip(("value", "low", "high"), auc, strict=True)),
        "n_positive": n_positive,
        "rule": {"chance": 0.5, "min_effect": 0.02, "ceiling": 0.95},
        "null": {"quantile": 0.95, "upper": upper, "permutations": 100},
        "controls": {
            n: {"auc": dict(zip(("value", "low", "high"), c[:3], strict=True)), "diff": list(c[3:])}
            for n, c in given.items()
        },
    }


def _said(row: dict) -> tuple[str, str | None]:
    v = lag_verdict(row)
    return v.word, v.label


def test_beyond_the_text_needs_every_floor_and_control_cleared_by_the_margin():
    assert _said(_row()) == (AGREES, BEYOND)
    # above the prefix baseline, but by less than the minimum effect: not beaten
    close = _row(prefix=(0.79, 0.74, 0.84, 0.01, 0.05))
    assert _said(close) == (CONTROL_TOO, LEXICAL)
    assert "prefix lexical baseline (b) by 0.02: 0.010 [0.010, 0.050]" in lag_verdict(close).why
    assert _said(_row(random=(0.78, 0.70, 0.84, -0.01, 0.06))) == (CONTROL_TOO, LEXICAL)
    assert _said(_row(untrained=(0.80, 0.75, 0.85, -0.02, 0.02))) == (CONTROL_TOO, UNTRAINED_TOO)
    # a control that does not clear the floors itself leaves it unclear, not "lexical"
    assert _said(_row(bag=(0.56, 0.50, 0.60, 0.0, 0.4))) == (UNCLEAR, LEXICAL)


def test_the_null_and_chance_are_floors():
    assert _said(_row(auc=(0.575, 0.56, 0.585), upper=0.57)) == (DIFFERS, NO_SIGNAL)
    assert _said(_row(auc=(0.62, 0.58, 0.66), upper=0.57)) == (UNCLEAR, NO_SIGNAL)
    assert _said(_row(auc=(0.62, 0.60, 0.64), upper=0.57)) == (AGREES, BEYOND)


def test_nothing_beats_a_control_below_chance_without_clearing_chance():
    """The noise case the seed's verdict got wrong: a probe at chance, a shuffle below it."""
    noise = _row(auc=(0.51, 0.49, 0.53), upper=0.45, embed=(0.45, 0.43, 0.47, 0.03, 0.09))
    word, label = _said(noise)
    assert label == NO_SIGNAL and word == UNCLEAR
    assert "chance 0.500 + 0.02" in lag_verdict(noise).why


def test_a_control_or_the_null_at_the_ceiling_is_not_measurable():
    high = _row(auc=(0.99, 0.98, 1.0), prefix=(0.97, 0.96, 0.98, 0.01, 0.03))
    verdict = lag_verdict(high)
    assert verdict.word == NOT_MEASURABLE and verdict.label is None
    assert verdict.why.startswith("prefix lexical baseline (b) reaches 0.970")
    null = lag_verdict(_row(auc=(0.99, 0.98, 1.0), upper=0.985))
    assert null.word == NOT_MEASURABLE and "permutation null's 95% percentile" in null.why
    assert lag_verdict(_row(n_positive=0)).word == NOT_MEASURABLE


def test_the_general_rule_without_labels_floors_or_ceiling():
    est = Estimate(0.7, 0.65, 0.75)
    assert beyond_controls(est, [], []).word == AGREES
    assert beyond_controls(Estimate(None), [], []).word == NOT_MEASURABLE
    assert beyond_controls(Estimate(0.7), [], []).word == NOT_MEASURABLE  # no interval
    weak = Versus("c", Estimate(0.3, 0.2, 0.4), Estimate(0.4, -0.1, 0.9))
    assert beyond_controls(est, [Floor("chance", 0.5)], [weak]).word == UNCLEAR
    assert beyond_controls(est, [Floor("chance", 0.5)], [weak], ceiling=0.95).word == UNCLEAR
    assert beyond_controls(est, [Floor("null", 0.96)], [], ceiling=0.95).word == NOT_MEASURABLE


def test_the_headline_is_the_contiguous_run_from_the_first_positive_lag():
    def rows(*words):
        return [{"lag": 4 * (i + 1), "verdict": w} for i, w in enumerate(words)]

    assert furthest_run(rows(BEYOND, BEYOND, NO_SIGNAL, BEYOND)) == 8
    assert furthest_run(rows(NO_SIGNAL, BEYOND, BEYOND)) is None
    assert furthest_run(rows(BEYOND, UNTRAINED_TOO, BEYOND)) == 4
    assert furthest_run(rows(BEYOND, UNTRAINED_TOO, BEYOND), (BEYOND, UNTRAINED_TOO)) == 12
    assert furthest_run([{"lag": -4, "verdict": NO_SIGNAL}, *rows(BEYOND)]) == 4


def _noise(seed: int, n: int = 30, t: int = 80):
    """Chains of random tokens with spans after a trigger token (so the text predicts them),
    and activations that are pure noise."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    tokens, labels, feats = [], [], []
    for _ in range(n):
        ids = rng.integers(3, 20, t)
        y = torch.zeros(t, dtype=torch.long)
        y[:5] = -1
        for s in range(int(rng.integers(10, 25)), t - 8, int(rng.integers(20, 35))):
            ids[s - 1] = 1  # the trigger
            y[s : s + 4] = 1
        tokens.append(ids.tolist())
        labels.append(y)
        feats.append(torch.randn(2, t, 8, generator=gen))
    return tokens, labels, TensorChains(feats, labels, layers=["a", "b"])


def test_pure_noise_is_never_beyond_the_text_nor_lexical_over_ten_seeds():
    seen = set()
    for seed in range(10):
        tokens, labels, noise = _noise(seed)
        ids = [str(i) for i in range(len(tokens))]
        sources = {"probes": noise}
        sources |= lexical_sources(tokens, labels, ids, torch.randn(20, 6), bag_k=4)
        config = LagProbeConfig(lags=(0, 4, 8, 12), bootstrap=100, device="cpu", seed=seed)
        out, _ = analyse(sources, config, null_permutations=20)
        rows = lag_verdicts(out)
        assert [r["lag"] for r in rows] == [4, 8, 12]
        said = {r["verdict"] for r in rows}
        assert BEYOND not in said and LEXICAL not in said, (seed, said)
        seen |= said
    assert seen <= {NO_SIGNAL, "not measurable"}


FILLER = (
    "I add the two numbers.",
    "Then I carry the one.",
    "The sum is even so far.",
    "Next I look at the tens.",
    "That gives me a new total.",
    "I write the digit down.",
)
TRIGGER = "Let me check this once more."
SPAN = "Wait, that is wrong, so I go back."


def templated(n: int, seed: int = 0) -> list[dict]:
    """Chains (the JSONL layout) of filler sentences where every backtracking span follows the
    same sentence, at a different place in each chain."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        parts = [rng.choice(FILLER) for _ in range(rng.randint(4, 8))]
        at = rng.randint(1, len(parts) - 1)
        text = " ".join(parts[:at] + [TRIGGER, SPAN] + parts[at:])
        start = text.index(SPAN)
        out.append(
            {
                "id": f"c{i}",
                "problem": "Add the numbers.",
                "text": text,
                "spans": [{"start": start, "end": start + len(SPAN), "label": "backtracking"}],
            }
        )
    return out


def test_templated_chains_are_not_measurable_at_every_lag(tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    path = tmp_path / "chains.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in templated(60)))
    args = ["study", "backtracking", "--preset", "tiny", "--model", tiny_dir, "--chains", path]
    code, _, err = run_cli(
        [*args, "--template", "raw", "--quiet", "--out", tmp_path / "run"], capsys
    )
    assert code == 0, err
    results = json.loads((tmp_path / "run/results.json").read_text())
    rows = results["lags"]
    assert [r["lag"] for r in rows] == [4, 8]
    assert {r["verdict"] for r in rows} == {"not measurable"}
    for r in rows:
        assert "reaches" in lag_verdict(r).why and "ceiling 0.95" in lag_verdict(r).why
    assert results["furthest_onset_lag"] is None
    report = (tmp_path / "run/report.md").read_text()
    assert "beyond the text: agrees" not in report and "the controls already predict" in report


@pytest.mark.parametrize("seed", [0, 1])
def test_templated_chains_differ_in_where_their_span_falls(seed):
    chains = templated(10, seed)
    starts = {c["spans"][0]["start"] for c in chains}
    assert len(starts) > 3
    for c in chains:
        s = c["spans"][0]
        assert c["text"][s["start"] : s["end"]] == SPAN
        assert c["text"][: s["start"]].rstrip().endswith(TRIGGER)
