"""End to end on the real default model (SmolLM2-135M-Instruct, from its pip package)."""

import pytest
import torch

from reasonlens.evaluate.generation import generate
from reasonlens.models.prompts import format_prompt, pad_batch, tokenize
from reasonlens.trace import capture, run_with_cache

pytestmark = pytest.mark.slow


def test_it_answers_the_capital_of_france(default_model):
    answers = generate(
        default_model, ["What is the capital of France?", "Say hello."], max_new_tokens=16
    )
    assert "Paris" in answers[0]


def test_batched_left_padded_generation_equals_one_at_a_time(default_model):
    prompts = ["What is the capital of France?", "Name a colour.", "Count to three."]
    batched = generate(default_model, prompts, max_new_tokens=12, batch_size=3)
    single = [generate(default_model, [p], max_new_tokens=12)[0] for p in prompts]
    assert batched == single


def test_real_model_site_map(default_model):
    text = format_prompt(default_model.tokenizer, "What is the capital of France?")
    batch = pad_batch(
        [tokenize(default_model.tokenizer, text)], default_model.tokenizer.pad_token_id
    )
    with torch.no_grad():
        reference = default_model.hf(**batch).logits
    logits, cache = run_with_cache(
        default_model,
        batch,
        "layers.*.resid_pre layers.*.attn_out layers.*.mlp_out layers.*.resid_post",
    )
    assert torch.equal(logits, reference)
    for layer in (0, 15, 29):
        parts = sum(cache[f"layers.{layer}.{s}"] for s in ("resid_pre", "attn_out", "mlp_out"))
        torch.testing.assert_close(parts, cache[f"layers.{layer}.resid_post"], atol=1e-4, rtol=1e-5)
    # the final norm + unembedding of the last resid_post is the model's own output
    final = default_model.unembed(default_model.final_norm(cache["layers.29.resid_post"]))
    torch.testing.assert_close(final, logits, atol=1e-4, rtol=1e-5)


def test_capture_last_token_on_real_model(default_model):
    acts = capture(
        default_model,
        ["The capital of France is"],
        "layers.*.resid_post",
        positions="last",
        progress=False,
    )
    last = acts.get("layers.29.resid_post")
    token = default_model.unembed(default_model.final_norm(last)).argmax(-1).item()
    assert default_model.tokenizer.decode([token]).strip() == "Paris"
