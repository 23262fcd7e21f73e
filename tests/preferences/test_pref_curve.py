"""The instillation curve: letter logits read from the last hidden state equal Hugging Face's,
a point's figures are right on constructed logit differences, and the study writes the curve
from step 0 (the untrained model) to the last step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reasonlens.evaluate.choice import choice_tokens
from reasonlens.models.prompts import tokenize
from reasonlens.models.tiny import tiny_model
from reasonlens.studies.preferences.curve import curve_point
from reasonlens.studies.preferences.curve_callback import letter_logits
from reasonlens.studies.preferences.readout import decision_prompts
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue
from reasonlens.tasks.preferences.scenarios import utility


@pytest.fixture(scope="module")
def scenarios():
    catalogue = load_catalogue()
    names = list(catalogue)[:4]
    targets = {n: T.draw_targets(catalogue[n], 0) for n in names}
    trials = [t for n in names for t in T.draw_trials(catalogue[n], targets[n], 12, 0, "test")]
    return {n: catalogue[n] for n in names}, targets, trials


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_letter_logits_are_hfs_logits_at_the_answer_position(arch, scenarios):
    model = tiny_model(arch, seed=2)
    named, _, trials = scenarios
    prompts = decision_prompts(model.tokenizer, named, trials[:7])
    ids = choice_tokens(model.tokenizer, prompts)
    got = letter_logits(model.hf, model.tokenizer, prompts, ids, batch_size=3)  # left-padded
    for prompt, row in zip(prompts, got, strict=True):
        with torch.no_grad():
            want = model.hf(input_ids=torch.tensor([tokenize(model.tokenizer, prompt)])).logits
        assert row == pytest.approx(want[0, -1, list(ids)].numpy(), abs=1e-4)


def test_a_model_deciding_by_the_targets_scores_full_agreement_and_r_1(scenarios):
    named, targets, trials = scenarios
    exact = np.array([utility(named[t.scenario], targets[t.scenario], t.a) for t in trials]) - [
        utility(named[t.scenario], targets[t.scenario], t.b) for t in trials
    ]
    point = curve_point(named, targets, trials, exact / 50)
    assert point["agreement"] == 1.0
    assert point["r_logit"] == pytest.approx(1.0, abs=1e-6)
    assert point["share_a"] == point["target_share_a"]
    flipped = curve_point(named, targets, trials, -exact / 50)
    assert flipped["agreement"] == 0.0 and flipped["r_logit"] == pytest.approx(-1.0, abs=1e-6)


def test_a_model_ignoring_the_values_has_no_spread_and_no_r(scenarios):
    named, targets, trials = scenarios
    point = curve_point(named, targets, trials, np.full(len(trials), -0.5))
    assert point["within_sd"] == 0.0 and point["share_a"] == 0.0
    assert point["r_logit"] is None  # every slope 0: no weights to correlate
    assert point["agreement"] == pytest.approx(1 - point["target_share_a"])


def test_letter_logits_read_a_lora_wrapped_model_as_it_trains(scenarios):
    """The paper preset instils with LoRA: the callback then gets a PeftModel."""
    from peft import LoraConfig, get_peft_model

    model = tiny_model("llama", seed=3)
    named, _, trials = scenarios
    prompts = decision_prompts(model.tokenizer, named, trials[:4])
    ids = choice_tokens(model.tokenizer, prompts)
    before = letter_logits(model.hf, model.tokenizer, prompts, ids)
    wrapped = get_peft_model(model.hf, LoraConfig(r=2, target_modules="all-linear"))
    assert letter_logits(wrapped, model.tokenizer, prompts, ids) == pytest.approx(before, abs=1e-5)


def _point(step: int, agreement: float, share_a: float) -> dict:
    return {"step": step, "agreement": agreement, "share_a": share_a, "target_share_a": 0.36}


def test_the_report_never_calls_a_one_letter_point_the_best():
    from reasonlens.studies.preferences.report import findings

    def said(curve):
        results = {
            "experiment1": {"instilled": {}, "base": {}, "validation_curve": curve},
            "train": {"instil": {}},
        }
        return next(x for x in findings(results) if x.startswith("held-out curve"))

    # all "B" agrees at 64%, the base rate: not evidence, so not the best point
    one_letter = [_point(0, 0.36, 1.0), _point(25, 0.64, 0.0), _point(50, 0.36, 1.0)]
    assert "every trained point answers one letter" in said(one_letter)
    assert "commoner letter agrees 64.0%" in said(one_letter)
    mixed = [*one_letter, _point(75, 0.58, 0.4)]
    assert "best 58.0% at step 75" in said(mixed)


def test_a_points_null_is_the_spread_of_r_from_shuffled_logits(scenarios):
    """A logit difference that ignores the options still gets an r from 6-parameter fits: the
    null's spread is about 1/sqrt(pairs - 1), and an r that follows the targets clears it."""
    named, targets, trials = scenarios  # 4 scenarios x 12 trials: 20 pairs
    noise = np.random.default_rng(0).normal(size=len(trials))
    point = curve_point(named, targets, trials, noise)
    assert 0.15 < point["r_null_sd"] < 0.32 and point["n_scenarios"] == 4
    assert point["r_null_q95"] > 0.2
    exact = np.array([utility(named[t.scenario], targets[t.scenario], t.a) for t in trials]) - [
        utility(named[t.scenario], targets[t.scenario], t.b) for t in trials
    ]
    signal = curve_point(named, targets, trials, exact / 50 + 0.1 * noise)
    assert signal["r_logit"] > signal["r_null_q95"]
    flat = curve_point(named, targets, trials, np.zeros(len(trials)))
    assert flat["r_null_sd"] is None  # nothing to shuffle


def _mixed_precision(hf):
    """What accelerate does to a model trained in bf16: its forward wrapped in autocast."""
    hf._original_forward = hf.forward

    def forward(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return hf._original_forward(*args, **kwargs)

    hf.forward = forward
    return hf


def test_the_curve_reads_in_float32_under_bf16_training(scenarios):
    """Under the Trainer's bf16 autocast the hidden state would be bf16; the read bypasses it,
    and bf16 weights (a LoRA base) are read in float32, then restored, still trainable."""
    named, _, trials = scenarios
    model = tiny_model("llama", seed=4)
    prompts = decision_prompts(model.tokenizer, named, trials[:6])
    ids = choice_tokens(model.tokenizer, prompts)
    exact = letter_logits(model.hf, model.tokenizer, prompts, ids)
    wrapped = _mixed_precision(model.hf)
    with torch.no_grad():
        enc = torch.tensor([tokenize(model.tokenizer, prompts[0])])
        bf16 = wrapped(input_ids=enc).logits[0, -1, list(ids)].float().numpy()
    assert np.abs(bf16 - exact[0]).max() > 1e-4  # the wrapper does change the numbers
    assert letter_logits(wrapped, model.tokenizer, prompts, ids) == pytest.approx(exact, abs=1e-5)

    narrow = tiny_model("llama", seed=4).hf.to(torch.bfloat16)
    param = next(narrow.parameters())
    widened = letter_logits(narrow, model.tokenizer, prompts, ids)
    reference = tiny_model("llama", seed=4).hf.to(torch.bfloat16).float()
    assert widened == pytest.approx(letter_logits(reference, model.tokenizer, prompts, ids))
    assert all(p.dtype == torch.bfloat16 for p in narrow.parameters())
    assert next(narrow.parameters()) is param  # the same parameters: an optimizer keeps them
    narrow.train()
    narrow(input_ids=enc).logits.float().sum().backward()  # ordinary tensors again
    assert param.grad is not None
