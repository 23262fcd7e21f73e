"""Steering: every generated token (KV cache on) equals a manual forward that adds a·r at that
layer; alpha 0 is bit for bit no hook; an alpha sweep is one batched generation whose rows equal
separate generations; bad sweeps are refused."""

import dataclasses
import math

import pytest
import torch

from reasonlens.analyses.steering import alpha_sweep, steering
from reasonlens.errors import UserError
from reasonlens.evaluate.generation import generate_tokens
from reasonlens.models.prompts import pad_batch
from reasonlens.models.tiny import tiny_model

# The second prompt is short, so it is left-padded; the first is longer than Gemma's sliding
# window (16), so cached steps cross it.
PROMPTS = [list(range(5, 23)), [30, 31, 32, 33]]
STEPS = 12


def _direction(d=64, seed=3):
    return torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _generate(model, **kwargs):
    batch = pad_batch(PROMPTS, 0, "left")
    return batch, model.hf.generate(
        **batch,
        max_new_tokens=STEPS,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        **kwargs,
    )


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_every_generated_token_equals_a_manual_forward_adding_the_vector(arch):
    torch.set_num_threads(1)
    model = tiny_model(arch, n_layers=3)
    r, alpha = _direction(), 4.0
    with steering(model, "layers.1.resid_pre", r, alpha):
        batch, out = _generate(model)
    width = batch["input_ids"].shape[1]

    # The reference: no cache, the whole sequence again at every step, with a plain PyTorch
    # pre-hook adding alpha * r to the input of layer 1 (no reasonlens code involved).
    vector = alpha * r.float()

    def add(_module, args, kwargs):
        if args:
            return (args[0] + vector, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + vector}

    handle = model.layers[1].register_forward_pre_hook(add, with_kwargs=True)
    try:
        for t in range(STEPS):
            ids = out.sequences[:, : width + t]
            mask = torch.cat([batch["attention_mask"], torch.ones(2, t, dtype=torch.long)], 1)
            with torch.no_grad():
                logits = model.hf(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    use_cache=False,
                ).logits[:, -1]
            torch.testing.assert_close(out.logits[t], logits, rtol=0, atol=1e-5)
            assert torch.equal(out.sequences[:, width + t], logits.argmax(-1)), f"step {t}"
    finally:
        handle.remove()
    _, plain = _generate(model)
    assert not torch.equal(plain.sequences, out.sequences)  # the steering did something


def test_alpha_zero_is_bit_for_bit_no_hook(tiny_llama):
    _, plain = _generate(tiny_llama)
    with steering(tiny_llama, "layers.1.resid_post", _direction(), 0.0):
        _, zero = _generate(tiny_llama)
    assert torch.equal(plain.sequences, zero.sequences)
    assert all(torch.equal(a, b) for a, b in zip(plain.logits, zero.logits, strict=True))


def test_a_sweep_is_one_generation_whose_rows_equal_separate_ones(tiny_llama, tmp_path):
    r = _direction()
    alphas = [0.0, 3.0, -6.0]
    result = alpha_sweep(
        tiny_llama,
        PROMPTS,
        r,
        "layers.1.resid_pre",
        alphas,
        behaviour=lambda text: float(text.count("a")),
        control_prompts=PROMPTS,
        max_new_tokens=STEPS,
        n_random=2,
        controls={"shuffled": _direction(seed=9)},
    )
    assert result.settings["rows"] == len(PROMPTS) * len(alphas) * 4
    # greedy rows at alpha 0 are generated once, for the direction, and shared by the controls
    assert result.settings["rows_generated"] == len(PROMPTS) * (len(alphas) * 4 - 3)
    assert all(result.texts[v][0] == result.texts[0][0] for v in range(4))
    assert (result.length[:, 0] == result.length[0, 0]).all()
    assert result.settings["rows_per_generate"] == result.settings["rows_generated"]  # one call
    sampled = alpha_sweep(  # sampled rows differ by chance: every row is generated
        tiny_llama, PROMPTS, r, "layers.1.resid_pre", alphas, lambda t: 0.0,
        max_new_tokens=STEPS, n_random=2, temperature=1.0,
    )  # fmt: skip
    assert sampled.settings["rows_generated"] == len(PROMPTS) * len(alphas) * 3
    for a, alpha in enumerate(alphas):
        with steering(tiny_llama, "layers.1.resid_pre", r, alpha):
            separate = generate_tokens(tiny_llama, PROMPTS, max_new_tokens=STEPS)
        texts = tiny_llama.tokenizer.batch_decode(separate, skip_special_tokens=True)
        assert result.texts[0][a] == texts
        assert result.length[0, a].tolist() == [len(s) for s in separate]
    # KL to the unsteered distribution: 0 at alpha 0, positive otherwise.
    assert result.kl[:, 0].abs().max() < 1e-12
    assert (result.kl[:, 1:] > 0).all()
    assert result.vectors == ["direction", "random 0", "random 1", "shuffled"]
    # Capped rows per generate call mix alphas and give the same completions.
    capped = alpha_sweep(
        tiny_llama,
        PROMPTS,
        r,
        "layers.1.resid_pre",
        alphas,
        lambda t: 0.0,
        max_new_tokens=STEPS,
        n_random=2,
        batch_size=5,
    )
    assert capped.texts == result.texts[:3]

    assert result.versus_random(3.0).word in ("agrees", "differs", "unclear")
    with pytest.raises(UserError, match="alpha 1.0 was not swept"):
        result.versus_random(1.0)
    record = result.to_dict()
    row = record["per_alpha"][1]
    assert set(row) >= {"alpha", "direction", "random 0", "random_mean", "direction_minus_random"}
    assert row["direction"]["kl"]["low"] <= row["direction"]["kl"]["value"]
    from reasonlens.analyses.result import load_record, save_result

    save_result(tmp_path, "sweep", record, result.per_example())
    assert load_record(tmp_path, "sweep")["alphas"] == alphas
    assert result.plot(tmp_path / "sweep.png").stat().st_size > 0


def test_controls_swept_at_some_alphas_equal_the_full_sweep_there(tiny_llama, tmp_path):
    """`control_alphas`: the direction at every alpha, the controls only where asked (and at
    the shared greedy alpha 0); what is swept equals the full sweep row for row, the rest is
    NaN in the tensors and None in the record, and no verdict is drawn where it is missing."""
    args = dict(
        prompts=PROMPTS, direction=_direction(), site="layers.1.resid_pre",
        alphas=[0.0, 3.0, -6.0], behaviour=lambda text: float(text.count("a")),
        control_prompts=PROMPTS, max_new_tokens=STEPS, n_random=2,
        controls={"shuffled": _direction(seed=9)},
    )  # fmt: skip
    full = alpha_sweep(tiny_llama, **args)
    ends = alpha_sweep(tiny_llama, **args, control_alphas=[-6.0])
    n = len(PROMPTS)
    assert ends.settings["rows_generated"] == n * (3 + 3)  # direction x 3, controls x (-6)
    assert ends.settings["control_alphas"] == [-6.0, 0.0]
    for v in range(4):
        for a in (0, 2):  # alpha 0 (shared) and -6: the full sweep's rows exactly
            assert ends.texts[v][a] == full.texts[v][a]
            assert torch.equal(ends.metric[v, a], full.metric[v, a])
            torch.testing.assert_close(ends.kl[v, a], full.kl[v, a], rtol=0, atol=1e-12)
    assert ends.texts[0][1] == full.texts[0][1]
    assert all(t is None for v in range(1, 4) for t in ends.texts[v][1])
    assert ends.metric[1:, 1].isnan().all() and ends.kl[1:, 1].isnan().all()
    assert ends.length[1:, 1].isnan().all() and not ends.length[0].isnan().any()
    row = ends.to_dict()["per_alpha"][1]
    assert row["random_mean"]["metric"]["value"] is None
    assert row["direction_minus_random"]["low"] is None
    assert row["direction"]["metric"] == full.to_dict()["per_alpha"][1]["direction"]["metric"]
    assert ends.versus_random(-6.0) == full.versus_random(-6.0)
    with pytest.raises(UserError, match="not swept at alpha 3.0"):
        ends.versus_random(3.0)
    # the random controls' dose-response over the alphas they have: (-6, 0)
    flat = torch.zeros_like(ends.metric)
    flat[1:, 1] = math.nan
    flat[1:3, 0] = 1.0  # higher at alpha 0 than at -6: monotone rising
    assert dataclasses.replace(ends, metric=flat).monotone_share("increase", ends.random) == 1.0
    flat[1:3, 0] = 0.0  # flat: not a dose-response
    assert dataclasses.replace(ends, metric=flat).monotone_share("increase", ends.random) == 0.0
    rescored = ends.rescored(lambda i, t: 1.0)
    assert rescored.metric[1:, 1].isnan().all() and (rescored.metric[0] == 1.0).all()
    assert ends.plot(tmp_path / "ends.png").stat().st_size > 0
    with pytest.raises(UserError, match=r"control alphas \[1.0\] are not among"):
        alpha_sweep(tiny_llama, **args, control_alphas=[1.0])


def test_the_verdict_against_random_controls_uses_the_one_vocabulary():
    from reasonlens.analyses.effects import versus_control

    above = {"value": 1.0, "low": 0.5, "high": 2.0}
    assert versus_control(above, "increase").word == "agrees"
    assert versus_control(above, "decrease").word == "differs"
    assert versus_control({"value": 0.1, "low": -0.5, "high": 0.7}, "increase").word == "unclear"
    assert "beats" not in str(versus_control(above, "decrease"))


def test_random_controls_have_the_direction_norm_and_are_seeded():
    from reasonlens.analyses.effects import random_directions

    a = random_directions(64, 3, 2.5, seed=1)
    torch.testing.assert_close(a.norm(dim=1), torch.full((3,), 2.5, dtype=torch.float64))
    assert torch.equal(a, random_directions(64, 3, 2.5, seed=1))
    assert not torch.equal(a, random_directions(64, 3, 2.5, seed=2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alphas": []}, "no alphas given"),
        ({"alphas": [1.0, math.nan]}, "alpha nan is not finite"),
        ({"alphas": [math.inf]}, "alpha inf is not finite"),
        ({"direction": torch.ones(32)}, "width 32 but tiny-llama has width 64"),
        ({"site": "layers.9.resid_pre"}, "layer 9 does not exist"),
        ({"site": "layers.1.q"}, "residual-width site"),
        ({"prompts": []}, "no prompts given"),
    ],
)
def test_bad_sweeps_are_refused_in_one_line(tiny_llama, kwargs, message):
    args = {
        "prompts": PROMPTS,
        "direction": torch.ones(64),
        "site": "layers.1.resid_pre",
        "alphas": [1.0],
        "behaviour": len,
    }
    args.update(kwargs)
    with pytest.raises(UserError, match=message) as err:
        alpha_sweep(tiny_llama, **args, max_new_tokens=2)
    assert "\n" not in str(err.value)


def test_the_kl_bounded_grid_takes_the_largest_alpha_within_the_budget(tiny_llama):
    """The KL at each candidate equals a forward with `steering` against one without; the
    grid is -a..a around the largest candidate whose KL (both signs) is within the budget,
    and the smallest candidate when none is."""
    from reasonlens.analyses.effects import kl, last_logits
    from reasonlens.analyses.steering import kl_bounded_alphas

    torch.set_num_threads(1)
    r, site, candidates = _direction(), "layers.1.resid_post", (0.5, 2.0, 8.0)
    base = last_logits(tiny_llama, PROMPTS)
    manual = []
    for a in candidates:
        pair = []
        for sign in (-1.0, 1.0):
            with steering(tiny_llama, site, r, sign * a):
                pair.append(float(kl(base, last_logits(tiny_llama, PROMPTS)).mean()))
        manual.append(pair)
    assert manual[0][1] < manual[1][1] < manual[2][1]  # a constructed case: KL grows with alpha
    budget = (max(manual[1]) + max(manual[2])) / 2  # 2.0 within, 8.0 beyond
    grid = kl_bounded_alphas(tiny_llama, r, site, PROMPTS, candidates, budget, chat=False)
    for got, want in zip(grid.kl, manual, strict=True):
        assert got == pytest.approx(tuple(want), rel=1e-4, abs=1e-7)
    assert grid.largest == 2.0 and grid.alphas == (-2.0, -1.0, 0.0, 1.0, 2.0)
    tight = kl_bounded_alphas(tiny_llama, r, site, PROMPTS, candidates, 0.0, steps=1, chat=False)
    assert tight.largest == 0.5 and tight.alphas == (-0.5, 0.0, 0.5)
