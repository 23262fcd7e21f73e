"""Verdicts with their uncertainty: known answers for the bootstrap and the report's claims."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from reasonlens.analyses.result import per_example_path
from reasonlens.analyses.stats import resample_weights
from reasonlens.report.builder import markdown
from reasonlens.report.claims import (
    MIN_PROBLEMS,
    Control,
    Degenerate,
    support,
    verdict,
    verdicts,
    weighted_nanmean,
)
from reasonlens.report.verdicts import multiplicity
from reasonlens.studies.planning.report_analyses import extraction_section, masking_section


def test_resamples_are_multiplicities_summing_to_n():
    w = resample_weights(40, 200, 3, draw="multinomial")
    assert w.shape == (200, 40)
    assert (w.sum(1) == 40).all() and (w >= 0).all()
    assert (w == resample_weights(40, 200, 3, draw="multinomial")).all()  # seeded


def test_weighted_nanmean_is_the_mean_of_the_repeated_rows():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 3, 2))
    values[1, 0, 0] = np.nan
    weights = np.array([2, 0, 1, 3, 1, 1], dtype=float)
    repeated = np.repeat(values, weights.astype(int), axis=0)
    np.testing.assert_allclose(weighted_nanmean(values, weights), np.nanmean(repeated, 0))
    only_nan = np.full((3, 1), np.nan)
    assert np.isnan(weighted_nanmean(only_nan, np.ones(3))).all()


def test_support_of_a_sure_claim_is_one_and_of_a_coin_flip_near_half():
    sure = np.ones(50)  # every problem has a positive effect
    coin = np.array([1.0, -1.0] * 25)  # the mean effect is exactly zero

    def claims(w, effect):
        return {"positive": float((effect * w).sum()) > 0}

    assert support(lambda w: claims(w, sure), 50)["positive"] == 1.0
    share = support(lambda w: claims(w, coin), 50)["positive"]
    assert 0.35 < share < 0.65


@pytest.mark.parametrize(
    ("n", "observed", "share", "expected"),
    [
        (10, True, 1.0, "not measurable (10 problems: a verdict needs at least 30)"),
        (40, True, 0.99, "agrees (99% of resamples)"),
        (40, False, 0.01, "differs (holds in 1% of resamples)"),
        (40, True, 0.7, "unclear (holds in 70% of resamples)"),
        (40, True, None, "agrees (point estimate: no per-problem values to resample)"),
        (40, None, None, "not measurable (no data for it here)"),
    ],
)
def test_verdict_thresholds(n, observed, share, expected):
    assert str(verdict(n, observed, share)) == expected


def _extraction_case(tmp_path, attn_hits: np.ndarray) -> str:
    """An extraction result on len(attn_hits) problems, 2 steps, 4 layers: MHSA hits in the
    upper layers where `attn_hits` says, MLP never, the layer output never."""
    n = len(attn_hits)
    hits = torch.zeros(n, 2, 4, 3, dtype=torch.uint8)
    hits[:, :, 2:, 0] = torch.tensor(attn_hits, dtype=torch.uint8)[:, None, None]
    valid = torch.ones(n, 2, dtype=torch.uint8)
    save_file({"hits": hits, "valid": valid}, str(per_example_path(tmp_path, "extraction")))
    rates = hits.double().mean(0)  # [steps, layers, components]
    raw = {
        "components": ["attn_out", "mlp_out", "resid_post"],
        "projection": "E·h",
        "mean": rates.mean(0).tolist(),
        "std": rates.std(0, correction=0).tolist(),
    }
    result = {"raw": raw, "logit_lens": {**raw, "projection": "lens"}, "n_examples": n}
    return markdown([extraction_section(result, tmp_path)], tmp_path)


def test_a_clear_effect_agrees_and_a_rare_one_is_unclear(tmp_path):
    clear = _extraction_case(tmp_path, np.ones(MIN_PROBLEMS + 10))
    assert "agrees (100% of resamples)" in clear
    # one problem of 40 carries the whole difference: a resample often drops it
    rare = _extraction_case(tmp_path, np.eye(1, MIN_PROBLEMS + 10)[0])
    assert "unclear (holds in" in rare


def test_masking_verdicts_follow_the_per_problem_impacts(tmp_path):
    n = 40
    impact = torch.full((n, 4, 3), float("nan"))
    for t in range(1, 4):  # step t+1 sees history steps 1..t; the previous step helps most
        impact[:, t, :t] = 0.0
        impact[:, t, t - 1] = 0.5
    save_file({"impact": impact}, str(per_example_path(tmp_path, "masking")))
    result = {"impact": impact.nanmean(0).tolist(), "n_examples": n}
    text = markdown([masking_section(result, tmp_path)], tmp_path)
    # step 4 (a stack) depends on step 3, its own pick-up: agrees; step 3 (a pick-up) on step 2,
    # not on step 1 as the paper says: differs, in every resample
    assert "step 4: step 3" in text and "agrees (100% of resamples)" in text
    assert "step 3: step 2" in text and "differs (holds in 0% of resamples)" in text


@pytest.mark.parametrize(("init_at_stacks", "expected"), [(0.1, "agrees"), (2.0, "differs")])
def test_flow_verdicts_follow_the_per_problem_flows(tmp_path, init_at_stacks, expected):
    from reasonlens.analyses.flow import step_normalized
    from reasonlens.studies.planning.report_analyses import flow_section

    chunks = ["init state", "goal state", "history 1", "history 2", "history 3", "history 4"]
    n, steps, layers = 40, 6, 3
    flow = np.full((n, steps, len(chunks), layers), 0.5)
    flow[:, 0, 0] = 1.0  # the init state at step 1
    flow[:, 1::2, 0] = init_at_stacks  # ... and at the stack steps 2, 4, 6
    flow[:, 4, 4:] = 0.9  # at step 5, recent history (3, 4) above old (1, 2)
    flow[:, 4, 2:4] = 0.2
    flow += np.random.default_rng(0).uniform(0, 0.01, size=flow.shape)  # problems differ a bit
    save_file(
        {"flow": torch.tensor(flow, dtype=torch.float32)},
        str(per_example_path(tmp_path, "flow")),
    )
    result = {
        "chunks": chunks,
        "normalized": step_normalized(torch.tensor(flow.mean(0))).tolist(),
        "n_examples": n,
    }
    lines = markdown([flow_section(result, tmp_path)], tmp_path).splitlines()
    init_row = next(line for line in lines if line.startswith("| the init state"))
    assert init_row.split(" | ")[-1].startswith(expected), init_row
    recent_row = next(line for line in lines if line.startswith("| at step 5"))
    assert "agrees (100% of resamples)" in recent_row


def _mean_positive(data, w):
    """Claim: the weighted mean of `x` is positive; degenerate when every value is 0."""
    x = data["x"]
    if not np.any(x):
        return {"positive": Degenerate("every value is 0")}
    return {"positive": bool((x * w).sum() / w.sum() > 0)}


@pytest.mark.parametrize(
    ("control_mean", "expected"),
    [
        (-1.0, "agrees (100% of resamples; the untrained model 0%)"),
        (1.0, "holds for the control too (the untrained model: 100% of resamples)"),
        (0.0, "unclear (the untrained model holds in"),
    ],
)
def test_a_claim_agrees_only_when_its_control_fails_it(control_mean, expected):
    n = 60
    rng = np.random.default_rng(1)
    fine_tuned = {"x": 1.0 + rng.normal(0, 0.1, n)}
    control_data = {"x": control_mean + rng.normal(0, 1.0 if control_mean == 0 else 0.1, n)}
    ones = np.ones(n)
    said = verdicts(
        n,
        _mean_positive(fine_tuned, ones),
        fine_tuned,
        _mean_positive,
        control=Control(_mean_positive(control_data, ones), control_data),
    )
    assert str(said["positive"]).startswith(expected), said


def test_a_degenerate_measurement_is_not_a_verdict():
    n = 40
    data = {"x": np.zeros(n)}
    said = verdicts(n, _mean_positive(data, np.ones(n)), data, _mean_positive)
    assert {k: str(v) for k, v in said.items()} == {"positive": "not measurable (every value is 0)"}


def test_claims_outside_learned_ignore_the_control():
    n = 40
    data = {"x": np.ones(n)}
    control = Control({"positive": True}, data)
    said = verdicts(
        n, {"positive": True}, data, _mean_positive, control=control, learned=frozenset()
    )
    assert str(said["positive"]) == "agrees (100% of resamples)"


def test_the_report_says_how_many_claims_were_tested():
    assert multiplicity(9).startswith("9 claims are tested") and "0.5 of them" in multiplicity(9)


def _planted_flow(n: int, seed: int, recent: bool = True) -> np.ndarray:
    """Per-problem flows [n, 6 steps, 6 chunks, 3 layers] where, at step 5, recent history
    (3, 4) outweighs old history (1, 2) in every problem (or the reverse)."""
    flow = np.full((n, 6, 6, 3), 0.5)
    flow[:, 4, 4:] = 0.9 if recent else 0.2
    flow[:, 4, 2:4] = 0.2 if recent else 0.9
    return flow + np.random.default_rng(seed).uniform(0, 0.01, size=flow.shape)


@pytest.mark.parametrize(
    ("control_recent", "expected"),
    [(True, "holds for the control too"), (False, "agrees (100% of resamples")],
)
def test_a_flow_claim_the_base_model_also_meets_is_not_evidence(tmp_path, control_recent, expected):
    """Recency is what an untrained model shows too: the same planted pattern on the control
    must not read 'agrees'; a pattern only the fine-tuned model has still does."""
    from reasonlens.analyses.flow import step_normalized
    from reasonlens.studies.planning.files import CONTROL
    from reasonlens.studies.planning.report_analyses import flow_section

    chunks = ["init state", "goal state", "history 1", "history 2", "history 3", "history 4"]
    n = 40
    records = {}
    for where, recent, seed in ((tmp_path, True, 0), (tmp_path / CONTROL, control_recent, 1)):
        flow = _planted_flow(n, seed, recent)
        where.mkdir(exist_ok=True)
        save_file(
            {"flow": torch.tensor(flow, dtype=torch.float32)},
            str(per_example_path(where, "flow")),
        )
        normalized = step_normalized(torch.tensor(flow.mean(0))).tolist()
        records[where] = {"chunks": chunks, "normalized": normalized, "n_examples": n}
    section = flow_section(records[tmp_path], tmp_path, records[tmp_path / CONTROL])
    lines = markdown([section], tmp_path).splitlines()
    recent_row = next(line for line in lines if line.startswith("| at step 5"))
    assert recent_row.split(" | ")[-1].startswith(expected), recent_row


def test_a_degenerate_raw_projection_is_named_and_the_lens_judged(tmp_path):
    """The raw projection never extracts at the last layer while the logit lens always does
    (an outlier dimension): the report says so, names the dimension, and judges the claims
    on the lens's per-problem events."""
    n = 40
    raw_hits = torch.zeros(n, 2, 4, 3, dtype=torch.uint8)
    lens_hits = torch.zeros(n, 2, 4, 3, dtype=torch.uint8)
    lens_hits[:, :, 2:, 0] = 1  # MHSA in the upper layers
    lens_hits[:, :, 2:, 2] = 1  # the layer output settles at layer 2 of 4
    valid = torch.ones(n, 2, dtype=torch.uint8)
    save_file(
        {"hits": raw_hits, "valid": valid, "lens_hits": lens_hits},
        str(per_example_path(tmp_path, "extraction")),
    )

    def summary(hits, projection):
        rates = hits.double().mean(0)
        return {
            "components": ["attn_out", "mlp_out", "resid_post"],
            "projection": projection,
            "mean": rates.mean(0).tolist(),
            "std": rates.std(0, correction=0).tolist(),
            "outlier_dims": [{"dim": 7, "ratio_to_median": 250.0, "gain": -1.26}],
        }

    result = {
        "raw": summary(raw_hits, "raw"),
        "logit_lens": summary(lens_hits, "E·final_norm(h) (logit lens)"),
        "n_examples": n,
    }
    text = markdown([extraction_section(result, tmp_path)], tmp_path)
    assert "The raw projection is degenerate on this model" in text
    assert "dimension 7 (mean |h| 250.0x the median, final-norm gain -1.26)" in text
    assert "Judged on: E·final_norm(h) (logit lens)" in text
    mhsa = next(line for line in text.splitlines() if line.startswith("| MHSA extracts"))
    assert mhsa.endswith("| agrees (100% of resamples) |")


def _probe_case(tmp_path, control_reads_it: bool) -> str:
    """40 problems, state probes at two positions and 2 heads: perfect at the middle layer,
    wrong at layer 0; the shuffled control is wrong too (or, as a check, perfect)."""
    from reasonlens.studies.planning.report_analyses import probes_section

    n, positions, heads = 40, ["s2-act", "s2-col"], 2
    rng = np.random.default_rng(0)
    target = torch.tensor(rng.integers(0, 3, size=(len(positions), heads, n)))
    good = target[:, None].expand(-1, 2, -1, -1).clone()  # [S, layers, H, N]
    good[:, 0] = (target + 1) % 3  # layer 0 wrong everywhere
    control = good.clone() if control_reads_it else (good + 1) % 3
    save_file(
        {
            "state_linear": good,
            "state_mlp": good.clone(),
            "state_control": control,
            "state_target": target,
        },
        str(per_example_path(tmp_path, "probes")),
    )
    summary = {
        name: {
            "value": [0.0, 1.0],
            "low": [0.0, 1.0],
            "high": [0.0, 1.0],
            "baseline": [0.3, 0.3],
            "control": [0.0, 0.0],
        }
        for name in positions
    }
    result = {
        "layers": [0, 4],
        "positions": positions,
        "n_examples": n,
        "n_train": 32,
        "n_test": n,
        "cross_fit_folds": 5,
        "palette": ["red"],  # 3 classes: red, sky, table
        "representation": "resid_post",
        "state_linear": {"metric": "weighted_f1", "positions": summary},
        "state_mlp": {"metric": "weighted_f1", "positions": summary},
    }
    return markdown([probes_section(result, tmp_path)], tmp_path)


@pytest.mark.parametrize(
    ("control_reads_it", "expected"),
    [
        (False, "agrees (100% of resamples; shuffled labels 0%)"),
        (True, "holds for the control too (shuffled labels"),
    ],
)
def test_probe_depth_is_judged_on_resampled_problems_against_shuffled_labels(
    tmp_path, control_reads_it, expected
):
    text = _probe_case(tmp_path, control_reads_it)
    rises = next(line for line in text.splitlines() if line.startswith("| accuracy rises"))
    assert rises.split(" | ")[-1].startswith(expected), rises
    similar = next(line for line in text.splitlines() if line.startswith("| linear ≈"))
    assert similar.endswith("| agrees (100% of resamples) |"), similar
