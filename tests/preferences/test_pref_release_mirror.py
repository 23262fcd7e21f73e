"""The paper's figures, recomputed from the original release's files (a bare git mirror of
jbejjani2022/self-interpretability, read with `git show`; skipped where it is absent).

Expected (specs/studies.md A5): L2 recovery r = 0.844 (4o) / 0.871 (mini), within 0.01 of the
paper's 0.843 / 0.871; agreement 82.56% / 82.82% with 50.1% / 50.8% "A" (targets 49.6% /
50.3%); self-report r against the learned weights 0.543 / 0.506, whether the learned weights
are the release's (brms) or ours (L2); 28 of 100 scenarios completely separable per model.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reasonlens.analyses.preferences import (
    analyse_preferences,
    load_inputs,
    pooled_correlation,
    recover_weights,
    self_report,
)
from reasonlens.tasks.preferences import (
    read_decisions,
    read_regression_results,
    read_reports,
    release_file,
)

MIRROR = Path("/work/.mirror/jbejjani2022+self-interpretability/repo")
PAPER = "data/original_paper"

EXPECTED = {
    # model: (r recovered, paper's r, agreement, share A, target share A, report r)
    "gpt-4o-2024-08-06": (0.844, 0.843, 0.8256, 0.501, 0.496, 0.543),
    "gpt-4o-mini-2024-07-18": (0.871, 0.871, 0.8282, 0.508, 0.503, 0.506),
}

pytestmark = pytest.mark.skipif(
    not MIRROR.is_dir() or shutil.which("git") is None,
    reason=f"the release's mirror ({MIRROR}) is not on this machine",
)


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory) -> Path:
    """The release's files needed here, copied out of the bare mirror."""
    out = tmp_path_factory.mktemp("release")
    names = {"data/candidate_scenarios.json": "candidate_scenarios.json"}
    names |= {f"{PAPER}/{n}": n for n in ("scenarios.csv", "instilled_weights.csv")}
    for model in EXPECTED:
        for kind in (
            "instilled_selections",
            "regression_results",
            "instilled_weight_reports",
            "weight_reports",
            "instilled_latent_selections",
            "latent_regression_results",
        ):
            name = release_file("", model, kind).name
            names[f"{PAPER}/{name}"] = name
    for source, name in names.items():
        show = ["git", "-C", str(MIRROR), "show", f"HEAD:{source}"]
        data = subprocess.run(show, capture_output=True, check=True).stdout
        (out / name).write_bytes(data)
    return out


@pytest.fixture(scope="module", params=list(EXPECTED))
def model_results(request, release_dir):
    model = request.param
    d = release_dir
    inputs = load_inputs(
        d / "scenarios.csv",
        d / "instilled_weights.csv",
        release_file(d, model, "instilled_selections"),
        reports=[release_file(d, model, "instilled_weight_reports")],
        units=d / "candidate_scenarios.json",
        learned=release_file(d, model, "regression_results"),
    )
    return model, inputs, analyse_preferences(inputs, "l2", n_boot=200)


def test_recovery_and_choices(model_results):
    model, inputs, analysis = model_results
    r, paper, agreement, share_a, target_a, _ = EXPECTED[model]
    results = analysis.to_dict()
    assert results["n_scenarios"] == 100 and results["excluded"] == {}
    assert results["r_learned_target"] == pytest.approx(r, abs=0.0005)
    assert abs(results["r_learned_target"] - paper) < 0.01
    # the release's own (brms, rounded) estimates give the paper's r
    released = pooled_correlation(inputs.learned, inputs.targets, n_boot=0).r
    assert released == pytest.approx(paper, abs=0.0005)
    assert results["agreement"] == pytest.approx(agreement, abs=0.002)
    assert results["share_a"] == pytest.approx(share_a, abs=0.0005)
    assert results["target_share_a"] == pytest.approx(target_a, abs=0.0005)
    assert results["n_invalid"] == 0 and results["n_trials"] == 5000
    assert len(results["separable"]) == 28
    assert set(results["separable"].values()) == {"complete"}


def test_self_report(model_results):
    model, _, analysis = model_results
    expected = EXPECTED[model][5]
    label = f"{model}_instilled_weight_reports"
    ours = analysis.self_reports[label].vs_learned.r
    theirs = analysis.reports_vs_given[label].r
    assert abs(theirs - expected) < 0.02  # against the released learned weights (the spec's)
    assert abs(ours - expected) < 0.02  # against our own L2 weights
    assert analysis.to_dict()["r_report_learned"] == ours


def test_unregularised_excludes_the_separable_scenarios(release_dir, model_results):
    model, inputs, analysis = model_results
    decisions = read_decisions(
        release_file(release_dir, model, "instilled_selections"), inputs.scenarios
    )
    recovery = recover_weights(inputs.scenarios, decisions, "unregularised")
    assert set(recovery.excluded) == set(analysis.recovery.separable)
    assert len(recovery.learned) == 72


@pytest.mark.parametrize("model", list(EXPECTED))
def test_base_model_reports_and_native_preferences(release_dir, model):
    """Base models' reports barely track the learned weights (0.10 / -0.01); on the native
    scenarios 101-200 our L2 weights match the release's brms ones (r > 0.999)."""
    inputs = load_inputs(
        release_dir / "scenarios.csv",
        release_dir / "instilled_weights.csv",
        release_file(release_dir, model, "instilled_selections"),
        units=release_dir / "candidate_scenarios.json",
    )
    learned = read_regression_results(
        release_file(release_dir, model, "regression_results"), inputs.scenarios
    )
    base = read_reports(release_file(release_dir, model, "weight_reports"), inputs.scenarios)
    r = self_report(base, learned, n_boot=0).vs_learned.r
    assert r == pytest.approx(
        {"gpt-4o-2024-08-06": 0.10, "gpt-4o-mini-2024-07-18": -0.01}[model], abs=0.01
    )
    names = list(inputs.scenarios)
    native = read_decisions(
        release_file(release_dir, model, "instilled_latent_selections"), inputs.scenarios
    )
    assert {d.scenario for d in native} == set(names[100:200])
    recovery = recover_weights(inputs.scenarios, native, "l2")
    theirs = read_regression_results(
        release_file(release_dir, model, "latent_regression_results"), inputs.scenarios
    )
    assert set(theirs) == set(names[100:200]) and recovery.excluded == {}
    assert pooled_correlation(recovery.learned, theirs, n_boot=0).r > 0.999
