"""Extraction rate: a hand-built model whose attention writes the answer at one layer, and an
independent plain computation on random models of every architecture."""

import json

import pytest
import torch

from reasonlens.analyses.extraction import (
    COMPONENTS,
    extraction_rates,
    extraction_rates_by_projection,
    plot_extraction,
)
from reasonlens.errors import UserError
from reasonlens.models.tiny import TINY_ARCHITECTURES
from reasonlens.trace import run_with_cache

pytestmark = pytest.mark.usefixtures("single_thread")

TOK, OTHER = 100, 200  # the answer token; the token the final norm turns it into ("flip")
N_LAYERS, WRITER = 4, 2  # the layer whose attention writes the answer
ATTN, MLP, RESID = (COMPONENTS.index(c) for c in ("attn_out", "mlp_out", "resid_post"))


def _norm_scale(model, norm, scale):
    """Make `norm` multiply its normalised input by `scale` (Gemma's norms multiply by 1 + w)."""
    with torch.no_grad():
        norm.weight.copy_(scale - 1 if model.arch.name == "gemma3" else scale)


def _answer_model(make_model, arch, flip):
    """Only layer WRITER's attention writes anything: its o_proj bias, c * E[TOK] (+ E[OTHER]/2).

    Embeddings, every o_proj/down_proj weight and every other o_proj bias are zero, so each
    other attention output and every MLP output is exactly 0, and the residual stream is 0
    before WRITER and the written vector from WRITER on. E[TOK] and E[OTHER] are orthogonal
    and longer than every other unembedding row, so E·h picks TOK. With `flip`, the final
    norm scales E[TOK]'s half of the dimensions by 0.1: the model's own answer e* is OTHER.
    """
    model = make_model(arch, n_layers=N_LAYERS, attention_bias=True)
    d = model.d_model
    half = d // 2
    with torch.no_grad():
        model.hf.get_input_embeddings().weight.zero_()
        for layer in model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            attn.o_proj.weight.zero_()
            attn.o_proj.bias.zero_()
            mlp.down_proj.weight.zero_()
        unembed = model.unembed.weight
        size = 4 * unembed.norm(dim=1).max()
        unembed[TOK] = 0
        unembed[TOK, :half] = size / half**0.5
        unembed[OTHER] = 0
        unembed[OTHER, half:] = size / half**0.5
        written = unembed[TOK] + (0.5 * unembed[OTHER] if flip else 0)
        model.layers[WRITER].self_attn.o_proj.bias.copy_(10 * written / written.norm())
        for layer in model.layers:  # Gemma's sandwich norms: plain RMS scaling
            for name in ("post_attention_layernorm", "post_feedforward_layernorm"):
                if hasattr(layer, name):
                    _norm_scale(model, getattr(layer, name), torch.ones(d))
    scale = torch.ones(d)
    if flip:
        scale[:half] = 0.1
    _norm_scale(model, model.final_norm, scale)
    return model


def _expected(extracts):
    """hits[layer, component] for a model that extracts the answer at WRITER, or never."""
    hits = torch.zeros(N_LAYERS, len(COMPONENTS), dtype=torch.bool)
    if extracts:
        hits[WRITER, ATTN] = True
        hits[WRITER:, RESID] = True
    return hits


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("projection", ["raw", "gain", "final_norm"])
def test_attention_writing_the_answer_at_one_layer_is_extracted_there(
    make_model, make_ids, arch, flip, projection
):
    model = _answer_model(make_model, arch, flip)
    ids = make_ids([12, 9, 15])
    readouts = [[3, 7, 11], [2, 8], [14]]
    result = extraction_rates(model, ids, readouts, projection=projection, batch_size=2)

    answer = OTHER if flip else TOK
    assert result.predictions.tolist() == [[answer] * 3, [answer] * 2 + [-1], [answer, -1, -1]]
    assert result.counts.tolist() == [3, 2, 1]
    # without the final norm's gain, the raw projection says TOK: the answer only if no flip
    extracts = projection != "raw" or not flip
    expected = _expected(extracts)
    assert result.rates.shape == (3, N_LAYERS, len(COMPONENTS))
    for step in range(3):
        torch.testing.assert_close(result.rates[step], expected.float())
    torch.testing.assert_close(result.mean, expected.float())
    assert result.std.abs().max() == 0
    assert ("final norm applied" in result.projection) == (projection == "final_norm")
    assert result.to_dict()["variant"] == projection


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_matches_a_plain_argmax_over_cached_activations(make_model, make_ids, arch):
    model = make_model(arch, n_layers=3, seed=1)
    with torch.no_grad():  # a non-trivial final norm, so that the two projections differ
        model.final_norm.weight.uniform_(-0.8, 1.0, generator=torch.Generator().manual_seed(2))
    ids = make_ids([20, 11, 17, 6], seed=3)
    readouts = [[4, 10, 19], [0, 10], [16, 3, 8], [5]]
    results = {
        norm: extraction_rates(
            model, ids, readouts, projection="final_norm" if norm else "raw", batch_size=3
        )
        for norm in (False, True)
    }

    weight = model.unembed.weight
    sites = " ".join(f"layers.*.{c}" for c in COMPONENTS)
    checked = 0
    for e, (x, rows) in enumerate(zip(ids, readouts, strict=True)):
        logits, cache = run_with_cache(model, {"input_ids": torch.tensor([x])}, sites)
        for s, r in enumerate(rows):
            answer = int(logits[0, r].argmax())
            for norm, result in results.items():
                assert int(result.predictions[e, s]) == answer
                for layer in range(model.n_layers):
                    for c, comp in enumerate(COMPONENTS):
                        h = cache[f"layers.{layer}.{comp}"][0, r]
                        if norm:
                            with torch.no_grad():
                                h = model.final_norm(h)
                        hit = int((weight @ h).argmax()) == answer
                        assert bool(result.hits[e, s, layer, c]) == hit, (e, s, layer, comp, norm)
                        checked += hit
    assert checked > 0  # some events happen, so the comparison covers both outcomes
    # the logit lens of the last layer is the model's own output
    last = results[True].rates[:, -1, COMPONENTS.index("resid_post")]
    assert torch.equal(last, torch.ones_like(last))


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_deterministic_json_and_plot(make_model, make_ids, tmp_path, arch):
    model = make_model(arch, n_layers=3)
    ids = make_ids([25, 30])
    readouts = [[5, 12, 24], [7, 29]]
    first = extraction_rates(model, ids, readouts)
    second = extraction_rates(model, ids, readouts, batch_size=1)
    assert torch.equal(first.hits, second.hits)
    record = first.to_dict()
    json.dumps(record, allow_nan=False)
    assert record["examples_per_step"] == [2, 2, 1]
    assert len(record["mean"]) == 3 and len(record["mean"][0]) == 3
    out = plot_extraction(first, tmp_path / "plots" / "extraction.png", title="tiny")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_are_refused(tiny_llama, make_ids):
    ids = make_ids([10])
    with pytest.raises(UserError, match="outside its 10 tokens"):
        extraction_rates(tiny_llama, ids, [[10]])
    with pytest.raises(UserError, match="given for 2 examples"):
        extraction_rates(tiny_llama, ids, [[1], [2]])
    with pytest.raises(UserError, match="no readout"):
        extraction_rates(tiny_llama, ids, [[]])


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_the_gain_alone_equals_the_logit_lens_for_an_rms_norm(make_model, make_ids, arch):
    """RMSNorm(h) = g * h / rms(h): a positive scalar away from g * h, so the argmax (and so
    every extraction event) is the same; a LayerNorm (gpt2) also centres h, and may differ."""
    model = make_model(arch, n_layers=3, seed=4)
    with torch.no_grad():
        model.final_norm.weight.uniform_(-0.8, 1.0, generator=torch.Generator().manual_seed(5))
    ids = make_ids([18, 13], seed=6)
    readouts = [[3, 9, 17], [4, 12]]
    gain = extraction_rates(model, ids, readouts, projection="gain")
    lens = extraction_rates(model, ids, readouts, projection="final_norm")
    if isinstance(model.final_norm, torch.nn.LayerNorm):
        assert gain.variant == "gain"  # centring and bias: no identity to check
    else:
        assert torch.equal(gain.hits, lens.hits)
    # all three from one forward pass per batch: the same events as one projection at a time
    every = extraction_rates_by_projection(model, ids, readouts, ("raw", "gain", "final_norm"))
    raw = extraction_rates(model, ids, readouts, projection="raw")
    for name, alone in (("raw", raw), ("gain", gain), ("final_norm", lens)):
        assert every[name].projection == alone.projection
        assert torch.equal(every[name].hits, alone.hits)
        assert torch.equal(every[name].predictions, alone.predictions)


def test_an_outlier_dimension_is_named_with_its_gain(make_model, make_ids):
    """A residual dimension a hundred times larger than the rest, which the final norm's
    gain flips: the raw projection reads it, and the result names it."""
    model = make_model("llama", n_layers=2, seed=7)
    with torch.no_grad():
        model.layers[-1].mlp.down_proj.bias = torch.nn.Parameter(torch.zeros(model.d_model))
        model.layers[-1].mlp.down_proj.bias[5] = 300.0
        model.final_norm.weight[5] = -1.26
    ids = make_ids([12], seed=8)
    result = extraction_rates(model, ids, [[4, 11]])
    outliers = result.outliers()
    assert [o["dim"] for o in outliers] == [5]
    assert outliers[0]["gain"] == pytest.approx(-1.26, abs=1e-3)
    assert result.to_dict()["outlier_dims"] == outliers


def test_an_unknown_projection_is_refused(tiny_llama, make_ids):
    with pytest.raises(UserError, match="unknown projection 'lens'"):
        extraction_rates(tiny_llama, make_ids([6]), [[2]], projection="lens")
