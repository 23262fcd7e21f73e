"""The paper's analyses on files in the original release's layout: a small release of this
project's own (``conftest.write_release``, the ``paper_release`` fixture) with the release's file
names, columns, quoting and number formats (jbejjani2022/self-interpretability,
``data/original_paper/``; specs/studies.md A5) and a planted preference, so that every expected
figure is known by construction or computed here without reasonlens (csv + numpy).

On the real release, ``reasonlens preferences analyse`` gave: L2 recovery r = 0.844 (4o) / 0.871
(mini), within 0.01 of the paper's 0.843 / 0.871 (the release's own brms estimates); agreement
with the target choice 82.56% / 82.82% with 50.1% / 50.8% "A" (targets 49.6% / 50.3%) over
5000 trials and no invalid reply; self-report r against the learned weights 0.543 / 0.506,
whether the learned weights are the release's or ours; base models' reports 0.10 / -0.01;
28 of 100 scenarios completely separable per model (an unregularised fit keeps 72); on the
native scenarios 101-200 our L2 weights match the release's (r > 0.999). No test reads the
release itself.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import numpy as np
import pytest

from reasonlens.studies.preferences.weights import (
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

MODELS = ("gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18")

_A = ",".join(f"A_attribute_{i}" for i in range(1, 6))
_B = ",".join(f"B_attribute_{i}" for i in range(1, 6))
#: The release's header lines, per file (per-model files by the kind after the model prefix).
HEADERS = {
    "scenarios.csv": "scenario,question,attr1,attr2,attr3,attr4,attr5,"
    "attr1_min,attr2_min,attr3_min,attr4_min,attr5_min,"
    "attr1_max,attr2_max,attr3_max,attr4_max,attr5_max",
    "instilled_weights.csv": "scenario,attr1,attr2,attr3,attr4,attr5",
    "instilled_selections": f"model,scenario,selection,{_A},{_B}",
    "instilled_latent_selections": f"model,scenario,selection,{_A},{_B}",
    "regression_results": "scenario,b_attr1,b_attr2,b_attr3,b_attr4,b_attr5",
    "latent_regression_results": "scenario,b_attr1,b_attr2,b_attr3,b_attr4,b_attr5",
    "instilled_weight_reports": "explaining_model,version,scenario,"
    f"report_attr1,report_attr2,report_attr3,report_attr4,report_attr5,{_A},{_B}",
    "weight_reports": "explaining_model,version,scenario,"
    f"report_attr1,report_attr2,report_attr3,report_attr4,report_attr5,{_A},{_B}",
}


def _rows(path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _vector(row: dict[str, str], prefix: str) -> np.ndarray:
    return np.array([float(row[f"{prefix}{i}"]) for i in range(1, 6)])


def _weights(path, prefix: str) -> dict[str, np.ndarray]:
    return {row["scenario"]: _vector(row, prefix) for row in _rows(path)}


def _r(x: dict, y: dict) -> float:
    """Pearson r over the pooled (scenario, attribute) pairs of the scenarios in both."""
    names = [n for n in x if n in y]
    a = np.concatenate([np.asarray(x[n], dtype=float) for n in names])
    b = np.concatenate([np.asarray(y[n], dtype=float) for n in names])
    return float(np.corrcoef(a, b)[0, 1])


def _mean_reports(path) -> dict[str, np.ndarray]:
    by_scenario = defaultdict(list)
    for row in _rows(path):
        by_scenario[row["scenario"]].append(_vector(row, "report_attr"))
    return {n: np.mean(v, axis=0) for n, v in by_scenario.items()}


@pytest.fixture(scope="module", params=MODELS)
def model_results(request, paper_release):
    model, d = request.param, paper_release.dir
    inputs = load_inputs(
        d / "scenarios.csv",
        d / "instilled_weights.csv",
        release_file(d, model, "instilled_selections"),
        reports=[release_file(d, model, "instilled_weight_reports")],
        units=d / "candidate_scenarios.json",
        learned=release_file(d, model, "regression_results"),
    )
    return model, inputs, analyse_preferences(inputs, "l2", n_boot=200)


def test_files_are_in_the_release_layout(paper_release):
    d = paper_release.dir
    assert release_file(d, MODELS[0], "regression_results").name == (
        "gpt-4o-2024-08-06_regression_results.csv"
    )
    for kind, header in HEADERS.items():
        paths = [d / kind] if kind.endswith(".csv") else [release_file(d, m, kind) for m in MODELS]
        for path in paths:
            data = path.read_bytes()
            assert data.decode("utf-8").split("\n", 1)[0] == header, path.name
            assert b"\r" not in data and data.endswith(b"\n"), path.name
    text = (d / "scenarios.csv").read_text(encoding="utf-8")
    assert ',"Imagine you are Ada ""the Countess"" Lovelace. Which thing 0' in text
    assert "Imagine you are Antonín Novák. " in text
    # as in the release: the learned weights are integers sorted by scenario name; options are
    # printed as floats; the candidates outnumber the scenarios
    learned = _rows(release_file(d, MODELS[0], "regression_results"))
    assert [r["scenario"] for r in learned] == sorted(r["scenario"] for r in learned)
    assert all(v.lstrip("-").isdigit() for r in learned for k, v in r.items() if k != "scenario")
    decisions = _rows(release_file(d, MODELS[0], "instilled_selections"))
    assert all("." in r["A_attribute_1"] for r in decisions)
    assert {r["model"] for r in decisions} == {paper_release.model_ids[MODELS[0]]}
    assert len(_rows(d / "scenarios.csv")) == len(paper_release.scenarios) == 24
    candidates = json.loads((d / "candidate_scenarios.json").read_text(encoding="utf-8"))
    assert len(candidates) == 26 and candidates[0]["attributes"][0]["range"] == [0, 70]


def test_recovery_and_choices(model_results, paper_release):
    model, inputs, analysis = model_results
    d, targets = paper_release.dir, paper_release.targets
    results = analysis.to_dict()
    instilled = paper_release.instilled
    assert results["n_scenarios"] == len(instilled) == 16 and results["excluded"] == {}
    # the planted weights come back
    assert results["r_learned_target"] > 0.9
    # ...exactly as an independent fit of the same objective (scipy BFGS) finds them
    reference = paper_release.reference[model]
    assert results["r_learned_target"] == pytest.approx(_r(reference, targets), abs=1e-6)
    for name in instilled:
        assert analysis.learned[name] == pytest.approx(reference[name], abs=1e-4)
    # the release's file holds those estimates rounded: r within 0.01, each weight within 0.5
    path = release_file(d, model, "regression_results")
    released = _weights(path, "b_attr")
    given = pooled_correlation(inputs.learned, inputs.targets, n_boot=0).r
    assert given == pytest.approx(_r(released, targets), abs=1e-12)
    assert abs(given - results["r_learned_target"]) < 0.01
    for name, values in released.items():
        assert np.max(np.abs(np.subtract(analysis.learned[name], values))) <= 0.5 + 1e-4
    # agreement and shares of "A": counted directly from the files
    span = {}
    for row in _rows(d / "scenarios.csv"):
        low = np.array([float(row[f"attr{i}_min"]) for i in range(1, 6)])
        high = np.array([float(row[f"attr{i}_max"]) for i in range(1, 6)])
        span[row["scenario"]] = (low, high - low)
    target_w = _weights(d / "instilled_weights.csv", "attr")
    rows = _rows(release_file(d, model, "instilled_selections"))
    agree = n_a = target_a = 0
    for row in rows:
        low, width = span[row["scenario"]]
        w = target_w[row["scenario"]]
        u_a = w @ ((_vector(row, "A_attribute_") - low) / width)
        u_b = w @ ((_vector(row, "B_attribute_") - low) / width)
        target = "A" if u_a > u_b else "B"
        agree += row["selection"] == target
        n_a += row["selection"] == "A"
        target_a += target == "A"
    assert results["n_trials"] == len(rows) == 16 * 50 and results["n_invalid"] == 0
    assert results["agreement"] == agree / len(rows)
    assert results["share_a"] == n_a / len(rows)
    assert results["target_share_a"] == target_a / len(rows)
    assert 0.75 < results["agreement"] < 0.95  # noisy choices, like the paper's 83%
    # the planted target-choice scenarios, and only they, are completely separable
    assert results["separable"] == dict.fromkeys(paper_release.separable[model], "complete")


def test_self_report(model_results, paper_release):
    model, _, analysis = model_results
    d = paper_release.dir
    label = f"{model}_instilled_weight_reports"
    path = release_file(d, model, "instilled_weight_reports")
    mean = _mean_reports(path)
    released = _weights(release_file(d, model, "regression_results"), "b_attr")
    result = analysis.self_reports[label]
    assert result.n_reports == len(_rows(path)) and result.n_bad is None
    assert set(result.mean) == set(mean)  # scenarios with no parseable report are absent
    assert len(mean) == {MODELS[0]: 16, MODELS[1]: 12}[model]
    ours = result.vs_learned.r
    theirs = analysis.reports_vs_given[label].r
    assert theirs == pytest.approx(_r(mean, released), abs=1e-12)
    assert ours == pytest.approx(_r(mean, analysis.learned), abs=1e-12)
    assert ours > 0.8 and abs(ours - theirs) < 0.01  # reports = planted weights + N(0, 30)
    assert analysis.to_dict()["r_report_learned"] == ours


def test_unregularised_excludes_the_separable_scenarios(paper_release, model_results):
    model, inputs, analysis = model_results
    decisions = read_decisions(
        release_file(paper_release.dir, model, "instilled_selections"), inputs.scenarios
    )
    assert decisions == inputs.decisions
    recovery = recover_weights(inputs.scenarios, decisions, "unregularised")
    assert set(recovery.excluded) == set(analysis.recovery.separable)
    assert set(recovery.excluded) == paper_release.separable[model]
    assert all("complete separation" in why for why in recovery.excluded.values())
    assert len(recovery.learned) == 16 - len(paper_release.separable[model])


@pytest.mark.parametrize("model", MODELS)
def test_base_model_reports_and_native_preferences(paper_release, model):
    """Base models' reports are drawn apart from every weight (r near 0); on the native
    scenarios our L2 weights match the file's independent estimates (r > 0.999) and the
    planted native weights."""
    d = paper_release.dir
    inputs = load_inputs(
        d / "scenarios.csv",
        d / "instilled_weights.csv",
        release_file(d, model, "instilled_selections"),
        units=d / "candidate_scenarios.json",
    )
    path = release_file(d, model, "regression_results")
    learned = read_regression_results(path, inputs.scenarios)
    assert learned == {n: tuple(v) for n, v in _weights(path, "b_attr").items()}
    base_path = release_file(d, model, "weight_reports")
    base = read_reports(base_path, inputs.scenarios)
    assert {r.model for r in base} == {model} and {r.version for r in base} == {"instilled_100"}
    r = self_report(base, learned, n_boot=0).vs_learned.r
    assert r == pytest.approx(_r(_mean_reports(base_path), learned), abs=1e-12)
    assert abs(r) < 0.3
    names = list(inputs.scenarios)
    native = read_decisions(release_file(d, model, "instilled_latent_selections"), inputs.scenarios)
    assert {x.scenario for x in native} == set(names[16:22]) == set(paper_release.native)
    assert len(native) == 6 * 100
    recovery = recover_weights(inputs.scenarios, native, "l2")
    theirs = read_regression_results(
        release_file(d, model, "latent_regression_results"), inputs.scenarios
    )
    assert set(theirs) == set(names[16:22]) and recovery.excluded == {}
    assert pooled_correlation(recovery.learned, theirs, n_boot=0).r > 0.999
    assert pooled_correlation(recovery.learned, paper_release.native_weights, n_boot=0).r > 0.95
