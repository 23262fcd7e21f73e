"""Interventions: known answers for patching, projection, steering, key zeroing, composition."""

import pytest
import torch

from reasonlens.errors import UserError
from reasonlens.models.prompts import pad_batch, tokenize
from reasonlens.models.tiny import TINY_ARCHITECTURES, tiny_model
from reasonlens.trace import (
    Add,
    ProjectOut,
    Replace,
    Scale,
    Zero,
    intervene,
    run_with_cache,
    zero_keys,
)

PATCHABLE = ("resid_pre", "q", "k", "v", "attn_out", "mlp_out", "resid_post")


def _batch(model, texts):
    return pad_batch([tokenize(model.tokenizer, t) for t in texts], 0, "right")


def _no_hooks_left(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.hf.modules())


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_patching_every_site_from_b_into_a_reproduces_b(arch):
    model = tiny_model(arch, n_layers=3)
    run_a, run_b = _batch(model, ["abcdefgh"]), _batch(model, ["zyxwvuts"])
    sites = " ".join(f"layers.*.{s}" for s in PATCHABLE)
    logits_b, cache_b = run_with_cache(model, run_b, sites)
    patches = [Replace(name, value=value) for name, value in cache_b.items()]
    with intervene(model, *patches):
        logits_patched, _ = run_with_cache(model, run_a, "layers.0.resid_post")
    torch.testing.assert_close(logits_patched, logits_b, rtol=0, atol=1e-5)
    logits_a, _ = run_with_cache(model, run_a, "layers.0.resid_post")
    assert not torch.allclose(logits_a, logits_b, atol=1e-3)  # the test can fail
    assert _no_hooks_left(model)


def test_patching_one_position_changes_only_later_positions(tiny_llama):
    a, b = _batch(tiny_llama, ["abcdefgh"]), _batch(tiny_llama, ["abcdXfgh"])
    _, cache_b = run_with_cache(tiny_llama, b, "layers.0.resid_post")
    logits_a, _ = run_with_cache(tiny_llama, a, "layers.0.resid_post")
    with intervene(
        tiny_llama, Replace("layers.0.resid_post", [5], value=cache_b["layers.0.resid_post"])
    ):
        patched, _ = run_with_cache(tiny_llama, a, "layers.0.resid_post")
    torch.testing.assert_close(patched[:, :5], logits_a[:, :5], rtol=0, atol=0)
    assert not torch.allclose(patched[:, 5], logits_a[:, 5])


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out", "resid_post"])
def test_projecting_out_leaves_no_component_along_the_direction(tiny_llama, site):
    direction = torch.randn(tiny_llama.d_model, generator=torch.Generator().manual_seed(1))
    name = f"layers.1.{site}"
    _, before = run_with_cache(tiny_llama, _batch(tiny_llama, ["project me out"]), name)
    with intervene(tiny_llama, ProjectOut(name, direction=direction)):
        _, after = run_with_cache(tiny_llama, _batch(tiny_llama, ["project me out"]), name)
    unit = direction / direction.norm()
    assert (before[name] @ unit).abs().max() > 1e-3
    assert (after[name] @ unit).abs().max() < 1e-5
    # the orthogonal part is untouched
    torch.testing.assert_close(
        after[name], before[name] - (before[name] @ unit).unsqueeze(-1) * unit, atol=1e-5, rtol=0
    )


def test_interventions_on_one_site_compose_in_order(tiny_llama):
    name = "layers.0.mlp_out"
    vector = torch.ones(tiny_llama.d_model)
    batch = _batch(tiny_llama, ["compose"])
    _, base = run_with_cache(tiny_llama, batch, name)
    with intervene(tiny_llama, Scale(name, factor=2.0), Add(name, vector=vector, scale=3.0)):
        _, both = run_with_cache(tiny_llama, batch, name)
    torch.testing.assert_close(both[name], 2.0 * base[name] + 3.0, atol=1e-5, rtol=0)


def test_steering_acts_at_every_generation_step(tiny_llama):
    """Adding a huge unembedding row of token X to the last residual stream forces X."""
    target = 100
    direction = tiny_llama.unembed.weight[target].detach()
    batch = _batch(tiny_llama, ["steer"])
    last = tiny_llama.n_layers - 1
    with intervene(tiny_llama, Add(f"layers.{last}.resid_post", vector=direction, scale=500.0)):
        out = tiny_llama.hf.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert out[0, batch["input_ids"].shape[1] :].tolist() == [target] * 6
    plain = tiny_llama.hf.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert plain[0, batch["input_ids"].shape[1] :].tolist() != [target] * 6
    assert _no_hooks_left(tiny_llama)


def test_positions_stay_absolute_during_kv_cache_generation(tiny_llama):
    """Generation with zeroed keys must score like one full forward with the same keys zeroed."""
    batch = _batch(tiny_llama, ["zero some keys please"])
    prompt_len = batch["input_ids"].shape[1]
    masked = zero_keys(tiny_llama, positions=[2, 3, prompt_len + 1])
    with intervene(tiny_llama, *masked):
        gen = tiny_llama.hf.generate(
            **batch,
            max_new_tokens=4,
            do_sample=False,
            pad_token_id=0,
            output_scores=True,
            return_dict_in_generate=True,
        )
        full = tiny_llama.hf(input_ids=gen.sequences).logits
    for step, scores in enumerate(gen.scores):
        torch.testing.assert_close(scores[0], full[0, prompt_len - 1 + step], atol=1e-4, rtol=0)
    with torch.no_grad():
        unmasked = tiny_llama.hf(input_ids=gen.sequences).logits
    assert not torch.allclose(unmasked[0, -1], full[0, -1], atol=1e-4)


def test_per_example_positions_and_zero(tiny_llama):
    batch = _batch(tiny_llama, ["first one", "second one"])
    name = "layers.0.attn_out"
    with intervene(tiny_llama, Zero(name, positions=[[0, 1], [4]])):
        _, cache = run_with_cache(tiny_llama, batch, name)
    x = cache[name]
    assert torch.all(x[0, :2] == 0) and torch.all(x[0, 2:].abs().sum(-1) > 0)
    assert torch.all(x[1, 4] == 0) and torch.all(x[1, :4].abs().sum(-1) > 0)


def test_hooks_are_removed_when_the_block_raises(tiny_llama):
    with pytest.raises(RuntimeError, match="boom"), intervene(tiny_llama, Zero("layers.0.mlp_out")):
        raise RuntimeError("boom")
    assert _no_hooks_left(tiny_llama)


def test_bad_intervention_inputs_are_clear(tiny_llama):
    batch = _batch(tiny_llama, ["bad"])
    steer = Add("layers.0.resid_post", vector=torch.ones(3))
    with (
        pytest.raises(UserError, match="has size 3 but the site has width 64"),
        intervene(tiny_llama, steer),
    ):
        run_with_cache(tiny_llama, batch, "layers.0.resid_post")
    with (
        pytest.raises(UserError, match="can be read but not intervened on"),
        intervene(tiny_llama, Zero("layers.0.attn_pattern")),
    ):
        pass
    assert _no_hooks_left(tiny_llama)
