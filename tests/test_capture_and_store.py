"""Capture over batched datasets, and the on-disk activation store."""

import importlib
import json

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.models.prompts import pad_batch, tokenize
from reasonlens.trace import (
    ActivationStore,
    CaptureStats,
    JsonlInputs,
    TraceInput,
    capture,
    run_with_cache,
)

capture_module = importlib.import_module("reasonlens.trace.capture")

TEXTS = ["a", "a longer example", "mid size", "x y z", "the fifth one is longest of all", "6"]
SITES = "layers.*.resid_post layers.0.attn_out layers.1.k"


def _alone(model, text, site):
    """The site's tensor for one example run on its own: no padding anywhere."""
    batch = pad_batch([tokenize(model.tokenizer, text)], 0, "right")
    return run_with_cache(model, batch, site)[1][site][0]


def test_all_positions_match_unpadded_single_runs(tiny_llama):
    acts = capture(tiny_llama, TEXTS, SITES, positions="all", batch_size=4, progress=False)
    assert acts.n_examples == len(TEXTS)
    for i, text in enumerate(TEXTS):
        for site in ("layers.1.resid_post", "layers.1.k"):
            torch.testing.assert_close(
                acts.example(i, site), _alone(tiny_llama, text, site), atol=1e-5, rtol=0
            )
        assert acts.input_ids(i) == tokenize(tiny_llama.tokenizer, text)
        assert acts.positions(range(i, i + 1)).tolist() == list(range(len(acts.input_ids(i))))


def test_last_and_given_positions(tiny_llama):
    last = capture(
        tiny_llama, TEXTS, "layers.0.resid_post", positions="last", batch_size=4, progress=False
    )
    assert last.get("layers.0.resid_post").shape == (len(TEXTS), tiny_llama.d_model)
    for i, text in enumerate(TEXTS):
        torch.testing.assert_close(
            last.example(i, "layers.0.resid_post")[0],
            _alone(tiny_llama, text, "layers.0.resid_post")[-1],
            atol=1e-5,
            rtol=0,
        )
    given = capture(
        tiny_llama,
        [TraceInput(text="abcdef", positions=(0, -1)), TraceInput(text="xyz", positions=(1,))],
        "layers.1.mlp_out",
        positions="given",
        progress=False,
    )
    assert given.row_offsets.tolist() == [0, 2, 3]
    assert given.positions().tolist() == [0, 5, 1]


def test_given_position_outside_the_example_is_reported(tiny_llama):
    with pytest.raises(UserError, match="example 1: position 9 is outside its 3 tokens"):
        capture(
            tiny_llama,
            [TraceInput(text="ok", positions=(0,)), TraceInput(text="xyz", positions=(9,))],
            "layers.0.resid_post",
            positions="given",
            progress=False,
        )


def test_attention_patterns_in_memory(tiny_llama):
    acts = capture(
        tiny_llama, ["abc", "abcdef"], "layers.0.attn_pattern", positions="last", progress=False
    )
    pattern = acts.get("layers.0.attn_pattern")  # [rows, heads, keys]
    assert pattern.shape[:2] == (2, 4)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 4))
    assert torch.all(pattern[0, :, 3:] == 0)  # the short example attends to its own 3 tokens only


def test_store_equals_memory_and_reads_lazily(tiny_llama, tmp_path):
    memory = capture(tiny_llama, TEXTS, SITES, batch_size=4, progress=False)
    store = capture(tiny_llama, TEXTS, SITES, batch_size=4, out=tmp_path / "s", progress=False)
    assert isinstance(store, ActivationStore)
    # the store is a run: run.json and config.yaml beside its meta.json and shards
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if not p.name.startswith(".")) == [
        "config.yaml",
        "meta.json",
        "run.json",
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    for site in memory.sites:
        assert torch.equal(store.get(site), memory.get(site))
        assert torch.equal(store.get(site, range(2, 5)), memory.get(site, range(2, 5)))
    assert torch.equal(store.layer(1), memory.layer(1))
    assert torch.equal(store.row_offsets(), memory.row_offsets)
    assert store.input_ids(5) == memory.input_ids(5)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["complete"] and meta["n_examples"] == 6 and meta["model"] == "tiny-llama"
    with pytest.raises(UserError, match="is not in this store"):
        store.get("layers.0.mlp_out")


def test_interrupted_capture_resumes_without_recomputing(tiny_llama, tmp_path, monkeypatch):
    out = tmp_path / "store"
    real = capture_module._capture_batch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(capture_module, "_capture_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        capture(tiny_llama, TEXTS, SITES, batch_size=2, out=out, progress=False)
    assert json.loads((out / "meta.json").read_text())["complete"] is False
    with pytest.raises(UserError, match="incomplete: 1 of 3 shards missing"):
        ActivationStore(out)

    calls["n"] = 100
    stats = CaptureStats()
    store = capture(tiny_llama, TEXTS, SITES, batch_size=2, out=out, progress=False, stats=stats)
    assert stats.skipped_shards == 2 and calls["n"] == 101  # only the missing batch ran
    reference = capture(tiny_llama, TEXTS, SITES, batch_size=2, progress=False)
    for site in reference.sites:
        assert torch.equal(store.get(site), reference.get(site))


def test_store_refuses_a_different_capture_unless_overwrite(tiny_llama, tmp_path):
    out = tmp_path / "store"
    capture(tiny_llama, TEXTS, SITES, out=out, progress=False)
    before = (out / "shard-00000.safetensors").read_bytes()
    with pytest.raises(UserError, match=r"different capture \(differs in: sites\)"):
        capture(tiny_llama, TEXTS, "layers.0.resid_post", out=out, progress=False)
    assert (out / "shard-00000.safetensors").read_bytes() == before  # nothing lost
    capture(tiny_llama, TEXTS, "layers.0.resid_post", out=out, progress=False, overwrite=True)
    assert ActivationStore(out).sites == ["layers.0.resid_post"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an activation store"):
        capture(tiny_llama, TEXTS, SITES, out=tmp_path / "other", progress=False)


def test_stop_early_gives_the_same_rows(tiny_llama):
    """Capturing only layer 0 ends the forward pass there; the rows must not change."""
    early = capture(tiny_llama, TEXTS, "layers.0.resid_post", progress=False)
    full = capture(tiny_llama, TEXTS, "layers.0.resid_post layers.1.resid_post", progress=False)
    assert torch.equal(early.get("layers.0.resid_post"), full.get("layers.0.resid_post"))


def test_jsonl_inputs_report_file_and_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": 3}\n')
    with pytest.raises(UserError, match=r"in.jsonl:3: 'text' must be a string"):
        list(JsonlInputs(path))
    path.write_text('{"text": "fine"}\n{oops\n')
    with pytest.raises(UserError, match=r"in.jsonl:2: not valid JSON"):
        list(JsonlInputs(path))
    path.write_text('{"input_ids": [1, 2], "text": "both"}\n')
    with pytest.raises(UserError, match="exactly one of 'text'"):
        list(JsonlInputs(path))
    with pytest.raises(UserError, match="input file not found"):
        JsonlInputs(tmp_path / "missing.jsonl")
