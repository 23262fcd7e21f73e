"""Patching: every batched grid cell equals one intervention by the existing tools, patching every
site from run B into run A reproduces B, the second-clean-run control changes nothing, path
patching equals its definition, bad pairs and nodes are refused."""

import pytest
import torch

from reasonlens.analyses.effects import logit_difference
from reasonlens.analyses.patching import (
    PATCH_SITES,
    Cell,
    _cached,
    activation_patching,
    patched_metric,
    path_patching,
)
from reasonlens.errors import UserError
from reasonlens.models.tiny import tiny_model
from reasonlens.trace import Replace, intervene, run_with_cache

N_PAIRS, LENGTH = 3, 7


def _pairs(seed=1):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(5, 200, (N_PAIRS, LENGTH), generator=gen)
    corrupt = clean.clone()
    corrupt[:, 2] = torch.randint(5, 200, (N_PAIRS,), generator=gen)
    return clean, corrupt


METRIC = logit_difference([10, 11, 12], [20, 21, 22])


def _metric_with(model, ids, *interventions):
    with intervene(model, *interventions):
        logits, _ = run_with_cache(model, {"input_ids": ids}, "layers.0.resid_pre")
    return METRIC(logits[:, -1], torch.arange(len(ids))).double()


@pytest.fixture(scope="module", params=["llama", "gemma3", "gpt2"])
def patched(request):
    torch.set_num_threads(1)
    model = tiny_model(request.param, n_layers=3)
    clean, corrupt = _pairs()
    result = activation_patching(
        model, clean.tolist(), corrupt.tolist(), METRIC, sites=PATCH_SITES, batch_size=16
    )
    return model, clean, corrupt, result


def test_grid_cells_equal_single_interventions(patched):
    model, clean, corrupt, result = patched
    hd = model.d_model // 4
    _, clean_cache = run_with_cache(model, {"input_ids": clean}, "layers.1.attn_out layers.2.z")
    _, corrupt_cache = run_with_cache(model, {"input_ids": corrupt}, "layers.2.z layers.0.mlp_out")
    # denoising one vector site at one position
    ref = _metric_with(
        model, corrupt, Replace("layers.1.attn_out", [4], value=clean_cache["layers.1.attn_out"])
    )
    i = result.cells.index(Cell("attn_out", 1, 4))
    torch.testing.assert_close(result.values["denoise"][i], ref, rtol=0, atol=1e-6)
    # denoising one head (the columns of o_proj's input that belong to it) at one position
    mixed = corrupt_cache["layers.2.z"].clone()
    mixed[:, 6, hd : 2 * hd] = clean_cache["layers.2.z"][:, 6, hd : 2 * hd]
    ref = _metric_with(model, corrupt, Replace("layers.2.z", value=mixed))
    i = result.cells.index(Cell("z", 2, 6, 1))
    torch.testing.assert_close(result.values["denoise"][i], ref, rtol=0, atol=1e-6)
    # noising
    ref = _metric_with(
        model, clean, Replace("layers.0.mlp_out", [2], value=corrupt_cache["layers.0.mlp_out"])
    )
    i = result.cells.index(Cell("mlp_out", 0, 2))
    torch.testing.assert_close(result.values["noise"][i], ref, rtol=0, atol=1e-6)


def test_the_grid_has_its_shape_and_known_cells(patched):
    model, clean, corrupt, result = patched
    assert result.grid("denoise", "resid_pre").shape == (3, LENGTH)
    assert result.grid("noise", "z").shape == (3, 4, LENGTH)
    # Before the corrupted token nothing differs: patching there changes nothing.
    before = result.grid("denoise", "resid_pre")[:, :2]
    torch.testing.assert_close(before, torch.full_like(before, float(result.corrupt.mean())))
    # The whole residual stream at the corrupted token, at layer 0, carries all of it.
    restored = result.grid("denoise", "resid_pre", normalized=True)[0, 2]
    torch.testing.assert_close(restored, torch.tensor(1.0, dtype=restored.dtype), atol=1e-4, rtol=0)
    assert result.control["max_abs_change"] < 1e-5


def test_patching_every_site_from_b_into_a_reproduces_b(patched):
    model, clean, corrupt, _ = patched
    sites = [f"layers.{x}.{s}" for x in range(model.n_layers) for s in PATCH_SITES]
    logits_b, cache_b = _cached(model, corrupt, sites, LENGTH - 1, 8)
    every = [
        Cell(s, x, p, h)
        for x in range(model.n_layers)
        for s in PATCH_SITES
        for h in (range(4) if s == "z" else [None])
        for p in range(LENGTH)
    ]
    _, logits = patched_metric(
        model, clean, cache_b, [every] * N_PAIRS, torch.arange(N_PAIRS), METRIC, LENGTH - 1, 8
    )
    torch.testing.assert_close(logits, logits_b, rtol=0, atol=1e-6)


def test_path_patching_to_the_next_layer_input_is_activation_patching(tiny_llama):
    clean, corrupt = _pairs()
    result = path_patching(
        tiny_llama,
        clean.tolist(),
        corrupt.tolist(),
        METRIC,
        ["layers.0.attn_out", "layers.0.mlp_out"],
        ["layers.1.resid_pre"],
    )
    for i, site in enumerate(("layers.0.attn_out", "layers.0.mlp_out")):
        _, cache = run_with_cache(tiny_llama, {"input_ids": corrupt}, site)
        ref = _metric_with(tiny_llama, clean, Replace(site, value=cache[site]))
        torch.testing.assert_close(result.values[i], ref, rtol=0, atol=1e-6)


def test_path_patching_a_head_to_a_query_follows_the_definition():
    torch.set_num_threads(1)
    model = tiny_model("llama", n_layers=3)
    clean, corrupt = _pairs()
    hd = model.d_model // 4
    result = path_patching(
        model, clean.tolist(), corrupt.tolist(), METRIC, ["layers.0.z.1"], ["layers.2.q.3"]
    )
    # By hand with the existing tools: (1) clean run, every z frozen at clean except the
    # sender head from the corrupt run; record layer 2's query; (2) clean run with only the
    # receiver head's query columns from (1).
    zs = " ".join(f"layers.{x}.z" for x in range(3))
    _, clean_cache = run_with_cache(model, {"input_ids": clean}, f"{zs} layers.2.q")
    _, corrupt_cache = run_with_cache(model, {"input_ids": corrupt}, "layers.0.z")
    frozen = [Replace(f"layers.{x}.z", value=clean_cache[f"layers.{x}.z"]) for x in (1, 2)]
    sender = clean_cache["layers.0.z"].clone()
    sender[..., hd : 2 * hd] = corrupt_cache["layers.0.z"][..., hd : 2 * hd]
    with intervene(model, Replace("layers.0.z", value=sender), *frozen):
        _, step1 = run_with_cache(model, {"input_ids": clean}, "layers.2.q")
    query = clean_cache["layers.2.q"].clone()
    query[..., 3 * hd :] = step1["layers.2.q"][..., 3 * hd :]
    ref = _metric_with(model, clean, Replace("layers.2.q", value=query))
    torch.testing.assert_close(result.values[0], ref, rtol=0, atol=1e-6)
    assert (result.values[0] - result.clean).abs().max() > 1e-6  # the path carries something
    record = result.to_dict()
    assert record["senders"][0]["sender"] == "layers.0.z.1"


def test_results_save_and_plot(tiny_llama, tmp_path):
    from reasonlens.analyses.result import load_record, save_result

    clean, corrupt = _pairs()
    result = activation_patching(
        tiny_llama, clean.tolist(), corrupt.tolist(), METRIC, sites=["resid_pre", "z"]
    )
    save_result(tmp_path, "patching", result.to_dict(), result.per_example())
    record = load_record(tmp_path, "patching")
    assert len(record["grids"]["denoise"]["z"]["mean"]) == tiny_llama.n_layers
    assert result.plot(tmp_path / "patching.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"corrupt": [[5, 6, 7]] * 3},
            "pair 0: the clean prompt has 7 tokens and the corrupt one 3",
        ),
        ({"clean": [[5] * 7] * 2}, "2 clean prompts but 3 corrupt prompts"),
        ({"sites": ["q"]}, "unknown patching site"),
        ({"layers": [3]}, "layer 3 does not exist"),
        ({"positions": [7]}, "position 7 is outside"),
        ({"directions": ["sideways"]}, "unknown patching direction"),
        ({"read_position": 9}, "read position 9"),
    ],
)
def test_bad_patching_inputs_are_refused_in_one_line(tiny_llama, kwargs, message):
    clean, corrupt = _pairs()
    args = {"clean": clean.tolist(), "corrupt": corrupt.tolist()}
    args.update(kwargs)
    with pytest.raises(UserError, match=message) as err:
        activation_patching(tiny_llama, metric=METRIC, **args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("senders", "receivers", "message"),
    [
        (["layers.1.z.0"], ["layers.1.q.0"], "is not after sender"),
        (["layers.0.z"], ["layers.1.q.0"], "give a head"),
        (["layers.0.z.9"], ["layers.1.q.0"], "head 9 does not exist"),
        (["layers.0.z.0"], ["layers.1.k.3"], "head 3 does not exist \\(2 heads\\)"),
        (["layers.0.q.0"], ["layers.1.q.0"], "a sender is one of"),
        (["layers.0.z.0"], [], "no receivers"),
        (["blocks.0"], ["layers.1.q.0"], "bad node"),
    ],
)
def test_bad_path_nodes_are_refused(tiny_llama, senders, receivers, message):
    clean, corrupt = _pairs()
    with pytest.raises(UserError, match=message):
        path_patching(tiny_llama, clean.tolist(), corrupt.tolist(), METRIC, senders, receivers)
