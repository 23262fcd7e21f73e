"""A run's own files are read as carefully as user input: a finished run whose state files were
damaged after it ran gives one line naming the file and exit 2 on `report RUN` and on a resumed
`study`, and changes nothing; `timings.json`, only a record of seconds, is rebuilt instead.

(The bad-input corpus in test_bad_inputs.py holds the same cases on hand-made run directories;
these run a real study first, then damage what it wrote.)
"""

from __future__ import annotations

import json
import shutil

import pytest

from reasonlens.studies.backtracking import presets
from reasonlens.studies.backtracking.presets import BacktrackingPreset
from reasonlens.testing import run_cli
from reasonlens.train.recipe import TrainRecipe

TINY = BacktrackingPreset(
    name="tiny",
    description="test only",
    n_train=8,
    n_chains=30,
    train=TrainRecipe(method="full", epochs=1, batch_size=4, learning_rate=1e-3),
    max_new_tokens=16,
    sample_batch=8,
    n_layers=2,
    capture_batch=8,
    lags=(-4, 0, 4, 8),
    bootstrap=20,
)

CHAIN = (
    "Okay, so I need to add the numbers one at a time and see where that leads me in the end. "
    "First two plus two is four, then four plus three is seven, and seven plus one is eight. "
    "Wait, I added the three twice, so I should go back and start again from the top here. "
    "Two plus two is four, four plus one is five, so the answer is five and I am done now."
)


def _chains(n: int) -> list[dict]:
    """`n` chains in the plain layout, each with one backtracking span."""
    start = CHAIN.index("Wait")
    end = CHAIN.index("here.") + len("here.")
    return [
        {
            "id": i,
            "problem": f"Add the numbers (case {i}).",
            "text": CHAIN,
            "spans": [{"start": start, "end": end, "label": "backtracking"}],
        }
        for i in range(n)
    ]


def _study(tiny_dir, chains, out) -> list:
    return [
        "study",
        "backtracking",
        "--preset",
        "tiny",
        "--model",
        tiny_dir,
        "--chains",
        chains,
        "--template",
        "raw",
        "--quiet",
        "--out",
        out,
    ]


@pytest.fixture(scope="module")
def finished(tiny_dir, tmp_path_factory):
    """A finished backtracking run on 12 chains of a file: (run directory, chains file)."""
    import sys

    root = tmp_path_factory.mktemp("finished")
    chains = root / "chains.json"
    chains.write_text(json.dumps(_chains(12)))
    out = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(presets.PRESETS, "tiny", TINY)
        from reasonlens.cli import main

        try:
            main([str(a) for a in _study(tiny_dir, chains, out)])
        except SystemExit as exit_:
            assert not exit_.code, exit_.code
        sys.stderr.flush()
    return out, chains


def _snapshot(root) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "run.log"  # a resumed study logs what it tried
    }


def _copy(finished, tmp_path):
    out, chains = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    return run, chains


DAMAGE = [
    pytest.param("stages.json", b"[1,", "stages.json is not valid JSON", id="stages-cut"),
    pytest.param("stages.json", b"[]", "stages.json holds a JSON list", id="stages-list"),
    pytest.param(
        "stages.json",
        b'{"chains": 5}',
        "stages.json: stage 'chains' holds a JSON number",
        id="stages-entry-number",
    ),
    pytest.param(
        "stages.json", b'{"chains": "\xff\xfe"}', "stages.json is not UTF-8", id="stages-bytes"
    ),
    pytest.param(
        "chains/summary.json", b"{", "chains/summary.json is not valid JSON", id="summary-cut"
    ),
]


@pytest.mark.parametrize("command", ["report", "study"])
@pytest.mark.parametrize(("name", "content", "fragment"), DAMAGE)
def test_a_damaged_state_file_is_one_line_naming_it(
    finished, tiny_dir, tmp_path, capsys, monkeypatch, command, name, content, fragment
):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    run, chains = _copy(finished, tmp_path)
    (run / name).write_bytes(content)
    before = _snapshot(run)
    argv = ["report", run] if command == "report" else _study(tiny_dir, chains, run)

    code, _, err = run_cli(argv, capsys)

    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"{run}/{fragment}" in lines[0], err
    assert "--overwrite" in lines[0], err
    assert _snapshot(run) == before


@pytest.mark.parametrize("command", ["report", "study"])
def test_damaged_timings_are_rebuilt_with_a_warning(
    finished, tiny_dir, tmp_path, capsys, caplog, monkeypatch, command
):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    run, chains = _copy(finished, tmp_path)
    (run / "timings.json").write_text("{")
    argv = ["report", run] if command == "report" else _study(tiny_dir, chains, run)

    code, _, err = run_cli(argv, capsys)

    assert code == 0, err
    assert "Traceback" not in err, err
    timings = json.loads((run / "timings.json").read_text())
    assert isinstance(timings, dict) and all(isinstance(v, float) for v in timings.values())
    warned = f"{run / 'timings.json'} is not valid JSON"
    assert warned in caplog.text and "starting it again from empty" in caplog.text
    if command == "study":
        assert warned in (run / "run.log").read_text()
        assert set(timings) == {"chains_s", "activations_s", "analysis_s"}
    else:
        assert timings == {}


def test_a_damaged_state_file_refuses_resume_but_overwrite_starts_again(
    finished, tiny_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    run, chains = _copy(finished, tmp_path)
    (run / "stages.json").write_text("[1,")
    code, _, err = run_cli([*_study(tiny_dir, chains, run), "--overwrite"], capsys)
    assert code == 0, err
    record = json.loads((run / "stages.json").read_text())
    assert {v["state"] for v in record.values()} == {"finished"}


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--preset", "quick"], "was made with preset 'tiny' (you asked for preset 'quick')"),
        (["--seed", "3"], "was made with seed 0 (you asked for seed 3)"),
        (
            ["--preset", "quick", "--seed", "3"],
            "was made with preset 'tiny' and seed 0 (you asked for preset 'quick' and seed 3)",
        ),
    ],
)
def test_a_changed_setting_is_refused_in_the_users_terms(
    finished, tiny_dir, tmp_path, capsys, monkeypatch, extra, said
):
    """Not the stages' internal inputs (an 875-character line of `data.*` fields): the
    preset, model, seed or option the run was made with, in one short line."""
    monkeypatch.setitem(presets.PRESETS, "tiny", TINY)
    run, chains = _copy(finished, tmp_path)
    before = _snapshot(run)
    argv = _study(tiny_dir, chains, run)
    argv.remove("tiny")
    argv.remove("--preset")
    code, _, err = run_cli([*argv, "--preset", "tiny", *extra], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert f"{run} {said}, which its finished stage 'analysis' depends on" in lines[0], err
    assert "choose another --out, or pass --overwrite" in lines[0]
    assert len(lines[0]) - len(str(run)) < 220, lines[0]
    assert _snapshot(run) == before
