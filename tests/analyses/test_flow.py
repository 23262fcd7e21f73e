"""Information flow: Wang et al.'s reference computation, a hand-set attention pattern, step
separation, chunk averaging, and the model left as it was."""

import json

import pytest
import torch
from transformers.models.gemma3 import modeling_gemma3
from transformers.models.llama import modeling_llama

from reasonlens.analyses.flow import information_flow, plot_flow, token_flow
from reasonlens.errors import UserError

pytestmark = pytest.mark.usefixtures("single_thread")

EAGER = {"llama": modeling_llama, "gemma3": modeling_gemma3}


def _reference_attention(store):
    """Eager attention with Wang et al.'s multiplicative ones-tensor P: A' = A ⊙ P."""

    def attention(
        module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **_
    ):
        groups = module.num_key_value_groups
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
        scores = query @ key.transpose(2, 3) * (scaling or query.shape[-1] ** -0.5)
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if attention_mask is not None:
            scores = scores + attention_mask
        weights = scores.softmax(dim=-1)
        ones = torch.ones_like(weights, requires_grad=True)
        store.append(ones)
        return ((weights * ones) @ value).transpose(1, 2).contiguous(), weights

    return attention


def _reference_flow(model, ids, position, gold, store):
    """|Σ_heads P.grad[N, :]| per layer (P.grad = A ⊙ ∂L/∂A), diagonal 0, one unpadded example."""
    store.clear()
    logits = model.hf(input_ids=torch.tensor([ids])).logits
    loss = torch.nn.functional.cross_entropy(logits[0, position][None], torch.tensor([gold]))
    grads = torch.autograd.grad(loss, store)
    flow = torch.stack([g[0, :, position, : position + 1].sum(0).abs() for g in grads])
    flow[:, position] = 0
    return flow, store


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_saliency_equals_wang_et_al_ones_tensor_reference(make_model, make_ids, monkeypatch, arch):
    model = make_model(arch, n_layers=3, seed=4)
    # gemma3's tiny sliding window (16) is shorter than these inputs: its mask is exercised too
    ids = make_ids([30, 22, 27], seed=5)
    targets = [[(9, 40), (29, 41)], [(21, 42)], [(3, 43), (15, 44), (26, 45)]]
    got = token_flow(model, ids, targets, batch_size=2)

    store: list = []
    monkeypatch.setattr(EAGER[arch], "eager_attention_forward", _reference_attention(store))
    for e, steps in enumerate(targets):
        assert len(got[e]) == len(steps)
        for t, (position, gold) in enumerate(steps):
            want, used = _reference_flow(model, ids[e], position, gold, store)
            assert len(used) == model.n_layers  # the reference attention really ran
            assert got[e][t].shape == (model.n_layers, position + 1)
            assert want.max() > 0
            torch.testing.assert_close(got[e][t], want, rtol=1e-4, atol=1e-7 * float(want.max()))


def _pointer_model(make_model):
    """One llama layer whose last token (id QUERY) attends only to tokens with id KEY.

    Keys and queries are built by hand in head dimension 7, whose RoPE frequency is so low
    (10000^(-7/8)) that the angle over 30 positions is < 0.01 rad: the match does not depend
    on position. Every head of the target attends to the KEY tokens (score ~30 vs 0); values,
    o_proj and the unembedding stay random, so the signal reaches the loss.
    """
    model = make_model("llama", n_layers=1, seed=6)
    attn = model.layers[0].self_attn
    head_dim = attn.head_dim
    with torch.no_grad():
        embed = model.hf.get_input_embeddings().weight
        embed[:, :2] = 0
        embed[KEY, 0] = 1.0
        embed[QUERY, 1] = 1.0
        attn.q_proj.weight.zero_()
        attn.k_proj.weight.zero_()
        for head in range(attn.q_proj.weight.shape[0] // head_dim):
            attn.q_proj.weight[head * head_dim + 7, 1] = 2.0
        for head in range(attn.k_proj.weight.shape[0] // head_dim):
            attn.k_proj.weight[head * head_dim + 7, 0] = 1.0
    return model


KEY, QUERY = 120, 121


@pytest.mark.parametrize("source", ["first", "second"])
def test_the_attended_chunk_gets_the_flow(make_model, make_ids, source):
    model = _pointer_model(make_model)
    ids = make_ids([24], seed=7, low=3, high=100)[0]
    chunks = {"first": (3, 7), "second": (10, 14), "rest": (15, 23)}
    start, end = chunks[source]
    ids[start:end] = [KEY] * (end - start)
    ids[23] = QUERY
    result = information_flow(model, [ids], [[(23, 55)]], [[chunks]])
    flow = result.flow[0, :, 0]  # the only step and layer
    winner = result.chunks.index(source)
    assert flow[winner] > 0
    others = torch.cat([flow[:winner], flow[winner + 1 :]])
    assert flow[winner] > 1e4 * others.max()
    assert result.normalized[0, winner, 0] == 1.0


def test_each_step_has_its_own_gradient_and_batching_changes_nothing(
    tiny_llama, make_ids, monkeypatch
):
    ids = make_ids([26, 19, 31], seed=8)
    targets = [[(10, 30), (25, 31)], [(18, 32)], [(12, 33), (20, 34), (30, 35)]]
    together = token_flow(tiny_llama, ids, targets, batch_size=3)
    for e, steps in enumerate(targets):
        for t, target in enumerate(steps):
            alone = token_flow(tiny_llama, [ids[e]], [[target]], batch_size=1)[0][0]
            torch.testing.assert_close(together[e][t], alone, rtol=1e-4, atol=1e-9)
    # the sum of two steps' losses would give a different (mixed) map for the earlier step
    store: list = []
    monkeypatch.setattr(modeling_llama, "eager_attention_forward", _reference_attention(store))
    summed = _reference_sum_of_losses(tiny_llama, ids[0], targets[0], store)
    assert not torch.allclose(summed, together[0][0], rtol=1e-2, atol=0)


def _reference_sum_of_losses(model, ids, steps, store):
    """The wrong way: one backward of L_1 + L_2, read at the first target."""
    logits = model.hf(input_ids=torch.tensor([ids])).logits
    loss = sum(
        torch.nn.functional.cross_entropy(logits[0, n][None], torch.tensor([g])) for n, g in steps
    )
    grads = torch.autograd.grad(loss, store)
    position = steps[0][0]
    flow = torch.stack([g[0, :, position, : position + 1].sum(0).abs() for g in grads])
    flow[:, position] = 0
    return flow


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_chunk_flow_is_the_mean_over_its_tokens(make_model, make_ids, tmp_path, arch):
    model = make_model(arch, n_layers=2, seed=9, attn_implementation="sdpa")
    ids = make_ids([30, 24], seed=10)
    targets = [[(12, 60), (29, 61)], [(11, 62), (23, 63)]]
    chunks = [
        [{"init": (0, 4), "goal": (4, 8)}, {"init": (0, 4), "goal": (4, 8), "history 1": (13, 20)}],
        [{"goal": (4, 8), "init": (0, 4)}, {"goal": (4, 8), "init": (0, 4)}],
    ]
    order = ["init", "goal", "history 1"]
    result = information_flow(model, ids, targets, chunks, order=order, batch_size=1)
    rows = token_flow(model, ids, targets)

    assert result.chunks == order
    assert result.flow.shape == (2, 3, model.n_layers)
    assert result.counts.tolist() == [[2, 2, 0], [2, 2, 1]]
    assert result.flow[0, 2].isnan().all()  # no example has history 1 at step 1
    for t in range(2):
        for c, name in enumerate(order):
            parts = [
                rows[e][t][:, slice(*chunks[e][t][name])].mean(1)
                for e in range(2)
                if name in chunks[e][t]
            ]
            if parts:
                torch.testing.assert_close(result.flow[t, c], torch.stack(parts).mean(0))
        assert result.normalized[t].nan_to_num(nan=0).max() == 1.0
    # the model is left as it was: sdpa attention, no gradients on its parameters
    assert model.hf.config._attn_implementation == "sdpa"
    assert all(p.grad is None and p.requires_grad for p in model.hf.parameters())
    again = information_flow(model, ids, targets, chunks, order=order, batch_size=2)
    torch.testing.assert_close(again.flow, result.flow, rtol=1e-5, atol=0, equal_nan=True)
    record = result.to_dict()
    json.dumps(record, allow_nan=False)
    assert record["flow"][0][2] == [None, None]
    out = plot_flow(result, tmp_path / "flow.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flow_is_deterministic(make_model, make_ids):
    model = make_model("gemma3", n_layers=2, seed=11)
    ids = make_ids([20, 20], seed=12)
    targets = [[(8, 70), (19, 71)], [(19, 72)]]
    first = token_flow(model, ids, targets)
    second = token_flow(model, ids, targets)
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


def test_bad_chunks_are_refused(tiny_llama, make_ids):
    ids = make_ids([10])
    with pytest.raises(UserError, match="at or before the target position 5"):
        information_flow(tiny_llama, ids, [[(5, 3)]], [[{"late": (4, 8)}]])
    with pytest.raises(UserError, match="not in the given order"):
        information_flow(tiny_llama, ids, [[(5, 3)]], [[{"a": (0, 2)}]], order=["b"])
    with pytest.raises(UserError, match="1 targets but 2 chunk maps"):
        information_flow(tiny_llama, ids, [[(5, 3)]], [[{"a": (0, 2)}, {"a": (0, 2)}]])
