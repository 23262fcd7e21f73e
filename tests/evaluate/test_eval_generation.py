"""Batched generation, and a task evaluation scoring what the generator returns.

(Where a Blocksworld plan ends and the verdicts on it: tests/tasks/test_blocksworld_task.py.)
"""

from __future__ import annotations

import pytest
import torch

from reasonlens.evaluate import task_eval
from reasonlens.evaluate.generation import generate, generate_tokens
from reasonlens.evaluate.task_eval import evaluate_task
from reasonlens.tasks import TASKS
from reasonlens.testing import illegal_plan, longer_plan

BW = TASKS["blocksworld"]


def test_evaluate_task_scores_what_the_generator_returns(tiny_llama, bw_examples, monkeypatch):
    examples = bw_examples[:4]
    outputs = [
        examples[0].completion + "\n\nRule:\nYou can pick-up",  # the gold plan, then chatter: cut
        longer_plan(examples[1]),
        illegal_plan(examples[2]),
        "Let me think about it.\nstep 1: pick-up red",
    ]
    by_prompt = {ex.prompt: out for ex, out in zip(examples, outputs, strict=True)}
    tok = tiny_llama.tokenizer
    seen = {}

    def fake_generate_tokens(model, prompts, max_new_tokens, batch_size, chat, stop, on_batch):
        seen.update(max_new_tokens=max_new_tokens, chat=chat, stop=stop)
        return [tok(by_prompt[p], add_special_tokens=False)["input_ids"] for p in prompts]

    monkeypatch.setattr(task_eval, "generate_tokens", fake_generate_tokens)
    result = evaluate_task(tiny_llama, BW, examples, "generate", batch_size=2, progress=False)
    assert seen["chat"] is False and seen["stop"] == BW.stop
    assert seen["max_new_tokens"] > max(len(tok(ex.completion)["input_ids"]) for ex in examples)
    verdicts = [r["verdicts"] for r in result.examples]
    assert [v["parsed"] for v in verdicts] == [True, True, True, False]
    assert [v["legal"] for v in verdicts] == [True, True, False, False]
    assert [v["goal_reached"] for v in verdicts] == [True, True, False, False]
    assert [v["optimal"] for v in verdicts] == [True, False, False, False]
    assert [v["exact_match"] for v in verdicts] == [True, False, False, False]
    assert result.examples[0]["output"] == examples[0].completion
    assert result.examples[0]["raw_output"] == outputs[0]
    assert result.examples[3]["output"] == "Let me think about it."
    totals = result.totals
    assert (totals["parsed"], totals["legal"], totals["goal_reached"]) == (0.75, 0.5, 0.5)
    assert (totals["optimal"], totals["exact_match"]) == (0.25, 0.25)
    assert totals["S_step"] is None and totals["S_plan"] is None
    assert result.breakdowns["by_blocks"]["4"]["optimal"] == pytest.approx(1 / 3, abs=1e-6)
    assert result.timings["generated_tokens"] == sum(len(tok(o)["input_ids"]) for o in outputs)


def test_max_new_tokens_is_passed_through_when_given(tiny_llama, bw_examples, monkeypatch):
    seen = {}

    def fake(model, prompts, max_new_tokens, **kwargs):
        seen["max_new_tokens"] = max_new_tokens
        return [[] for _ in prompts]

    monkeypatch.setattr(task_eval, "generate_tokens", fake)
    result = evaluate_task(
        tiny_llama, BW, bw_examples[:2], "generate", max_new_tokens=7, progress=False
    )
    assert seen["max_new_tokens"] == 7 == result.settings["max_new_tokens"]
    assert result.totals["parsed"] == 0.0  # empty outputs


def test_batched_generation_equals_one_at_a_time(tiny_llama, bw_examples):
    prompts = [ex.prompt for ex in bw_examples[::2]]
    assert len({len(p) for p in prompts}) > 1  # different lengths: left padding is exercised
    batched = generate_tokens(tiny_llama, prompts, max_new_tokens=12, batch_size=4, chat=False)
    single = generate_tokens(tiny_llama, prompts, max_new_tokens=12, batch_size=1, chat=False)
    assert batched == single
    assert generate(tiny_llama, prompts, 12, 4, chat=False) == tiny_llama.tokenizer.batch_decode(
        batched, skip_special_tokens=True
    )


def test_a_stop_rule_ends_each_row_at_the_token_where_it_fires(tiny_llama, bw_examples):
    prompts = [ex.prompt for ex in bw_examples[:3]]
    tok = tiny_llama.tokenizer
    calls = []

    def stop(text):
        calls.append(text)
        return len(text) >= 3

    def count(n):
        calls.append(n)

    out = generate_tokens(tiny_llama, prompts, 30, 3, chat=False, stop=stop, on_batch=count)
    full = generate_tokens(tiny_llama, prompts, 30, 3, chat=False)
    for ids, whole in zip(out, full, strict=True):
        assert whole[: len(ids)] == ids
        assert len(tok.decode(ids)) >= 3 > len(tok.decode(ids[:-1]))
    assert calls[-1] == 3  # on_batch got the batch size


def test_sampling_is_seeded_and_temperature_zero_is_greedy(tiny_llama):
    prompts = ["Plan:\n", "Init state:\n<red>\n", "Goal state:\n"]
    greedy = generate_tokens(tiny_llama, prompts, max_new_tokens=12, batch_size=2, chat=False)
    again = generate_tokens(
        tiny_llama, prompts, max_new_tokens=12, batch_size=2, chat=False, temperature=0.0, seed=5
    )
    assert again == greedy  # the seed plays no part in greedy decoding
    sample = generate_tokens(
        tiny_llama, prompts, max_new_tokens=12, batch_size=2, chat=False, temperature=1.5, seed=3
    )
    same = generate_tokens(
        tiny_llama, prompts, max_new_tokens=12, batch_size=2, chat=False, temperature=1.5, seed=3
    )
    other = generate_tokens(
        tiny_llama, prompts, max_new_tokens=12, batch_size=2, chat=False, temperature=1.5, seed=4
    )
    assert sample == same and sample != other and sample != greedy
    before = torch.random.get_rng_state()
    generate_tokens(tiny_llama, prompts[:1], max_new_tokens=4, chat=False, temperature=1.0)
    assert torch.equal(torch.random.get_rng_state(), before)  # a private RNG state
    with pytest.raises(ValueError, match="temperature"):
        generate_tokens(tiny_llama, prompts, temperature=-1.0)
