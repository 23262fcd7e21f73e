"""Every run resumes only the work it would do itself: a store, an evaluation, a conversion.

* the weights fingerprint (models.fingerprint) changes with the weights, cheaply;
* a trace resumed after the model was retrained at the same path is refused (model weights);
* an eval re-run on changed data or a changed model is refused, naming what changed;
* a truncated shard is found on resume and written again; reading one is a UserError;
* bad input is found before a store is written; a later failure leaves nothing in the way;
* a killed GGUF conversion's temporary directory is removed by the next conversion.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from reasonlens.errors import UserError
from reasonlens.models.fingerprint import (
    model_fingerprint,
    safetensors_problem,
    weights_fingerprint,
)
from reasonlens.tasks.blocksworld import generate_problems, write_examples
from reasonlens.testing import run_cli, save_tiny_model
from reasonlens.trace import ActivationStore, capture

capture_module = importlib.import_module("reasonlens.trace.capture")
gguf = importlib.import_module("reasonlens.models.gguf")

TEXTS = ["a", "a longer example", "mid size", "x y z", "the fifth one is longest of all", "6"]
SITE = "layers.1.resid_post"


class Killed(BaseException):
    """The process dies here (nothing catches it)."""


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _error(err: str) -> str:
    """The one line a refused command prints (progress bars of the setup aside)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _trace(model, inputs, out, *more):
    return ["trace", "-m", model, "-i", inputs, "-s", SITE, "-b", 2, "-o", out, *more]


# --- the fingerprint ----------------------------------------------------------------------


def test_the_fingerprint_sees_a_retrained_tensor_in_the_middle_of_the_file(tmp_path):
    """A LoRA merge rewrites some matrices only: same size, same layout, same first and last
    bytes. The fingerprint still changes, even with the file's time put back."""
    tensors = {f"layers.{i}.weight": torch.randn(256, 256) for i in range(8)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, path)
    stat = path.stat()
    before = weights_fingerprint(tmp_path)
    assert weights_fingerprint(tmp_path) == before  # stable
    tensors["layers.4.weight"] = tensors["layers.4.weight"] + 1e-3
    save_file(tensors, path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert weights_fingerprint(tmp_path) != before


def test_the_fingerprint_of_a_large_file_takes_milliseconds(tmp_path):
    """A 1 GB (sparse) checkpoint with 300 tensors: a few hundred small reads."""
    size = 3_568_000  # bytes of each tensor (892,000 floats)
    header = {
        f"t{i}": {"dtype": "F32", "shape": [size // 4], "data_offsets": [i * size, (i + 1) * size]}
        for i in range(300)
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "model.safetensors"
    with path.open("wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        handle.truncate(8 + len(raw) + 300 * size)
    assert safetensors_problem(path) is None
    weights_fingerprint(tmp_path)
    start = time.perf_counter()
    weights_fingerprint(tmp_path)
    assert time.perf_counter() - start < 0.5


def test_a_hub_id_without_local_files_has_a_fingerprint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    first = weights_fingerprint("nobody-here/no-such-model")
    assert first == weights_fingerprint("nobody-here/no-such-model")
    assert first != weights_fingerprint("nobody-here/other-model")


def test_a_model_in_memory_is_fingerprinted_from_its_parameters(tiny_llama):
    from reasonlens.models.tiny import tiny_model

    assert model_fingerprint(tiny_llama) == model_fingerprint(tiny_model("llama"))
    assert model_fingerprint(tiny_llama) != model_fingerprint(tiny_model("llama", seed=1))


# --- trace: the store's identity includes the weights ---------------------------------------


def test_a_trace_resumed_on_retrained_weights_is_refused(tmp_path, capsys, monkeypatch):
    model = save_tiny_model(tmp_path / "model", seed=0)
    inputs = _jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "store"
    real, calls = capture_module._capture_batch, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(capture_module, "_capture_batch", killed)
    with pytest.raises(Killed):
        run_cli(_trace(model, inputs, out), capsys)
    monkeypatch.setattr(capture_module, "_capture_batch", real)
    assert (out / "shard-00000.safetensors").is_file()  # one batch of the old weights

    save_tiny_model(tmp_path / "model", seed=1)  # retrained at the same path
    code, _, err = run_cli(_trace(model, inputs, out), capsys)
    assert code == 2
    assert "model_weights" in _error(err) and "--overwrite" in err
    assert not json.loads((out / "meta.json").read_text())["complete"]

    code, _, err = run_cli(_trace(model, inputs, out, "--overwrite"), capsys)
    assert code == 0, err
    from reasonlens.models import load_model

    fresh = capture(load_model(model), TEXTS, SITE, batch_size=2, progress=False)
    assert torch.equal(ActivationStore(out).get(SITE), fresh.get(SITE))  # all new weights


def test_a_store_of_a_model_changed_in_memory_is_refused(tiny_llama, tmp_path):
    from reasonlens.models.tiny import tiny_model

    model = tiny_model("llama")
    capture(model, TEXTS, SITE, out=tmp_path / "s", progress=False)
    with torch.no_grad():
        model.hf.model.layers[1].mlp.down_proj.weight.mul_(2)
    with pytest.raises(UserError, match="model_weights"):
        capture(model, TEXTS, SITE, out=tmp_path / "s", progress=False)


# --- eval: its identity includes the data and the weights -----------------------------------


def test_eval_refuses_changed_data_or_weights_at_the_same_paths(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model", seed=0)
    data = tmp_path / "L1_test.jsonl"
    write_examples(data, generate_problems(4, 1, 2, unique=True, seed=1))
    out = tmp_path / "eval"
    argv = ["eval", "-m", model, "-d", data, "-o", out, "-b", 2, "--max-new-tokens", 4]
    assert run_cli(argv, capsys)[0] == 0
    inputs = json.loads((out / "inputs.json").read_text())
    assert set(inputs) == {"data", "model_weights"} and str(data) in inputs["data"]
    assert "sha256" not in (out / "config.yaml").read_text()  # the options only
    assert run_cli(argv, capsys)[0] == 0  # the same inputs: reopened
    results = (out / "results.json").read_text()

    write_examples(data, generate_problems(4, 1, 2, unique=True, seed=2))  # new problems
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert f"data file {data} changed" in _error(err) and "model weights" not in err
    assert (out / "results.json").read_text() == results  # nothing replaced

    write_examples(data, generate_problems(4, 1, 2, unique=True, seed=1))  # the old data
    save_tiny_model(tmp_path / "model", seed=1)  # a model retrained at the same path
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "model weights changed" in _error(err) and "data file" not in err
    assert (out / "results.json").read_text() == results

    code, _, err = run_cli([*argv, "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((out / "inputs.json").read_text())["model_weights"] != inputs["model_weights"]


# --- trace: a truncated shard ---------------------------------------------------------------


def test_a_truncated_shard_is_reported_and_written_again_on_resume(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model")
    inputs = _jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "store"
    assert run_cli(_trace(model, inputs, out), capsys)[0] == 0
    reference = ActivationStore(out).get(SITE).clone()
    shard = out / "shard-00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])  # e.g. a copy that stopped early

    with pytest.raises(UserError, match=r"shard-00001\.safetensors is damaged.*truncated"):
        ActivationStore(out).get(SITE)
    code, _, err = run_cli(_trace(model, inputs, out), capsys)
    assert code == 0, err
    assert "2 shards already done" in err  # only the damaged one was computed again
    assert safetensors_problem(shard) is None
    assert torch.equal(ActivationStore(out).get(SITE), reference)


# --- trace: bad input before anything is written --------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"input_ids": [5, 1_000_000], "positions": [0]}, "token id 1000000 is outside"),
        ({"text": "", "positions": [0]}, "empty"),
        ({"text": "abc", "positions": [7]}, "position 7 is outside its 3 tokens"),
    ],
    ids=["token-id", "empty", "position"],
)
def test_bad_input_found_late_in_the_file_writes_nothing(bad, message, tmp_path, capsys):
    """The bad example is in the second batch: it used to fail after meta.json and the first
    shard were written, and the corrected command was then refused."""
    model = save_tiny_model(tmp_path / "model")
    rows = [{"text": t, "positions": [0]} for t in TEXTS[:3]]
    inputs = _jsonl(tmp_path / "in.jsonl", [*rows, bad])
    out = tmp_path / "store"
    code, _, err = run_cli(_trace(model, inputs, out, "--positions", "given"), capsys)
    assert code == 2 and message in _error(err)
    assert not (out / "meta.json").exists() and not list(out.glob("shard-*"))

    _jsonl(inputs, [*rows, {"text": "abc", "positions": [-1]}])  # corrected
    code, _, err = run_cli(_trace(model, inputs, out, "--positions", "given"), capsys)
    assert code == 0, err
    assert ActivationStore(out).n_examples == 4


def test_a_failure_before_the_first_shard_leaves_the_directory_free(tmp_path, capsys, monkeypatch):
    """E.g. out of memory in the first batch: the corrected command (a smaller batch) runs."""
    model = save_tiny_model(tmp_path / "model")
    inputs = _jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "store"

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(capture_module, "_capture_batch", oom)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_cli(_trace(model, inputs, out, "-b", 4), capsys)
    assert not (out / "meta.json").exists()
    monkeypatch.undo()
    code, _, err = run_cli(_trace(model, inputs, out, "-b", 1), capsys)
    assert code == 0, err
    assert ActivationStore(out).meta["shard_examples"] == 1


# --- GGUF conversions: temporary directories of dead ones ----------------------------------


def _dead_conversion(target: Path) -> Path:
    """A process that starts a conversion's temporary directory, writes into it, and is
    killed (SIGKILL: no cleanup runs)."""
    script = (
        "import sys, time; from pathlib import Path; from reasonlens.models.gguf import _temp_dir;"
        "tmp = _temp_dir(Path(sys.argv[1])); (tmp / 'model.safetensors').write_bytes(b'x' * 4096);"
        "print(tmp, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True
    )
    tmp = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return tmp


def test_the_next_conversion_removes_the_temporary_directory_of_a_killed_one(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonlens.models.tiny import tiny_model

    cache = tmp_path / "models"
    cache.mkdir()
    target = cache / "smollm2-135m"
    dead = _dead_conversion(target)
    assert dead.is_dir() and dead.parent == cache
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = cache / f".gemma3-270m.partial.{gguf._host()}.{sleeper.pid}.abcd1234"
        alive.mkdir()  # a conversion still running in another process
        legacy_old = cache / ".smollm2-135m-k2j4h5g6"  # an older reasonlens' leftover
        legacy_old.mkdir()
        old = time.time() - 7 * 3600
        os.utime(legacy_old, (old, old))
        legacy_new = cache / ".other-abcdefgh"  # maybe still being written
        legacy_new.mkdir()
        mine = cache / ".notes"
        mine.mkdir()

        tiny = tiny_model("llama")
        monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda *a, **k: tiny.tokenizer)
        monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: tiny.hf)
        # the reading part is not under test here: any GGUF "loads" as the tiny model
        monkeypatch.setattr(gguf, "check_gguf", lambda path: None, raising=False)
        gguf_file = tmp_path / "fake.gguf"
        gguf_file.write_bytes(b"GGUF")
        gguf.convert_gguf(gguf_file, target, "key")

        assert (target / "model.safetensors").is_file() and gguf.is_current(target, "key")
        left = sorted(p.name for p in cache.iterdir())
        assert left == sorted([alive.name, legacy_new.name, mine.name, target.name])
        loaded = load_file(target / "model.safetensors")
        assert torch.equal(
            loaded["model.embed_tokens.weight"], tiny.hf.state_dict()["model.embed_tokens.weight"]
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    shutil.rmtree(cache)
