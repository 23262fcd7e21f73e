"""`reasonlens study backtracking` on a tiny random model (a tiny preset patched in): generated
chains (the model's sampling replaced by the gold traces, which a random model cannot write),
a user's chains through the CLI, and bad input refused before anything is written. The verdict
rule and its known answers: `test_backtracking_verdicts.py`."""

from __future__ import annotations

import json

import pytest
from tiny_backtracking import LAGS, TINY, annotated, file_run

from reasonlens.studies import render_report
from reasonlens.studies.backtracking import presets
from reasonlens.studies.backtracking.presets import probed_layers
from reasonlens.testing import run_cli

WORDS = ("beyond the text", "beyond the text, untrained model too", "lexical", "no signal")


def test_generated_chains_are_labelled_probed_and_reported(backtracking_study):
    out, results = backtracking_study
    assert results == json.loads((out / "results.json").read_text())
    for name in (
        "report.md",
        "report.html",
        "summary.md",
        "chains/labels.jsonl",
        "chains/checks.jsonl",
        "analysis/analysis.json",
        "analysis/auc_vs_lag.png",
        "analysis/auc_by_lag_layer.csv",
        "analysis/probes.safetensors",
        "analysis/onset_auc_vs_lag.png",
        "analysis/onset_auc_by_lag_layer.csv",
        "analysis/onset_probes.safetensors",
        "activations/random/meta.json",
    ):
        assert (out / name).is_file(), name
    c = results["chains"]
    assert c["chains"] == 30 and c["unlabelable"] == 1 and c["too_short"] == 1
    assert c["used"] == 28 and 0 < c["positive_rate"] < 1
    rows = [json.loads(line) for line in (out / "chains/labels.jsonl").read_text().splitlines()]
    assert len(rows) == 28 and all(len(r["input_ids"]) == len(r["labels"]) for r in rows)
    # the headline: onsets, positive lags only, every control and the null beside each
    assert [r["lag"] for r in results["lags"]] == [k for k in LAGS if k > 0]
    for r in results["lags"]:
        assert set(r["controls"]) == {"prefix", "bag", "embed", "random", "untrained"}
        assert r["null"]["permutations"] == TINY.null_permutations
        assert r["verdict"] in (*WORDS, "not measurable")
        c = r["counts"]
        assert (
            c["onset_rows"] + c["excluded"] == c["rows"]
            and c["onset_positives"] == (r["n_positive"])
        )
    assert results["rule"]["min_effect"] == 0.02 and results["rule"]["ceiling"] == 0.95
    # the seed's measure beside it, every lag
    assert [r["lag"] for r in results["seed_measure"]] == list(LAGS)
    assert set(results["seed_measure"][0]["controls"]) == {
        "shuffled", "prefix", "bag", "embed", "random", "untrained"
    }  # fmt: skip
    assert results["layers"] == probed_layers(2, 2)


def test_labels_mark_exactly_the_checkers_backtracking_sentences(backtracking_study, tiny_dir):
    from reasonlens.models import load_tokenizer

    out, _ = backtracking_study
    tok = load_tokenizer(tiny_dir)
    samples = [json.loads(x) for x in (out / "sample/samples.jsonl").read_text().splitlines()]
    checks = [json.loads(x) for x in (out / "chains/checks.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (out / "chains/labels.jsonl").read_text().splitlines()]
    used = {c["id"]: c for c in checks if c["used"]}
    for row in rows:
        sample = next(s for s in samples if s["id"] == row["id"])
        spans = [(b["start"], b["end"]) for b in used[row["id"]]["spans"]]
        positive = tok.decode(
            [t for t, y in zip(row["input_ids"], row["labels"], strict=True) if y]
        )
        want = "".join(sample["text"][s:e] for s, e in spans)
        assert "".join(positive.split()) == "".join(want.split())
        assert (
            row["input_ids"][: row["start"]] == tok(sample["prompt"])["input_ids"][: row["start"]]
        )


def test_the_report_re_renders_from_the_files(backtracking_study, monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    out, results = backtracking_study
    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    render_report(out)
    assert (out / "report.md").read_text() == before
    assert "seed AUC" in before and "verdict" in before and "AUC at onsets" in before


def test_a_users_chains_through_the_cli(backtracking_file_study):
    out, _ = backtracking_file_study
    results = json.loads((out / "results.json").read_text())
    assert results["source"] == "file" and results["chains"]["used"] == 12
    assert "untrained" not in results["lags"][0]["controls"]
    assert "random" in results["lags"][0]["controls"]
    # twelve copies of one chain: every control predicts its span, so nothing can be concluded
    assert {r["verdict"] for r in results["lags"]} == {"not measurable"}
    assert results["furthest_onset_lag"] is None
    assert not (out / "train").exists()
    config = (out / "config.yaml").read_text()
    assert "chains_sha256" in config and "template: raw" in config


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (None, ["--chains", "missing.json"], "chains file not found"),
        (
            lambda: (
                '[{"task_id": 1, "problem": "p", "reasoning_chain": "x", '
                '"annotated_chain": "[\\"deduction\\"]never closed"}]'
            ),
            [],
            "close",
        ),
        (
            lambda: json.dumps(annotated(3)),
            ["--label", "uncertainty-estimation"],
            "occurs in none",
        ),
        (None, ["--label", "backtracking"], "apply to --chains only"),
        (None, ["--chains", "."], "is a directory"),
        (None, ["--chains", ""], "--chains is empty"),
        (lambda: "", [], "the file is empty"),
        (
            lambda: json.dumps(
                [
                    {
                        **annotated(1)[0],
                        "annotated_chain": '["backtracking"]Wait.["end-section"]',
                        "reasoning_chain": "Wait.",
                    }
                ]
            ),
            [],
            "fewer than the minimum",
        ),
    ],
)
def test_bad_chains_exit_2_and_write_nothing(
    tiny_dir, tmp_path, capsys, monkeypatch, make, extra, message
):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    monkeypatch.chdir(tmp_path)
    args = [
        "study",
        "backtracking",
        "--preset",
        "tiny",
        "--model",
        tiny_dir,
        "--template",
        "raw",
        "--out",
        tmp_path / "run",
    ]
    if make is not None:
        (tmp_path / "c.json").write_text(make())
        args += ["--chains", tmp_path / "c.json"]
    if "--label" in extra and make is None:
        args.remove("--template")
        args.remove("raw")
    code, _, err = run_cli(args + extra, capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_probed_layers_are_evenly_spaced():
    assert probed_layers(30, 5) == [0, 7, 14, 22, 29]
    assert probed_layers(3, 5) == [0, 1, 2]
    assert probed_layers(18, 1) == [17]


def test_chosen_layers_are_probed_and_a_missing_one_is_refused(
    tiny_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    base = file_run(tiny_dir, tmp_path)
    code, _, err = run_cli(base + ["--layers", "1", "--out", tmp_path / "one"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "one/results.json").read_text())["layers"] == [1]
    for value, message in (
        ("0,2", "layer 2 does not exist; "),
        ("x", "separated by commas"),
        ("", "non-negative layer numbers"),
    ):
        code, _, err = run_cli(base + ["--layers", value, "--out", tmp_path / "bad"], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()
