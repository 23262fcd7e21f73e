"""Key-masking impact: no-op masks, a group that carries the answer, a plain re-computation,
and the layout of the impact matrix."""

import json

import pytest
import torch

from reasonlens.analyses.masking import masking_impact, plot_impact
from reasonlens.errors import UserError
from reasonlens.trace import intervene, zero_keys

pytestmark = pytest.mark.usefixtures("single_thread")

ZERO = 150  # a token whose embedding is zero: its layer-0 key is already 0


def _sharpen(model):
    """Scale queries, keys and the unembedding: attention and p(gold) far from uniform."""
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.q_proj.weight.mul_(5.0)
            layer.self_attn.k_proj.weight.mul_(5.0)
        model.unembed.weight.mul_(30.0)
    return model


def _top1(model, ids, position):
    with torch.no_grad():
        return int(model.hf(input_ids=torch.tensor([ids])).logits[0, position].argmax())


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_zeroing_keys_that_are_already_zero_changes_nothing(make_model, make_ids, arch):
    model = _sharpen(make_model(arch, n_layers=2, seed=1))
    with torch.no_grad():
        model.hf.get_input_embeddings().weight[ZERO] = 0
    ids = make_ids([21], seed=2)[0]
    for pos in (4, 9, 13):
        ids[pos] = ZERO
    targets, groups = [[(20, _top1(model, ids, 20))]], [[[[4], [9, 13]]]]

    # layer 0 only: those tokens' keys are exactly 0 there (zero embedding, no key bias)
    result = masking_impact(model, [ids], targets, groups, layers=[0])
    assert torch.equal(result.impact, torch.zeros(1, 2))
    assert torch.equal(result.p_masked, result.p_unmasked)
    # in every layer it is a real mask: later layers' keys at those tokens are not 0
    everywhere = masking_impact(model, [ids], targets, groups)
    assert (everywhere.p_masked - everywhere.p_unmasked).abs().max() > 1e-3
    assert result.layers == [0] and everywhere.layers is None


KEY, QUERY, GOLD, RIVAL = 120, 121, 60, 61


def _carrier_model(make_model):
    """One llama layer: the target token (QUERY) attends to KEY tokens, whose value writes GOLD.

    Queries/keys use head dimension 7 (RoPE angle < 0.01 rad over 30 tokens), score ~31 for a
    KEY token and 0 for any other. Each head copies the KEY token's embedding dimension 0 into
    residual dimension 2, which the unembedding reads as GOLD; the QUERY token's own dimension
    1 reads as RIVAL. Attending to KEY gives p(GOLD) ~ 1; with KEY's key zeroed, attention is
    uniform, only ~1/21 of the signal arrives and RIVAL wins.
    """
    model = make_model("llama", n_layers=1, seed=3)
    layer = model.layers[0]
    attn = layer.self_attn
    hd = attn.head_dim
    with torch.no_grad():
        embed = model.hf.get_input_embeddings().weight
        embed[:, :3] = 0
        embed[KEY, 0] = 1.0
        embed[QUERY, 1] = 1.0
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, layer.mlp.down_proj):
            proj.weight.zero_()
        for head in range(attn.q_proj.weight.shape[0] // hd):
            attn.q_proj.weight[head * hd + 7, 1] = 2.0
            attn.o_proj.weight[2, head * hd + 3] = 1.0
        for head in range(attn.k_proj.weight.shape[0] // hd):
            attn.k_proj.weight[head * hd + 7, 0] = 1.0
            attn.v_proj.weight[head * hd + 3, 0] = 1.0
        unembed = model.unembed.weight
        unembed[GOLD] = 0
        unembed[GOLD, 2] = 5.0
        unembed[RIVAL] = 0
        unembed[RIVAL, 1] = 10.0
    return model


def test_the_group_that_carries_the_answer_has_the_impact(make_model, make_ids):
    model = _carrier_model(make_model)
    ids = make_ids([21], seed=4, low=3, high=100)[0]
    ids[5], ids[20] = KEY, QUERY
    # group 1: a plain token; group 2: the KEY token
    result = masking_impact(model, [ids], [[(20, GOLD)]], [[[[11], [5]]]])
    p_plain, p_key = result.p_visible[0, 0].tolist()
    assert result.p_unmasked[0, 0] > 0.99
    assert result.p_masked[0, 0] < 0.01
    assert p_key > 0.99 and abs(p_key - result.p_unmasked[0, 0]) < 1e-6
    assert result.impact[0, 1] > 0.98
    assert result.impact[0, 0] == 0  # the plain token's key is 0 already: unmasking it is a no-op


def _plain_probability(model, ids, position, gold, zero):
    """p(gold) from a plain forward of the whole example with keys zeroed at `zero`."""
    with torch.no_grad(), intervene(model, *zero_keys(model, positions=[zero])):
        logits = model.hf(input_ids=torch.tensor([ids])).logits
    return float(logits[0, position].softmax(-1)[gold])


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_impact_matrix_layout_and_values(make_model, make_ids, tmp_path, arch):
    model = _sharpen(make_model(arch, n_layers=2, seed=5, attn_implementation="sdpa"))
    ids = make_ids([30, 24], seed=6)
    # step t sees one group per earlier step; example 1 has one step fewer
    positions = [[8, 14, 21, 28], [7, 15, 22]]
    steps = [[(n, _top1(model, ids[e], n)) for n in positions[e]] for e in range(2)]
    spans = [[[2, 3], [10], [17, 18], [24]], [[3], [11, 12], [19]]]
    groups = [[spans[e][:t] for t in range(len(steps[e]))] for e in range(2)]
    result = masking_impact(model, ids, steps, groups, batch_size=3)

    assert result.impact.shape == (4, 3)
    defined = ~result.impact.isnan()
    assert defined.tolist() == [[i < t for i in range(3)] for t in range(4)]
    assert result.counts.tolist() == [[0, 0, 0], [2, 0, 0], [2, 2, 0], [1, 1, 1]]
    assert result.p_visible[1, 3].isnan().all() and result.p_unmasked[1, 3].isnan()
    torch.testing.assert_close(result.p_masked[:, 0], result.p_unmasked[:, 0])  # nothing to mask
    assert result.impact_per_example.nan_to_num(0).abs().max() > 1e-3  # the masks matter

    for e in range(2):
        for t, (position, gold) in enumerate(steps[e]):
            every = sorted({p for g in groups[e][t] for p in g})
            want = {
                "unmasked": _plain_probability(model, ids[e], position, gold, []),
                "masked": _plain_probability(model, ids[e], position, gold, every),
            }
            assert abs(float(result.p_unmasked[e, t]) - want["unmasked"]) < 1e-5
            assert abs(float(result.p_masked[e, t]) - want["masked"]) < 1e-5
            for i in range(t):
                others = sorted({p for k, g in enumerate(groups[e][t]) if k != i for p in g})
                visible = _plain_probability(model, ids[e], position, gold, others)
                assert abs(float(result.p_visible[e, t, i]) - visible) < 1e-5

    again = masking_impact(model, ids, steps, groups, batch_size=3)
    assert torch.equal(again.p_visible.nan_to_num(-1), result.p_visible.nan_to_num(-1))
    one_by_one = masking_impact(model, ids, steps, groups, batch_size=1, share_prefix=False)
    torch.testing.assert_close(one_by_one.p_visible, result.p_visible, equal_nan=True)
    torch.testing.assert_close(one_by_one.p_masked, result.p_masked, equal_nan=True)
    record = result.to_dict()
    json.dumps(record, allow_nan=False)
    assert record["impact"][0] == [None, None, None]
    out = plot_impact(result, tmp_path / "impact.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_groups_are_refused(tiny_llama, make_ids):
    ids = make_ids([12])
    with pytest.raises(UserError, match="not at or before the target position 6"):
        masking_impact(tiny_llama, ids, [[(6, 3)]], [[[[7]]]])
    with pytest.raises(UserError, match="1 targets but 2 group lists"):
        masking_impact(tiny_llama, ids, [[(6, 3)]], [[[], [[1]]]])
    with pytest.raises(UserError, match="outside its 12 tokens"):
        masking_impact(tiny_llama, ids, [[(12, 3)]], [[[]]])


@pytest.mark.parametrize("method", ["zero_keys", "knockout"])
def test_merged_passes_give_the_same_numbers_in_t_plus_1_passes(
    make_model, make_ids, monkeypatch, method
):
    """The paper's layout: step t's answer token is group t, after its target; merging the
    variants whose hidden prefixes agree needs T + 1 passes for T steps, not one per variant."""
    import reasonlens.analyses.masking as masking

    model = _sharpen(make_model("llama", n_layers=2, seed=5, attn_implementation="sdpa"))
    ids = make_ids([32], seed=8)
    positions = [6, 12, 18, 24, 30]
    steps = [[(n, _top1(model, ids[0], n)) for n in positions]]
    spans = [[n + 1] for n in positions]
    groups = [[spans[:t] for t in range(len(positions))]]
    calls = []
    real = masking._run

    def counting(model_, input_ids, jobs, *args):
        calls.append(len(jobs))
        return real(model_, input_ids, jobs, *args)

    monkeypatch.setattr(masking, "_run", counting)
    merged = masking_impact(model, ids, steps, groups, batch_size=1, method=method)
    assert len(calls) == len(positions) + 1
    calls.clear()
    separate = masking_impact(model, ids, steps, groups, batch_size=1, method=method, merge=False)
    assert len(calls) == 1 + sum(1 + t for t in range(1, len(positions)))
    for name in ("p_unmasked", "p_masked", "p_visible"):
        torch.testing.assert_close(getattr(merged, name), getattr(separate, name), equal_nan=True)
    assert merged.impact_per_example.nan_to_num(0).abs().max() > 1e-3  # the masks matter
