"""Ablation: a planted direction's effect removed exactly, orthogonal inputs untouched, hooks and
weight orthogonalisation giving the same logits (tiny models of every mappable architecture,
and the real default model), generated tokens ablated too, layer ablation's three modes."""

import pytest
import torch

from reasonlens.analyses.ablation import (
    ablation_effect,
    directional_ablation,
    layer_ablation,
    layer_ablation_effect,
    mean_activations,
    orthogonalized,
)
from reasonlens.analyses.effects import answer_logprob, logit_difference
from reasonlens.errors import UserError
from reasonlens.models.prompts import pad_batch
from reasonlens.models.tiny import tiny_model
from reasonlens.trace import Replace, Zero, intervene
from reasonlens.trace.hooks import site_hooks
from reasonlens.trace.sites import site_ref

IDS = [[5, 6, 7, 8, 9, 10, 11], [3, 4, 5]]


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model.hf(**pad_batch(ids, 0, "left")).logits


def _direction(seed=3, d=64):
    return torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_ablating_the_planted_direction_removes_its_effect_exactly(planted):
    a_ids, b_ids = planted.prompts(6)
    model = planted.model
    with torch.no_grad():
        plain_a = [model.hf(input_ids=torch.tensor([x])).logits for x in a_ids]
        plain_b = [model.hf(input_ids=torch.tensor([x])).logits for x in b_ids]
        with directional_ablation(model, planted.direction * 7.0):  # any norm: its unit is used
            ablated_a = [model.hf(input_ids=torch.tensor([x])).logits for x in a_ids]
            ablated_b = [model.hf(input_ids=torch.tensor([x])).logits for x in b_ids]
    for pa, pb, aa, ab in zip(plain_a, plain_b, ablated_a, ablated_b, strict=True):
        assert (pa[0, -1, planted.x] - pb[0, -1, planted.x]).abs() > 10  # the effect is there
        torch.testing.assert_close(aa, pb, rtol=0, atol=1e-5)  # A ablated is its B twin
        assert torch.equal(ab, pb)  # inputs with no component along it: bit for bit unchanged


def test_generated_tokens_are_ablated_too(tiny_llama):
    r = _direction()
    unit = (r / r.norm()).float()
    seen = []

    def read(x, _ctx):
        seen.append(float((x @ unit).abs().max()))

    with directional_ablation(tiny_llama, r):
        hooks = [(site_ref(layer, "resid_pre"), read) for layer in range(tiny_llama.n_layers)]
        with site_hooks(tiny_llama, hooks):
            tiny_llama.hf.generate(
                **pad_batch(IDS, 0, "left"), max_new_tokens=6, do_sample=False, pad_token_id=0
            )
    assert len(seen) == 6 * tiny_llama.n_layers  # the prompt pass and 5 cached steps
    assert max(seen) < 1e-5


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [
        ("llama", {}),
        ("llama", {"tie_word_embeddings": True}),
        ("llama", {"attention_bias": True, "mlp_bias": True}),
        ("qwen2", {}),
        ("qwen3", {}),
        ("gpt2", {}),
    ],
)
def test_weight_orthogonalisation_gives_the_same_logits_as_hooks(arch, overrides):
    torch.set_num_threads(1)
    model = tiny_model(arch, n_layers=3, **overrides)
    r = _direction()
    before = _logits(model)
    params = {name: p for name, p in model.hf.named_parameters()}
    with directional_ablation(model, r):
        hooks = _logits(model)
        hooks_gen = model.hf.generate(
            **pad_batch(IDS, 0, "left"), max_new_tokens=5, do_sample=False, pad_token_id=0
        )
    with orthogonalized(model, r):
        weights = _logits(model)
        weights_gen = model.hf.generate(
            **pad_batch(IDS, 0, "left"), max_new_tokens=5, do_sample=False, pad_token_id=0
        )
    torch.testing.assert_close(weights, hooks, rtol=0, atol=1e-5)
    assert (hooks - before).abs().max() > 1e-3
    assert torch.equal(weights_gen, hooks_gen)
    # Every parameter is back, the very same tensors (a tied unembedding was never touched).
    assert torch.equal(_logits(model), before)
    assert all(p is params[name] for name, p in model.hf.named_parameters())


def test_weight_orthogonalisation_is_refused_behind_sandwich_norms():
    model = tiny_model("gemma3")
    with (
        pytest.raises(UserError, match="gemma3: a norm sits between"),
        orthogonalized(model, _direction()),
    ):
        pass


@pytest.mark.slow
def test_hooks_and_weights_agree_on_the_real_default_model(default_model):
    model = default_model
    ids = [model.tokenizer("The capital of France is")["input_ids"]]
    r = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with directional_ablation(model, r):
        hooks = _logits(model, ids)
    with orthogonalized(model, r):
        weights = _logits(model, ids)
    assert model.hf.config.tie_word_embeddings  # the unembedding must not be edited with it
    torch.testing.assert_close(weights, hooks, rtol=0, atol=1e-3)  # logits up to ~27
    assert (weights.argmax(-1) == hooks.argmax(-1)).all()


def test_ablation_effect_beats_random_directions_on_the_planted_model(planted):
    a_ids, b_ids = planted.prompts(12)
    metric = logit_difference([planted.x] * 12, [13] * 12)
    result = ablation_effect(
        planted.model, planted.direction, a_ids, metric, control_prompts=b_ids, n_random=3
    )
    with torch.no_grad():
        b_logits = torch.stack(
            [planted.model.hf(input_ids=torch.tensor([x])).logits[0, -1] for x in b_ids]
        )
    twin = metric(b_logits, torch.arange(12)).double()
    torch.testing.assert_close(result.ablated[0], twin, rtol=0, atol=1e-4)
    assert result.kl[0].abs().max() < 1e-9  # the B prompts carry none of it
    record = result.to_dict()
    assert record["direction_minus_random"]["high"] < 0  # removes far more than random ones
    verdict = result.versus_random("decrease")
    assert verdict.word == "agrees" and verdict.label == "below its random-direction controls"
    assert record["vectors"]["direction"]["effect"]["high"] < -10


def test_zeroing_a_layer_is_skipping_it_and_mean_uses_the_reference(tiny_llama):
    before = _logits(tiny_llama)
    with layer_ablation(tiny_llama, [1], "zero"):
        zero = _logits(tiny_llama)
    with layer_ablation(tiny_llama, range(1, 2), "skip"):
        skip = _logits(tiny_llama)
    assert torch.equal(zero, skip)
    assert (zero - before).abs().max() > 1e-3
    with layer_ablation(tiny_llama, [0], "zero", component="attn"):
        attn = _logits(tiny_llama)
    with intervene(tiny_llama, Zero("layers.0.attn_out")):
        torch.testing.assert_close(_logits(tiny_llama), attn, rtol=0, atol=0)
    reference = [[40, 41, 42, 43], [50, 51]]
    means = mean_activations(tiny_llama, reference, ["layers.1.mlp_out"], chat=False)
    with layer_ablation(tiny_llama, [1], "mean", reference=reference, component="mlp", chat=False):
        mean = _logits(tiny_llama)
    with intervene(
        tiny_llama, Replace("layers.1.mlp_out", value=means["layers.1.mlp_out"].float())
    ):
        torch.testing.assert_close(_logits(tiny_llama), mean, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["zero", "mean", "skip"])
def test_batched_layer_ablation_rows_equal_one_run_per_window(tiny_llama, mode):
    model = tiny_model("llama", n_layers=4)
    metric = answer_logprob([7, 8])
    reference = [[40, 41, 42]]
    result = layer_ablation_effect(
        model, IDS, metric, layers=[0, 2], mode=mode, window=2, reference=reference, chat=False
    )
    assert result.windows == [[0, 1], [2, 3]]
    for i, window in enumerate(result.windows):
        with layer_ablation(model, window, mode, reference=reference, chat=False):
            logits = _logits(model)[:, -1]
        torch.testing.assert_close(
            result.ablated[i], metric(logits, torch.arange(2)).double(), rtol=0, atol=1e-5
        )
    assert result.to_dict()["windows"][0]["layers"] == [0, 1]
    if mode == "mean":  # means taken once (layer_means) and reused give the same rows
        from reasonlens.analyses.ablation import layer_means

        means = layer_means(model, reference, chat=False)
        again = layer_ablation_effect(
            model, IDS, metric, layers=[0, 2], mode=mode, window=2, chat=False,
            reference_means=means,
        )  # fmt: skip
        assert torch.equal(again.ablated, result.ablated)
        with pytest.raises(UserError, match="reference means lack layers.2.attn_out"):
            layer_ablation_effect(
                model, IDS, metric, layers=[0, 2], mode=mode, window=2, chat=False,
                reference_means=layer_means(model, reference, layers=[0, 1], chat=False),
            )  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: layer_ablation(m, [5]).__enter__(), "layer 5 does not exist"),
        (lambda m: layer_ablation(m, [0], "drop").__enter__(), "unknown layer ablation mode"),
        (lambda m: layer_ablation(m, [0], "mean").__enter__(), "needs reference prompts"),
        (lambda m: layer_ablation(m, [0], "skip", component="mlp").__enter__(), "whole layer"),
        (lambda m: directional_ablation(m, torch.ones(65)).__enter__(), "width 65"),
        (lambda m: directional_ablation(m, torch.zeros(64)).__enter__(), "zero vector"),
        (lambda m: ablation_effect(m, torch.ones(64), [], answer_logprob([1])), "no prompts"),
    ],
)
def test_bad_ablations_are_refused_in_one_line(tiny_llama, call, message):
    with pytest.raises(UserError, match=message) as err:
        call(tiny_llama)
    assert "\n" not in str(err.value)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny_llama.hf.modules())
