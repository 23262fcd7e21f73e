"""Attention knockout: hidden tokens get exactly zero attention from every later query, and
what a later query computes equals a run in which those tokens are padding (known answers)."""

import pytest
import torch

from reasonlens.analyses.masking import masking_impact
from reasonlens.errors import UserError
from reasonlens.trace import knockout_mask

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_knocked_out_keys_get_exactly_zero_attention_from_later_queries(make_model, make_ids, arch):
    model = make_model(arch, n_layers=3, seed=2)  # eager attention: patterns are returned
    ids = torch.tensor(make_ids([16], seed=4))
    blocked = [3, 7, 8]
    mask = knockout_mask(torch.ones_like(ids), [blocked], model.dtype)
    with torch.no_grad():
        out = model.hf(input_ids=ids, attention_mask=mask, output_attentions=True)
        plain = model.hf(input_ids=ids, output_attentions=True)
    for layer, (att, ref) in enumerate(zip(out.attentions, plain.attentions, strict=True)):
        for j in blocked:
            later = att[0, :, j + 1 :, j]
            assert (later == 0).all(), f"layer {layer}: a later query still reads token {j}"
            assert (att[0, :, j, j] > 0).all(), "a hidden token still attends to itself"
        # queries before the first hidden token are untouched
        assert torch.allclose(att[0, :, :3], ref[0, :, :3], atol=1e-6)
    assert (ref[0][:, 4:, 3] > 0).all(), "the unmasked run does read token 3"


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_what_later_queries_compute_equals_a_run_with_the_tokens_as_padding(
    make_model, make_ids, arch
):
    model = make_model(arch, n_layers=2, seed=3)
    ids = torch.tensor(make_ids([14], seed=5))
    blocked = [2, 5]
    padding = torch.ones_like(ids)
    padding[0, blocked] = 0
    with torch.no_grad():
        knocked = model.hf(
            input_ids=ids,
            attention_mask=knockout_mask(torch.ones_like(ids), [blocked], model.dtype),
        ).logits
        padded = model.hf(input_ids=ids, attention_mask=padding).logits
    later = [i for i in range(14) if i > max(blocked)]
    assert torch.allclose(knocked[0, later], padded[0, later], atol=1e-5)


def test_knockout_mask_with_a_cached_prefix_and_right_padding():
    attention = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    mask = knockout_mask(attention, [[1], []], torch.float32, q_offset=2)
    assert mask.shape == (2, 1, 4, 6)  # the 4 queries after a 2-token prefix
    hidden = mask[:, 0] < 0
    assert hidden[0, :, 1].all() and not hidden[1, :, 1].any()  # key 1 cut in row 0 only
    assert hidden[0, :, 5].all()  # a padding key
    assert hidden[:, 0, 3:].all() and not hidden[1, 3, :].any()  # causal


def test_masking_impact_by_knockout_differs_from_zeroing_keys(make_model, make_ids):
    model = make_model("llama", n_layers=2, seed=6, attn_implementation="sdpa")
    ids = make_ids([22], seed=7)
    steps, groups = [[(10, 5), (20, 9)]], [[[[2, 3]], [[2, 3], [12]]]]
    zeroed = masking_impact(model, ids, steps, groups)
    knocked = masking_impact(model, ids, steps, groups, method="knockout")
    assert torch.allclose(knocked.p_unmasked, zeroed.p_unmasked, atol=1e-6)
    assert not torch.allclose(knocked.p_masked, zeroed.p_masked)
    assert knocked.to_dict()["method"].startswith("attention to the groups")
    shared = masking_impact(model, ids, steps, groups, method="knockout", share_prefix=False)
    assert torch.allclose(shared.impact, knocked.impact, atol=1e-5, equal_nan=True)


def test_knockout_refuses_a_layer_subset_and_an_unknown_method(tiny_llama, make_ids):
    ids = make_ids([12])
    with pytest.raises(UserError, match="every layer"):
        masking_impact(tiny_llama, ids, [[(6, 3)]], [[[[2]]]], layers=[0], method="knockout")
    with pytest.raises(UserError, match="unknown masking method"):
        masking_impact(tiny_llama, ids, [[(6, 3)]], [[[[2]]]], method="hide")


def test_knockout_leaves_no_attention_on_the_history_and_zeroed_keys_do(make_model, make_ids):
    model = make_model("llama", n_layers=2, seed=8)
    ids = make_ids([24], seed=9)
    steps, groups = [[(12, 5), (22, 9)]], [[[[2, 3]], [[2, 3], [14, 15]]]]
    from reasonlens.analyses.masking import history_attention_mass

    knocked = history_attention_mass(model, ids, steps, groups, method="knockout")
    zeroed = history_attention_mass(model, ids, steps, groups, method="zero_keys")
    assert (knocked["hidden"] == 0).all()
    assert (zeroed["hidden"] > 0).all()  # a zero key still gets weight exp(0)
    assert torch.equal(knocked["unmasked"], zeroed["unmasked"])
    assert (knocked["unmasked"] > 0).all()


def test_history_mass_equals_hugging_face_attentions_step_by_step(make_model, make_ids):
    """The batched pass (every step's hidden history in one row) gives what each step's own
    sequence gives in Hugging Face's eager attentions, with nothing hidden and knocked out."""
    from reasonlens.analyses.masking import history_attention_mass
    from reasonlens.trace.interventions import knockout_mask

    model = make_model("llama", n_layers=2, seed=10, attn_implementation="eager")
    ids = make_ids([26], seed=11)
    steps, groups = [[(12, 5), (18, 7), (24, 9)]], [[[[2, 3]], [[2, 3], [14]], []]]
    got = history_attention_mass(model, ids, steps, groups, method="knockout")
    for t, ((n, _gold), visible) in enumerate(zip(steps[0], groups[0], strict=True)):
        hidden = sorted({p for g in visible for p in g})
        if not hidden:
            assert got["hidden"][0, t].isnan() and got["unmasked"][0, t].isnan()
            continue
        x = torch.tensor([ids[0][: n + 1]])
        for key, mask in (
            ("unmasked", None),
            ("hidden", knockout_mask(torch.ones_like(x), [hidden], model.dtype)),
        ):
            with torch.no_grad():
                out = model.hf(input_ids=x, attention_mask=mask, output_attentions=True)
            want = torch.stack([a[0, :, n, hidden].sum(-1).mean() for a in out.attentions])
            assert got[key][0, t].item() == pytest.approx(want.mean().item(), abs=1e-6)
