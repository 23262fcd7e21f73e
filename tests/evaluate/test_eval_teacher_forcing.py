"""Teacher-forced S_step / S_plan against models whose right answers are known."""

from __future__ import annotations

import pytest

from reasonlens.evaluate.task_eval import evaluate_task
from reasonlens.evaluate.teacher_forcing import score_blanks
from reasonlens.tasks import TASKS
from reasonlens.tasks.blocksworld.tokens import encode_example

BW = TASKS["blocksworld"]


def test_an_oracle_scores_every_blank_right_in_one_pass_per_problem(make_oracle, bw_examples):
    oracle = make_oracle()
    result = evaluate_task(oracle, BW, bw_examples, "teacher-forced", batch_size=3, progress=False)
    n_blanks = sum(len(ex.plan) for ex in bw_examples)
    assert result.totals["S_step"] == result.totals["S_plan"] == 1.0
    assert result.totals["n_blanks"] == n_blanks
    assert set(result.totals["step_accuracy"]) == {"1", "2", "3", "4", "5", "6"}
    # one forward pass per problem: 8 problems in batches of 3
    assert [rows for rows, _ in oracle.hf.calls] == [3, 3, 2]
    # byte-level tokenizer: every answer is several tokens, and the totals say so
    assert result.totals["multi_token_answers"] == n_blanks
    assert result.totals["parsed"] is None  # generation did not run
    assert {k: v["S_plan"] for k, v in result.breakdowns["by_level"].items()} == {
        "L1": 1.0,
        "L2": 1.0,
        "L3": 1.0,
    }
    first = result.examples[0]["teacher_forced"]["steps"][0]
    assert first["correct"] and first["predicted"] == first["gold"] == bw_examples[0].plan[0].answer


@pytest.mark.parametrize(("problem", "step"), [(0, 0), (4, 3), (7, 5)])
def test_an_oracle_wrong_on_one_blank_loses_exactly_that_blank(
    make_oracle, tiny_llama, bw_examples, problem, step
):
    enc = encode_example(tiny_llama.tokenizer, bw_examples[problem])
    answer = enc.tokens.steps[step].answer
    # wrong on the last answer token only: a multi-token answer needs all its tokens right
    oracle = make_oracle({enc.input_ids: {answer[1] - 2}})
    result = evaluate_task(oracle, BW, bw_examples, "teacher-forced", batch_size=4, progress=False)
    n_blanks = sum(len(ex.plan) for ex in bw_examples)
    assert result.totals["S_step"] == pytest.approx(1 - 1 / n_blanks, abs=1e-6)
    assert result.totals["S_plan"] == pytest.approx(1 - 1 / len(bw_examples), abs=1e-6)
    tf = result.examples[problem]["teacher_forced"]
    assert [s["correct"] for s in tf["steps"]] == [k != step for k in range(len(tf["steps"]))]
    assert not tf["all_correct"] and tf["n_correct"] == len(tf["steps"]) - 1
    level = f"L{bw_examples[problem].level}"
    n_level = sum(ex.level == bw_examples[problem].level for ex in bw_examples)
    assert result.breakdowns["by_level"][level]["S_plan"] == pytest.approx(
        1 - 1 / n_level, abs=1e-6
    )
    step_acc = result.totals["step_accuracy"][str(step + 1)]
    n_with_step = sum(len(ex.plan) > step for ex in bw_examples)
    assert step_acc == pytest.approx(1 - 1 / n_with_step, abs=1e-6)


def test_a_model_ignoring_per_row_positions_gets_the_same_scores(
    make_oracle, tiny_llama, bw_examples
):
    encoded = [encode_example(tiny_llama.tokenizer, e) for e in bw_examples]
    wrong = {encoded[2].input_ids: {encoded[2].tokens.steps[1].readout}}
    fast, slow = make_oracle(wrong), make_oracle(wrong, per_row_positions=False)
    expected = score_blanks(fast, encoded)
    assert score_blanks(slow, encoded) == expected
    assert [(b.step, b.correct) for b in expected[2]] == [(1, True), (2, False)]
    assert sum(not b.correct for blanks in expected for b in blanks) == 1
    # the fallback computes full logits after the per-row request came back the wrong shape
    assert len(slow.hf.calls) == 2 * len(fast.hf.calls)


def test_batched_teacher_forcing_equals_one_at_a_time(tiny_llama, bw_examples):
    encoded = [encode_example(tiny_llama.tokenizer, e) for e in bw_examples]
    assert len({len(e) for e in encoded}) > 3  # mixed lengths: right padding is exercised
    batched = score_blanks(tiny_llama, encoded, batch_size=8)
    single = score_blanks(tiny_llama, encoded, batch_size=1)
    for b_row, s_row in zip(batched, single, strict=True):
        assert [(b.predicted, b.correct, b.n_tokens) for b in b_row] == [
            (s.predicted, s.correct, s.n_tokens) for s in s_row
        ]
        assert [b.gold_logprob for b in b_row] == pytest.approx(
            [s.gold_logprob for s in s_row], abs=1e-3
        )


def test_the_progress_bar_stays_off_stdout(make_oracle, bw_examples, capsys):
    result = evaluate_task(make_oracle(), BW, bw_examples[:3], "teacher-forced", batch_size=1)
    assert result.totals["S_plan"] == 1.0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "sample"}, "unknown mode 'sample'"), ({"batch_size": 0}, "at least 1")],
)
def test_bad_arguments_are_user_errors(make_oracle, bw_examples, kwargs, message):
    from reasonlens.errors import UserError

    with pytest.raises(UserError, match=message):
        evaluate_task(make_oracle(), BW, bw_examples, progress=False, **kwargs)
    with pytest.raises(UserError, match="no examples"):
        evaluate_task(make_oracle(), BW, [], progress=False)
