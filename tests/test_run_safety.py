"""Nothing a user owns is ever deleted, every run resumes, and no bad input gets a traceback.

Each refusal below goes through the real CLI and must: exit 2, print exactly one line on
stderr (no traceback) and leave every file where it was, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonlens.runs import LOCK_FILE, OWNED_FILE, RunDir
from reasonlens.runs import lock as lock_module
from reasonlens.tasks.blocksworld import generate_problems
from reasonlens.testing import run_cli

SMALL = ["--levels", "L1", "L2", "--blocks", "4", "--train", "3", "--test", "4"]


# --- helpers ----------------------------------------------------------------------------------


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes): what must not change on a refusal."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def tree_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(code: int, err: str, *fragments: str, banner: bool = False) -> str:
    """The one stderr line of a refusal (exit 2), checked to contain every fragment.
    `banner`: `study` prints what it is about to run first (commands/study.py, not yet moved)."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    if banner and " study, preset " in err:
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_rmtree(monkeypatch):
    """Fail loudly if anything calls shutil.rmtree (what used to empty users' directories)."""
    calls = []
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: calls.append(a))
    yield calls
    assert calls == [], f"shutil.rmtree was called on {calls}"


@pytest.fixture
def user_dir(tmp_path):
    """A directory of the user's: a thesis and a data folder."""
    mine = tmp_path / "thesis"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("\\documentclass{article} % precious\n")
    (mine / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return mine


@pytest.fixture(autouse=True)
def fake_adapter(tmp_path, tiny_dir):
    """What train-merge is given: an adapter directory (its weights are never read here)."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"base_model_name_or_path": tiny_dir, "peft_type": "LORA"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    return adapter


@pytest.fixture
def bw_file(tmp_path):
    path = tmp_path / "bw.jsonl"
    path.write_text("".join(ex.to_json() + "\n" for ex in generate_problems(4, 2, 3)))
    return path


def argv_for(command: str, out: str, tiny: str, bw: Path, tmp: Path) -> list[str]:
    """A valid command line of `command` writing to `out`."""
    return {
        "data": ["data", "blocksworld", "--out", out, *SMALL],
        "trace": ["trace", "-m", tiny, "-s", "layers.0.k", "-t", "hi", "-o", out],
        "train": ["train", "--out", out, "--data", str(bw), "-m", tiny, "--max-steps", "1"],
        "train-merge": ["train-merge", str(tmp / "adapter"), "--base", tiny, "--out", out],
        "eval": ["eval", "--data", str(bw), "--out", out, "-m", tiny],
        "study": ["study", "planning", "--out", out, "-m", tiny],
        "validate": ["validate", str(bw), "--findings", out],
    }[command]


WRITERS = ["data", "trace", "train", "train-merge", "eval", "study"]


def cli(*argv, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reasonlens", *map(str, argv)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "reasonlens", *map(str, argv)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lock(out: Path, proc: subprocess.Popen, timeout: float = 60) -> dict:
    """The lock `proc` holds on `out`, once it holds it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            info = json.loads((out / LOCK_FILE).read_text())
            if info.get("pid") == proc.pid:
                return info
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, f"finished before it was seen holding {out}"
        time.sleep(0.002)
    raise AssertionError(f"{proc.pid} never took the lock on {out}")


def assert_consistent(out: Path, seed: int) -> None:
    """One data set: the manifest's hashes match its files, and no test problem is in train."""
    from reasonlens.tasks.blocksworld.validate import validate_file

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["seed"] == seed
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"], name
    for level in ("L1", "L2"):
        totals = validate_file(
            out / f"{level}_test.jsonl", against=out / f"{level}_train.jsonl"
        ).totals()
        assert totals["overlap"] == 0 and totals["duplicates"] == 0
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "data" and run["config"]["seed"] == seed


# --- 1. --overwrite removes only what reasonlens wrote -----------------------------------------


@pytest.mark.parametrize("command", WRITERS)
def test_overwrite_refuses_a_directory_that_is_not_a_run(
    command, user_dir, tiny_dir, bw_file, tmp_path, capsys, no_rmtree
):
    before = files_of(tmp_path)
    argv = [*argv_for(command, str(user_dir), tiny_dir, bw_file, tmp_path), "--overwrite"]
    line = refused(*run_cli(argv, capsys)[::2], str(user_dir), banner=command == "study")
    assert "sub/" in line or "thesis.tex" in line  # names what is there
    assert files_of(tmp_path) == before
    assert tree_of(user_dir) == ["sub", "sub/data.csv", "thesis.tex"]  # not even a lock file


def test_refusal_without_overwrite_does_not_invite_deleting_user_files(user_dir, tiny_dir, capsys):
    for argv in (
        ["data", "blocksworld", "--out", user_dir, *SMALL],
        ["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "hi", "-o", user_dir],
    ):
        line = refused(*run_cli(argv, capsys)[::2], "sub/ and 1 more", "choose another --out")
        assert "replaces only a reasonlens run" in line and "pass --overwrite" not in line
    assert tree_of(user_dir) == ["sub", "sub/data.csv", "thesis.tex"]


@pytest.mark.parametrize("where", [".", "", "home", "/"])
@pytest.mark.parametrize("command", ["data", "trace", "eval"])
@pytest.mark.parametrize("overwrite", [True, False])
def test_the_current_home_and_root_directories_are_never_runs(
    where, command, overwrite, user_dir, tiny_dir, bw_file, tmp_path, monkeypatch, capsys, no_rmtree
):
    """`--out .`, `--out ''` (an unset variable) and `--out ~` used to be emptied."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(user_dir))
    monkeypatch.chdir(user_dir if where in (".", "") else elsewhere)
    out = {"home": str(user_dir)}.get(where, where)
    before = files_of(tmp_path)
    argv = argv_for(command, out, tiny_dir, bw_file, tmp_path) + (["--overwrite"] * overwrite)
    expected = {
        ".": "is the current directory",
        "": "is the current directory",
        "home": "is your home directory",
        "/": "is the root directory",
    }[where]
    refused(*run_cli(argv, capsys)[::2], expected)
    assert files_of(tmp_path) == before
    assert tree_of(user_dir) == ["sub", "sub/data.csv", "thesis.tex"]


def test_overwrite_of_a_run_holding_a_user_file_names_it(tmp_path, capsys, no_rmtree):
    out = tmp_path / "bw"
    assert run_cli(["data", "blocksworld", "--out", out, *SMALL], capsys)[0] == 0
    (out / "notes.txt").write_text("my notes on this data set\n")
    assert run_cli(["data", "blocksworld", "--out", out, *SMALL], capsys)[0] == 0  # resumes
    before = files_of(out)  # and the notes are still the user's, not the run's:
    other = ["data", "blocksworld", "--out", out, *SMALL, "--seed", "7"]
    line = refused(*run_cli(other, capsys)[::2], "notes.txt", "--overwrite would refuse")
    assert "pass --overwrite" not in line
    refused(
        *run_cli([*other, "--overwrite"], capsys)[::2],
        "holds notes.txt, which reasonlens did not write",
    )
    assert files_of(out) == before
    (out / "notes.txt").unlink()  # moved away: now it is reasonlens' run only
    code, _, err = run_cli([*other, "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 7


def test_overwrite_never_follows_a_link_nor_deletes_inside_one(
    tiny_dir, user_dir, tmp_path, capsys, no_rmtree
):
    out = tmp_path / "store"
    trace = ["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "a", "-o", out]
    assert run_cli(trace, capsys)[0] == 0
    (out / "link").symlink_to(user_dir, target_is_directory=True)
    other = ["trace", "-m", tiny_dir, "-s", "layers.1.k", "-t", "a", "-o", out, "--overwrite"]
    refused(*run_cli(other, capsys)[::2], "holds link, which reasonlens did not write")
    assert tree_of(user_dir) == ["sub", "sub/data.csv", "thesis.tex"]


def test_overwrite_replaces_exactly_the_files_reasonlens_wrote(
    tiny_dir, tmp_path, capsys, no_rmtree
):
    out = tmp_path / "store"
    trace = ["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "a", "-t", "b", "-b", "1"]
    assert run_cli([*trace, "-o", out], capsys)[0] == 0
    assert (out / "shard-00001.safetensors").is_file()
    record = json.loads((out / OWNED_FILE).read_text())
    assert record["session"] is None and "shard-00001.safetensors" in record["files"]
    other = ["trace", "-m", tiny_dir, "-s", "layers.1.k", "-t", "c", "-o", out, "--overwrite"]
    code, _, err = run_cli(other, capsys)
    assert code == 0, err
    assert tree_of(out) == sorted(
        [OWNED_FILE, "config.yaml", "meta.json", "run.json", "shard-00000.safetensors"]
    )


def test_a_file_added_inside_a_run_folder_is_named(tmp_path):
    """Below the top level too: a user's file in a folder reasonlens made is not its own."""
    from reasonlens.errors import UserError

    with RunDir.create(tmp_path / "r", "eval", {"n": 1}) as run:
        run.write_json("per_problem/a.json", {"x": 1})
    (tmp_path / "r" / "per_problem" / "mine.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds per_problem/mine\.txt, which reasonlens did"):
        RunDir.create(tmp_path / "r", "eval", {"n": 2}, overwrite=True)
    assert (tmp_path / "r" / "per_problem" / "a.json").is_file()
    (tmp_path / "r" / "per_problem" / "mine.txt").unlink()
    with RunDir.create(tmp_path / "r", "eval", {"n": 2}, overwrite=True):
        pass
    assert not (tmp_path / "r" / "per_problem").exists()


# --- 2. --out checked before anything is written -----------------------------------------------


@pytest.mark.parametrize("bad", ["file", "under-file", "empty", "read-only"])
@pytest.mark.parametrize("command", [*WRITERS, "validate"])
def test_an_out_that_cannot_be_a_run_is_refused_first(
    command, bad, tiny_dir, bw_file, tmp_path, monkeypatch, capsys, no_rmtree
):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a directory\n")
    locked = tmp_path / "ro"
    locked.mkdir()
    real_access = os.access
    # the suite runs as root, for whom nothing is read-only: the check itself is what is tested
    monkeypatch.setattr(
        os, "access", lambda p, m, **k: Path(p) != locked and real_access(p, m, **k)
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out, expected = {
        "file": (notes, "is a file" if command != "validate" else "not a file reasonlens wrote"),
        "under-file": (notes / "run", "lies under"),
        "empty": ("", "current directory"),
        "read-only": (locked / "run", "is not writable"),
    }[bad]
    before = files_of(tmp_path)
    refused(
        *run_cli(argv_for(command, str(out), tiny_dir, bw_file, tmp_path), capsys)[::2], expected
    )
    assert files_of(tmp_path) == before
    assert tree_of(locked) == [] and tree_of(cwd) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only directory")
def test_a_really_read_only_out_is_refused(tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        argv = ["data", "blocksworld", "--out", locked / "bw", *SMALL]
        refused(*run_cli(argv, capsys)[::2], "is not writable")
    finally:
        locked.chmod(0o755)


# --- 3. one writer at a time -------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "bw"
    first = start("data", "blocksworld", "--out", out, "--seed", "1", *SMALL, cwd=tmp_path)
    try:
        wait_for_lock(out, first)
        os.kill(first.pid, signal.SIGSTOP)  # hold it there, lock taken, nothing finished
        second = cli("data", "blocksworld", "--out", out, "--seed", "2", *SMALL, cwd=tmp_path)
        refused(
            second.returncode,
            second.stderr,
            f"in use by another reasonlens process (pid {first.pid}",
        )
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert_consistent(out, seed=1)
    assert not (out / LOCK_FILE).exists()


def test_two_writers_at_once_give_one_data_set(tmp_path):
    """What used to leave a manifest that did not match its files, 1 time in 3."""
    for attempt in range(2):
        out = tmp_path / f"bw{attempt}"
        procs = {
            seed: start("data", "blocksworld", "--out", out, "--seed", seed, *SMALL, cwd=tmp_path)
            for seed in (1, 2)
        }
        results = {seed: (p.wait(timeout=120), p.stderr.read()) for seed, p in procs.items()}
        for p in procs.values():
            p.stdout.close()
            p.stderr.close()
        assert sorted(code for code, _ in results.values()) == [0, 2], results
        winner = next(seed for seed, (code, _) in results.items() if code == 0)
        loser_err = next(err for code, err in results.values() if code == 2)
        refused(2, loser_err, str(out))
        assert_consistent(out, seed=winner)


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "bw"
    out.mkdir()
    info = {"pid": dead.pid, "host": lock_module.socket.gethostname(), "since": "yesterday"}
    (out / LOCK_FILE).write_text(json.dumps(info))
    code, _, err = run_cli(["data", "blocksworld", "--out", out, *SMALL], capsys)
    assert code == 0, err
    assert not (out / LOCK_FILE).exists()
    assert_consistent(out, seed=0)


def test_a_lock_of_a_live_process_is_respected_in_process(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "bw"
        out.mkdir()
        info = {"pid": sleeper.pid, "host": lock_module.socket.gethostname(), "since": "now"}
        (out / LOCK_FILE).write_text(json.dumps(info))
        argv = ["data", "blocksworld", "--out", out, *SMALL]
        refused(*run_cli(argv, capsys)[::2], f"pid {sleeper.pid}")
        assert tree_of(out) == [LOCK_FILE]
    finally:
        sleeper.kill()
        sleeper.wait()


# --- 4. validate --findings never overwrites what it should not ----------------------------------


def test_findings_never_overwrite_the_validated_or_against_file(bw_file, tmp_path, capsys):
    other = tmp_path / "train.jsonl"
    other.write_text("".join(ex.to_json() + "\n" for ex in generate_problems(4, 1, 2)))
    link = tmp_path / "link.jsonl"
    link.symlink_to(bw_file)
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"mine": true}\n')
    before = files_of(tmp_path)
    cases = [
        (bw_file, "is the input file"),
        (link, "is the input file"),
        (other, "is the input file"),
        (notes, "not a file reasonlens wrote"),
    ]
    for target, message in cases:
        argv = ["validate", bw_file, "--against", other, "--findings", target]
        refused(*run_cli(argv, capsys)[::2], message)
    assert files_of(tmp_path) == before
    findings = tmp_path / "findings.jsonl"
    for _ in range(2):  # a findings file it wrote may be written again
        assert run_cli(["validate", bw_file, "--findings", findings], capsys)[0] == 0
    assert len(findings.read_text().splitlines()) == 3


# --- 5. data sets resume, are runs, and are bounded ----------------------------------------------


def test_an_interrupted_data_set_resumes_to_the_same_bytes(tmp_path, capsys, monkeypatch):
    from reasonlens.tasks.blocksworld import dataset

    reference = tmp_path / "reference"
    assert run_cli(["data", "blocksworld", "--out", reference, *SMALL], capsys)[0] == 0
    out = tmp_path / "bw"
    real = dataset.atomic_write
    written = []

    def stop_after_two(path, text):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        real(path, text)

    monkeypatch.setattr(dataset, "atomic_write", stop_after_two)
    assert run_cli(["data", "blocksworld", "--out", out, *SMALL], capsys)[0] != 0
    assert len(written) == 2 and not (out / "manifest.json").exists()
    monkeypatch.setattr(dataset, "atomic_write", real)
    code, _, err = run_cli(["data", "blocksworld", "--out", out, *SMALL], capsys)  # same command
    assert code == 0, err
    data = {k: v for k, v in files_of(out).items() if k.endswith((".jsonl", "manifest.json"))}
    assert data == {
        k: v for k, v in files_of(reference).items() if k.endswith((".jsonl", "manifest.json"))
    }
    assert len(data) == 5


def test_a_killed_data_run_resumes(tmp_path):
    out = tmp_path / "bw"
    reference = tmp_path / "reference"
    done = cli("data", "blocksworld", "--out", reference, "--seed", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    proc = start("data", "blocksworld", "--out", out, "--seed", "3", cwd=tmp_path)
    wait_for_lock(out, proc)
    proc.kill()  # SIGKILL: no clean-up at all, the lock stays
    proc.communicate()
    assert (out / LOCK_FILE).exists()
    again = cli("data", "blocksworld", "--out", out, "--seed", "3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    mine = {k: v for k, v in files_of(out).items() if not k.startswith(".")}
    theirs = {k: v for k, v in files_of(reference).items() if not k.startswith(".")}
    assert mine.keys() == theirs.keys()
    for name in mine:
        if name not in ("run.json",):  # run.json records when it was made
            assert mine[name] == theirs[name], name


def test_data_and_trace_write_run_json_and_config_yaml(tiny_dir, tmp_path, capsys):
    data = tmp_path / "bw"
    assert run_cli(["data", "blocksworld", "--out", data, *SMALL, "--seed", "4"], capsys)[0] == 0
    run = RunDir.open(data, "data")
    assert run.config["task"] == "blocksworld" and run.config["seed"] == 4
    assert "seed: 4" in (data / "config.yaml").read_text()
    store = tmp_path / "store"
    trace = ["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "hi", "-o", store]
    assert run_cli(trace, capsys)[0] == 0
    run = RunDir.open(store, "trace")
    assert run.config["sites"] == ["layers.0.k"] and run.config["text"] == ["hi"]
    assert (store / "config.yaml").is_file() and (store / "meta.json").is_file()
    assert run_cli(trace, capsys)[0] == 0  # the same trace again: resumed, not refused


def test_data_into_another_kind_of_run_is_refused(tiny_dir, tmp_path, capsys):
    store = tmp_path / "store"
    assert (
        run_cli(["trace", "-m", tiny_dir, "-s", "layers.0.k", "-t", "a", "-o", store], capsys)[0]
        == 0
    )
    before = files_of(store)
    argv = ["data", "blocksworld", "--out", store, *SMALL]
    refused(*run_cli(argv, capsys)[::2], "a run of another kind ('trace')")
    assert files_of(store) == before


@pytest.mark.parametrize("slots", ["9", "1000000"])
def test_slots_are_bounded(slots, tmp_path, capsys):
    out = tmp_path / "bw"
    argv = ["data", "blocksworld", "--out", out, "--slots", slots, *SMALL]
    refused(*run_cli(argv, capsys)[::2], "--slots must be 1..8")
    assert not out.exists()
    bw = tmp_path / "x.jsonl"
    bw.write_text("")
    refused(*run_cli(["validate", bw, "--slots", slots], capsys)[::2], "--slots must be 1..8")


def test_a_bad_request_leaves_no_directory_behind(tmp_path, capsys):
    out = tmp_path / "a" / "bw"
    argv = [
        "data",
        "blocksworld",
        "--out",
        out,
        "--blocks",
        "3",
        "--levels",
        "L2",
        "--test",
        "5000",
    ]
    refused(*run_cli(argv, capsys)[::2], "only 960 distinct problems")
    assert not (tmp_path / "a").exists()
