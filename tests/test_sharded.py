"""Sharded models (accelerate dispatch): a tiny model split across CPU memory and disk offload
gives the same captures, logits, interventions and generations as the same model unsplit.

Two GPU ids need two GPUs: that test is skipped on a CPU-only torch (this machine), where the
only devices are the CPU and the disk."""

from __future__ import annotations

import json

import pytest
import torch

from reasonlens.models.loading import check_placement, load_model
from reasonlens.testing import run_cli, save_tiny_model
from reasonlens.trace import ActivationStore, capture, run_with_cache
from reasonlens.trace.interventions import Add, ProjectOut, Replace, Zero, intervene

TEXTS = ["a", "a longer example of text", "mid size", "the fourth one is the longest of all"]
SITES = "layers.*.resid_pre layers.*.attn_out layers.*.mlp_out layers.*.resid_post layers.*.k"
#: every other layer (and the unembedding) on disk: weights are read in as each one runs
SPLIT = {
    "model.embed_tokens": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "cpu",
    "model.layers.3": "disk",
    "model.norm": "cpu",
    "model.rotary_emb": "cpu",
    "lm_head": "disk",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny4"), "llama", n_layers=4, seed=3)


@pytest.fixture(scope="module")
def whole(tiny4):
    return load_model(tiny4, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def split(tiny4, tmp_path_factory):
    folder = tmp_path_factory.mktemp("offload")
    return load_model(tiny4, dtype="float32", device_map=json.dumps(SPLIT), offload_folder=folder)


def _batch(model, texts):
    from reasonlens.models.prompts import pad_batch, tokenize

    return pad_batch([tokenize(model.tokenizer, t) for t in texts], 0, "right")


def test_split_model_is_really_split(split):
    assert split.hf.hf_device_map == SPLIT
    meta = {n for n, p in split.hf.named_parameters() if p.device.type == "meta"}
    assert "lm_head.weight" in meta and any(n.startswith("model.layers.1.") for n in meta)
    assert not any(n.startswith("model.layers.0.") for n in meta)
    assert split.device == torch.device("cpu")


def test_capture_and_logits_equal_the_unsplit_model(whole, split):
    a = capture(whole, TEXTS, SITES, batch_size=3, progress=False)
    b = capture(split, TEXTS, SITES, batch_size=3, progress=False)
    assert a.sites == b.sites and len(a.sites) == 20
    for site in a.sites:
        torch.testing.assert_close(b.get(site), a.get(site), atol=1e-6, rtol=0, msg=site)
    batch = _batch(whole, TEXTS)
    logits_a, _ = run_with_cache(whole, batch, "layers.3.resid_post")
    logits_b, _ = run_with_cache(split, batch, "layers.3.resid_post")
    torch.testing.assert_close(logits_b, logits_a, atol=1e-6, rtol=0)


def test_interventions_equal_the_unsplit_model(whole, split):
    """Steering, directional ablation, zero ablation and patching, on layers kept in memory
    and on layers offloaded to disk, change the logits of both models identically."""
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(whole.d_model, generator=gen)
    batch = _batch(whole, TEXTS)
    source = _batch(whole, [TEXTS[3]] * len(TEXTS))
    _, cache = run_with_cache(whole, source, "layers.1.resid_post")
    patch = cache["layers.1.resid_post"][:, : batch["input_ids"].shape[1]]
    cases = {
        "steer": [Add("layers.1.resid_post", positions=[1, 2], vector=direction, scale=4.0)],
        "ablate": [ProjectOut(s, direction=direction) for s in ("layers.*.attn_out",)]
        + [ProjectOut("layers.3.mlp_out", direction=direction)],
        "zero": [Zero("layers.2.mlp_out"), Zero("layers.3.k", positions=[0])],
        "patch": [Replace("layers.1.resid_post", positions=[0, 1], value=patch)],
    }
    plain = whole.hf(**batch).logits
    for name, items in cases.items():
        with torch.no_grad():
            with intervene(whole, *items):
                want = whole.hf(**batch).logits
            with intervene(split, *items):
                got = split.hf(**batch).logits
        assert not torch.allclose(want, plain), f"{name} changed nothing"
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=name)


def test_steered_generation_equals_the_unsplit_model(whole, split):
    direction = torch.randn(whole.d_model, generator=torch.Generator().manual_seed(1))
    ids = _batch(whole, ["steer me"])["input_ids"]
    outputs = []
    for model in (whole, split):
        with intervene(model, Add("layers.3.resid_post", vector=direction, scale=8.0)):
            outputs.append(
                model.hf.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
            )
    assert torch.equal(outputs[0], outputs[1])


def test_cli_trace_auto_map_within_max_memory_equals_unsplit(tiny4, tmp_path, capsys):
    """--device-map auto --max-memory cpu=400KB: the embedding and layer 0 in memory, the rest
    on disk; the store holds the same numbers as an unsplit trace."""
    texts = ["-t", TEXTS[1], "-t", TEXTS[3]]
    base = ["trace", "-m", tiny4, "-s", "layers.*.resid_post", "--device", "cpu", *texts]
    code, _, err = run_cli([*base, "-o", tmp_path / "whole"], capsys)
    assert code == 0, err
    sharded = ["--device-map", "auto", "--max-memory", "cpu=400KB"]
    sharded += ["--offload-folder", tmp_path / "offload"]
    code, _, err = run_cli(
        ["trace", "-m", tiny4, "-s", "layers.*.resid_post", *texts, *sharded, "-o", tmp_path / "s"],
        capsys,
    )
    assert code == 0, err
    plan = check_placement(
        tiny4, dtype="float32", device_map="auto", max_memory="cpu=400KB", offload_folder="x"
    )  # the map that trace used (safetensors weights are read from disk where they lie)
    assert set(plan.values()) == {"cpu", "disk"} and plan["model.layers.3"] == "disk"
    a, b = ActivationStore(tmp_path / "whole"), ActivationStore(tmp_path / "s")
    for site in a.sites:
        torch.testing.assert_close(b.get(site), a.get(site), atol=1e-6, rtol=0)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="layers on two GPU ids need two GPUs (CPU-only torch here: cpu and disk only)",
)
def test_layers_on_two_gpus_equal_one_device(tiny4, whole):
    two = {k: (0 if k in ("model.embed_tokens", "model.layers.0", "model.layers.1") else 1)
           for k in SPLIT}  # fmt: skip
    model = load_model(tiny4, dtype="float32", device_map=json.dumps(two))
    a = capture(whole, TEXTS, SITES, batch_size=3, progress=False)
    b = capture(model, TEXTS, SITES, batch_size=3, progress=False)
    for site in a.sites:
        torch.testing.assert_close(b.get(site), a.get(site), atol=1e-4, rtol=1e-4, msg=site)
