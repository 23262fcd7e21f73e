"""`reasonlens preferences analyse` on small synthetic files: the run's files, bad input (one
line, exit 2, nothing written), and re-running into the same --out."""

from __future__ import annotations

import json

import pytest

from reasonlens.tasks.preferences import write_decisions
from reasonlens.testing import run_cli


def _args(paths, out, *more):
    return [
        "preferences",
        "analyse",
        "--scenarios",
        paths["scenarios"],
        "--units",
        paths["units"],
        "--targets",
        paths["targets"],
        "--decisions",
        paths["decisions"],
        "--out",
        out,
        "--n-boot",
        "50",
        *more,
    ]


def test_analyse_writes_results(release, capsys):
    paths, out = release["paths"], release["dir"] / "run"
    code, stdout, err = run_cli(_args(paths, out, "--reports", paths["reports"]), capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    for key in ("r_learned_target", "agreement", "share_a", "n_scenarios", "r_report_learned"):
        assert key in results
    assert results["r_learned_target"] > 0.9
    assert results["n_scenarios"] == 12 and results["n_scenarios_excluded"] == 0
    assert 0.6 < results["agreement"] <= 1 and 0 < results["share_a"] < 1
    assert results["recovery"]["ci_low"] < results["r_learned_target"]
    assert len(results["per_attribute"]) == 5
    assert results["r_report_learned"] > 0.5  # reports are the targets plus noise
    report = results["self_report"]["sim_instilled_weight_reports"]
    assert report["r_report_target"] > results["r_report_learned"]
    lines = (out / "learned_weights.csv").read_text().splitlines()
    assert lines[0] == "scenario,b_attr1,b_attr2,b_attr3,b_attr4,b_attr5" and len(lines) == 13
    for name in ("learned_vs_target.png", "summary.md", "fits.csv", "inputs.json"):
        assert (out / name).is_file()
    assert (out / "report_vs_learned_sim_instilled_weight_reports.png").is_file()
    assert "r(learned, target)" in stdout
    # the same command again reopens the same run
    code, _, err = run_cli(_args(paths, out, "--reports", paths["reports"]), capsys)
    assert code == 0, err


def test_unregularised_lists_excluded_scenarios(release, synth, capsys):
    paths = dict(release["paths"])
    scenarios = release["scenarios"]
    exact = synth.simulate(scenarios[:3], release["weights"], n_trials=40, deterministic=True)
    rest = [d for d in release["decisions"] if d.scenario not in {"thing_0", "thing_1", "thing_2"}]
    paths["decisions"] = write_decisions(release["dir"] / "mixed.csv", exact + rest)
    out = release["dir"] / "unreg"
    code, _, err = run_cli(_args(paths, out, "--regression", "unregularised"), capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["n_scenarios"] == 9 and results["n_scenarios_excluded"] == 3
    assert set(results["excluded"]) == {"thing_0", "thing_1", "thing_2"}
    assert all("separation" in why for why in results["excluded"].values())
    assert "thing_0" in (out / "summary.md").read_text()


def _break(paths, key, old, new):
    path = paths[key]
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    ("key", "old", "new", "words"),
    [
        ("targets", "thing_5,", "thing_55,", ["instilled_weights.csv row 6", "'thing_55'"]),
        ("decisions", "sim,thing_0,", "sim,nothing,", ["selections.csv row 1", "'nothing'"]),
        ("decisions", "B_attribute_3", "B3", ["selections.csv", "missing column B_attribute_3"]),
        ("reports", "report_attr2", "r2", ["weight_reports.csv", "report_attr2"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(release, capsys, key, old, new, words):
    paths, out = release["paths"], release["dir"] / "bad"
    _break(paths, key, old, new)
    code, _, err = run_cli(_args(paths, out, "--reports", paths["reports"]), capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not out.exists()


def test_files_saved_with_a_byte_order_mark_read_as_without(release, capsys):
    """A spreadsheet saves "UTF-8 CSV" with a byte-order mark in front: the first column is
    still "scenario" (not "\\ufeffscenario", "missing column scenario"), JSON still parses."""
    paths, out = release["paths"], release["dir"] / "plain"
    assert run_cli(_args(paths, out, "--reports", paths["reports"]), capsys)[0] == 0
    for key in ("scenarios", "units", "targets", "decisions", "reports"):
        paths[key].write_bytes(b"\xef\xbb\xbf" + paths[key].read_bytes())
    marked = release["dir"] / "marked"
    code, _, err = run_cli(_args(paths, marked, "--reports", paths["reports"]), capsys)
    assert code == 0, err
    for name in ("learned_weights.csv", "fits.csv"):
        assert (marked / name).read_text() == (out / name).read_text()


def test_decisions_without_targets_are_refused(release, synth, capsys):
    paths, out = release["paths"], release["dir"] / "bad"
    weights = dict(list(release["weights"].items())[:-1])
    paths["targets"] = synth.write_weights_csv(release["dir"] / "fewer.csv", weights)
    code, _, err = run_cli(_args(paths, out), capsys)
    assert code == 2 and "has no target weights in" in err and "'thing_11'" in err
    assert not out.exists()


def test_bad_regression_and_stray_argument(release, capsys):
    paths, out = release["paths"], release["dir"] / "bad"
    code, _, err = run_cli(_args(paths, out, "--regression", "bayes"), capsys)
    assert code == 2 and "unknown regression 'bayes'" in err
    code, _, err = run_cli(_args(paths, out, "stray.csv"), capsys)
    assert code == 2 and "unexpected argument" in err
    assert not out.exists()


def test_changed_inputs_and_other_runs_are_refused(release, capsys):
    paths, out = release["paths"], release["dir"] / "run"
    assert run_cli(_args(paths, out), capsys)[0] == 0
    code, _, err = run_cli(_args(paths, out, "--seed", "1"), capsys)
    assert code == 2 and "differs in: seed" in err
    lines = paths["targets"].read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",0.5"
    paths["targets"].write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(_args(paths, out), capsys)
    assert code == 2 and "instilled_weights.csv changed" in err
    code, _, err = run_cli(_args(paths, out, "--overwrite"), capsys)
    assert code == 0, err
    stranger = release["dir"] / "theirs"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    code, _, err = run_cli(_args(paths, stranger, "--overwrite"), capsys)
    assert code == 2 and (stranger / "notes.txt").read_text() == "mine"


def test_analyse_needs_no_torch(release):
    """The analysis loads no model: a fresh interpreter running it never imports torch."""
    import os
    import subprocess
    import sys

    out = release["dir"] / "fresh"
    heavy = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
    child = (
        "import json, sys\n"
        "from reasonlens.cli import main\n"
        "try:\n    main(json.loads(sys.argv[1]))\nexcept SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    argv = [str(a) for a in _args(release["paths"], out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", child, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert (out / "results.json").is_file()


def test_a_preset_with_fewer_scenarios_than_a_ci_needs_is_refused(
    tiny_dir, tmp_path, monkeypatch, capsys
):
    """One line naming the minimum, exit 2, nothing written; a smoke preset may have fewer."""
    from reasonlens.studies.preferences import presets

    few = presets.replace(presets.PRESETS["quick"], name="few", n_instilled=3)
    monkeypatch.setitem(presets.PRESETS, "few", few)
    out = tmp_path / "run"
    code, _, err = run_cli(
        ["study", "preferences", "--preset", "few", "-m", tiny_dir, "-o", out], capsys
    )
    assert code == 2 and not out.exists()
    assert err.strip().count("\n") == 0
    assert "preset 'few' instils 3 scenarios" in err and "needs at least 5" in err
    from reasonlens.studies.base import Settings
    from reasonlens.studies.preferences.checks import check_settings

    monkeypatch.setitem(presets.PRESETS, "few", presets.replace(few, smoke=True))
    check_settings(Settings(preset="few", model=tiny_dir, progress=False))  # no error


def test_every_shipped_preset_has_the_scenarios_a_ci_needs():
    from reasonlens.studies.preferences.presets import MIN_CI_SCENARIOS, PRESETS

    for p in PRESETS.values():
        assert p.n_instilled >= MIN_CI_SCENARIOS and not p.smoke, p.name
