"""Difference-in-means directions: a planted direction recovered, exact float64 means streamed
from stores, token windows before spans, shuffled-label controls, and bad inputs."""

import pytest
import torch

from reasonlens.analyses.directions import mean_difference, window_contrast
from reasonlens.errors import UserError
from reasonlens.trace import TraceInput, capture
from reasonlens.trace.capture import Activations


def _inputs(ids):
    return [TraceInput(input_ids=tuple(x)) for x in ids]


@pytest.fixture(scope="module")
def stores(planted, tmp_path_factory):
    a_ids, b_ids = planted.prompts(24)
    root = tmp_path_factory.mktemp("dirs")
    sites = "layers.*.resid_pre layers.*.resid_post"
    a = capture(planted.model, _inputs(a_ids), sites, batch_size=5, out=root / "a", progress=False)
    b = capture(planted.model, _inputs(b_ids), sites, batch_size=7, out=root / "b", progress=False)
    return a, b


def test_a_planted_direction_is_recovered_at_every_layer(planted, stores):
    a, b = stores
    dirs = mean_difference(a, b, positions=[-2, -1], shuffles=3)
    assert dirs.raw.dtype == torch.float64
    cos = dirs.unit[:, 1] @ planted.direction
    assert (cos > 0.99).all(), cos
    # At the input of layer 0 the two sets differ by exactly C e_K.
    s0 = dirs.sites.index("layers.0.resid_pre")
    torch.testing.assert_close(dirs.raw[s0, 1], planted.c * planted.direction, rtol=0, atol=1e-6)
    # The token before the trigger is the same in both sets: no difference there.
    assert dirs.norms[:, 0].max() == 0
    # Shuffled labels mix the two sets: their direction is far shorter.
    assert (dirs.shuffled_norms()[:, :, 1] < 0.8 * dirs.norms[:, 1]).all()
    assert dirs.count_a.tolist() == [24, 24] and dirs.count_b.tolist() == [24, 24]


def test_streamed_float64_means_equal_the_means_of_all_rows(stores):
    a, b = stores
    site = "layers.2.resid_post"
    one = mean_difference(a, b, sites=[site], shuffles=0, chunk=1)
    many = mean_difference(a, b, sites=[site], shuffles=0, chunk=1000)
    direct = a.get(site).double().mean(0) - b.get(site).double().mean(0)
    torch.testing.assert_close(one.raw[0, 0], direct, rtol=0, atol=1e-12)
    torch.testing.assert_close(many.raw[0, 0], direct, rtol=0, atol=1e-12)
    assert one.positions == [None]


def test_in_memory_activations_and_stores_give_the_same_directions(planted, stores):
    a, b = stores
    a_ids, b_ids = planted.prompts(24)
    sites = "layers.1.resid_pre"
    mem_a = capture(planted.model, _inputs(a_ids), sites, progress=False)
    mem_b = capture(planted.model, _inputs(b_ids), sites, progress=False)
    from_store = mean_difference(a, b, sites=[sites], positions=[-1], shuffles=2, seed=3)
    from_memory = mean_difference(mem_a, mem_b, positions=[-1], shuffles=2, seed=3)
    torch.testing.assert_close(from_store.raw, from_memory.raw, rtol=0, atol=1e-12)
    torch.testing.assert_close(from_store.shuffled, from_memory.shuffled, rtol=0, atol=1e-12)


def _hand_made(lengths, d=3):
    """Activations whose row at position p of example e is [e, p, 1] (every position kept)."""
    rows, positions, tokens = [], [], []
    for e, n in enumerate(lengths):
        for p in range(n):
            rows.append([float(e), float(p), 1.0][:d])
            positions.append(p)
        tokens.append(list(range(3, 3 + n)))
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    return Activations(
        sites=["layers.0.resid_post"],
        data={"layers.0.resid_post": torch.tensor(rows)},
        row_offsets=offsets,
        positions_=torch.tensor(positions),
        tokens=tokens,
    )


def test_windows_before_spans_have_the_known_means():
    acts = _hand_made([20, 30])
    # Offset -5, width 2: the window of a span starting at s is tokens s-5 and s-4.
    spans = [[(10, 12)], [(8, 9), 25, 3]]  # example 1's span at 3 has no room: skipped
    dirs = window_contrast(acts, spans, offset=-5, width=2, shuffles=2)
    windows = torch.tensor([[0, 5, 1], [0, 6, 1], [1, 3, 1], [1, 4, 1], [1, 20, 1], [1, 21, 1]])
    every = acts.get("layers.0.resid_post").double()
    expected = windows.double().mean(0) - every.mean(0)
    torch.testing.assert_close(dirs.raw[0, 0], expected, rtol=0, atol=1e-12)
    assert dirs.contrast["skipped_windows"] == {"target": 1, "baseline": 0}
    assert dirs.contrast["windows"] == 6
    # Against windows before a baseline set of spans instead of every token.
    base = window_contrast(acts, spans, -5, 2, baseline_spans=[[15], [10]], shuffles=0)
    baseline = torch.tensor([[0, 10, 1], [0, 11, 1], [1, 5, 1], [1, 6, 1]]).double().mean(0)
    torch.testing.assert_close(base.raw[0, 0], windows.double().mean(0) - baseline)
    # Controls: windows at random starts, so the example and position columns move.
    assert dirs.shuffled.shape == (2, 1, 1, 3)
    assert not torch.allclose(dirs.shuffled[0, 0, 0], dirs.raw[0, 0])


def test_directions_result_protocol(stores, tmp_path):
    from reasonlens.analyses.result import load_per_example, load_record, save_result

    a, b = stores
    dirs = mean_difference(a, b, positions=[-1])
    save_result(tmp_path, "dirs", dirs.to_dict(), dirs.per_example())
    record = load_record(tmp_path, "dirs")
    assert record["analysis"] == "mean_difference" and len(record["norm"]) == len(dirs.sites)
    assert load_per_example(tmp_path, "dirs")["raw"].shape == tuple(dirs.raw.shape)
    assert dirs.plot(tmp_path / "dirs.png").stat().st_size > 0
    torch.testing.assert_close(
        dirs.direction("layers.1.resid_pre", -1, unit=True).norm(), torch.tensor(1.0).double()
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a, b, acts: window_contrast(acts, [[], []], -5, 2), "empty contrast set"),
        (lambda a, b, acts: window_contrast(acts, [[1], [2]], -5, 2), "empty contrast set"),
        (lambda a, b, acts: window_contrast(acts, [[10]], -5, 2), "given for 1 examples"),
        (lambda a, b, acts: window_contrast(acts, [[10], [10]], -5, 0), "width must be"),
        (lambda a, b, acts: mean_difference(a, b, positions=[-40]), "outside its"),
        (lambda a, b, acts: mean_difference(a, b, positions=[]), "no positions"),
        (lambda a, b, acts: mean_difference(a, b, sites=["layers.0.mlp_out"]), "not in"),
    ],
)
def test_bad_contrasts_are_refused_in_one_line(stores, call, message):
    a, b = stores
    with pytest.raises(UserError, match=message) as err:
        call(a, b, _hand_made([20, 30]))
    assert "\n" not in str(err.value)


def test_a_position_that_was_not_captured_is_named(planted, tmp_path):
    a_ids, b_ids = planted.prompts(4)
    last_a = capture(planted.model, _inputs(a_ids), "layers.0.resid_pre", "last", progress=False)
    last_b = capture(planted.model, _inputs(b_ids), "layers.0.resid_pre", "last", progress=False)
    assert mean_difference(last_a, last_b, positions=[-1]).norms[0, 0] > 0
    with pytest.raises(UserError, match="no activations at position -2"):
        mean_difference(last_a, last_b, positions=[-2])
