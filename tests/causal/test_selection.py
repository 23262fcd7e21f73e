"""Direction selection by measured effect (the refusal_direction rule, generalised): the planted
direction is chosen, every candidate's scores and reasons are kept, each filter bites."""

import pytest
import torch

from reasonlens.analyses.directions import mean_difference
from reasonlens.analyses.effects import logit_difference, token_logodds
from reasonlens.analyses.selection import select_direction
from reasonlens.errors import UserError
from reasonlens.trace import TraceInput, capture


@pytest.fixture(scope="module")
def setup(planted):
    a_ids, b_ids = planted.prompts(32, seed=0)
    sites = "layers.*.resid_pre"
    acts_a = capture(
        planted.model, [TraceInput(input_ids=tuple(x)) for x in a_ids], sites, progress=False
    )
    acts_b = capture(
        planted.model, [TraceInput(input_ids=tuple(x)) for x in b_ids], sites, progress=False
    )
    dirs = mean_difference(acts_a, acts_b, positions=[-2, -1])
    val_a, val_b = planted.prompts(10, seed=1)  # a validation split, not the training one
    metric = logit_difference([planted.x] * 10, [13] * 10)
    return dirs, val_a, val_b, metric


def test_the_planted_direction_is_chosen_and_every_candidate_is_kept(planted, setup):
    dirs, val_a, val_b, metric = setup
    sel = select_direction(planted.model, dirs, metric, val_a, val_b, chat=False)
    assert sel.chosen is not None
    chosen = sel.chosen_candidate
    assert chosen.position == -1 and chosen.layer < 3
    cos = sel.direction @ planted.direction / sel.direction.norm()
    assert cos > 0.99
    record = sel.to_dict()
    assert record["n_candidates"] == len(dirs.candidates()) == 8
    assert record["chosen"]["site"] == chosen.site and "lowest ablation score" in record["why"]
    by_site = {(c["site"], c["position"]): c for c in record["candidates"]}
    assert "the direction is zero" in by_site[("layers.0.resid_pre", -2)]["rejected_because"]
    assert any(
        "last 20% of layers" in r for r in by_site[("layers.3.resid_pre", -1)]["rejected_because"]
    )
    # Ablating the layer-0 direction makes each A prompt its B twin: the behaviour is gone
    # exactly, and the B prompts (where it is absent) do not move at all (KL 0).
    s0 = [
        i
        for i, c in enumerate(sel.candidates)
        if c.site == "layers.0.resid_pre" and c.position == -1
    ][0]
    torch.testing.assert_close(sel.ablation[s0], sel.base_add, rtol=0, atol=1e-4)
    assert float(sel.kl[s0].abs().max()) < 1e-9
    assert float(sel.addition[s0].mean()) > float(sel.base_add.mean()) + 10


def test_each_filter_rejects_and_says_why(planted, setup):
    dirs, val_a, val_b, metric = setup
    strict = select_direction(planted.model, dirs, metric, val_a, val_b, kl_max=-1.0, chat=False)
    assert strict.chosen is None and "no candidate passes" in strict.why
    assert all(any("KL" in r for r in why) for why in strict.rejected)
    high = select_direction(planted.model, dirs, metric, val_a, val_b, add_min=1e6, chat=False)
    assert high.chosen is None
    assert all(any("addition score" in r for r in why) for why in high.rejected)
    everything = select_direction(
        planted.model, dirs, metric, val_a, val_b, exclude_last=0.0, chat=False
    )
    assert everything.rule["max_layer"] == planted.model.n_layers - 1


def test_a_refusal_style_metric_runs_and_the_result_saves(planted, setup, tmp_path):
    from reasonlens.analyses.result import load_record, save_result

    dirs, val_a, val_b, _ = setup
    sel = select_direction(
        planted.model, dirs, token_logodds([planted.x]), val_a, val_b, batch_size=7, chat=False
    )
    assert sel.chosen_candidate.position == -1
    save_result(tmp_path, "selection", sel.to_dict(), sel.per_example())
    assert load_record(tmp_path, "selection")["chosen"]["layer"] == sel.chosen_candidate.layer
    assert sel.plot(tmp_path / "selection.png").stat().st_size > 0


def test_directions_of_another_width_are_refused(setup):
    from reasonlens.models.tiny import tiny_model

    dirs, val_a, val_b, metric = setup
    wide = tiny_model("llama", d_model=32)
    with pytest.raises(UserError, match="width 64 but tiny-llama has width 32"):
        select_direction(wide, dirs, metric, val_a, val_b, chat=False)
