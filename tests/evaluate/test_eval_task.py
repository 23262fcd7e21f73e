"""The evaluation knows no task: a toy task gets the same files, tables and errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from reasonlens.errors import UserError
from reasonlens.evaluate import task_eval
from reasonlens.evaluate.summary import columns, eval_summary, score_rows
from reasonlens.evaluate.task_eval import evaluate_task, load_items, summarise, write_eval
from reasonlens.evaluate.teacher_forcing import score_blanks
from reasonlens.runs import RunDir
from reasonlens.tasks import Breakdown, Task, TaskItem


class Sums(Task):
    """``a+b=`` -> `` c``; right when the number is."""

    name, title, description = "sums", "Arithmetic", "add two numbers"
    metrics = ("number", "right")
    headers = {"right": "ok"}
    breakdowns = {"by_size": Breakdown(lambda labels: str(labels["size"]), "{} digits")}
    noun = "sums"
    notes = ("right: the number is the sum",)
    expected = "expected sums JSONL"

    def item(self, obj):
        if isinstance(obj, TaskItem):
            return obj
        a, b = obj
        prompt = f"{a}+{b}="
        completion = f" {a + b}"
        span = (len(prompt) + 1, len(prompt) + len(completion))
        labels = {"size": len(str(a + b))}
        return TaskItem(f"{a}+{b}", prompt, completion, {"answers": (span,)}, labels, "g")

    def read(self, path):
        text = Path(path).read_text()
        if "bad" in text:
            raise UserError(f"{path}:1: not a sum")
        return [self.item(tuple(json.loads(line))) for line in text.splitlines()]

    def recognizes(self, record):
        return False

    def score(self, item, completion):
        number = completion.strip().isdigit()
        return {"number": number, "right": completion == item.completion, "extra": 1}

    def cut(self, text):
        return text.split("\n")[0]


SUMS = [(2, 3), (40, 2), (7, 8), (55, 45)]


def test_a_toy_task_is_evaluated_written_and_summarised(make_oracle, monkeypatch, tmp_path):
    task = Sums()
    outputs = {"2+3=": " 5\nmore", "40+2=": " 41", "7+8=": " 15", "55+45=": " lots"}
    tok = make_oracle().tokenizer
    seen = {}

    def fake(model, prompts, max_new_tokens, batch_size, chat, stop, on_batch):
        seen.update(stop=stop, max_new_tokens=max_new_tokens)
        return [tok(outputs[p], add_special_tokens=False)["input_ids"] for p in prompts]

    monkeypatch.setattr(task_eval, "generate_tokens", fake)
    result = evaluate_task(make_oracle(), task, SUMS, batch_size=3, progress=False)
    assert seen["stop"] == task.stop
    assert seen["max_new_tokens"] == len(" 100") + 2  # the longest sum, EOS; no "steps" spans
    totals = result.totals
    assert (totals["number"], totals["right"]) == (0.75, 0.5) and "extra" not in totals
    assert totals["S_step"] == totals["S_plan"] == 1.0 and totals["n_blanks"] == 4
    assert list(result.breakdowns) == ["by_size"]
    assert {k: v["n"] for k, v in result.breakdowns["by_size"].items()} == {"1": 1, "2": 2, "3": 1}
    record = result.examples[0]
    assert list(record)[:5] == ["id", "index", "size", "prompt", "gold"]
    assert record["output"] == " 5" and record["raw_output"] == " 5\nmore"
    assert result.settings["stop"] == task.stop_rule

    assert columns(task)[1:4] == (("number", "number"), ("ok", "right"), ("S_step", "S_step"))
    assert [label for label, _ in score_rows(result)] == ["1 digits", "2 digits", "3 digits", "all"]
    text = eval_summary(result)
    assert text.startswith("# Arithmetic evaluation: oracle\n")
    assert "; 4 sums, 4 blanks" in text and "- right: the number is the sum" in text

    run = RunDir.create(tmp_path / "run", "eval", {"data": ["sums.jsonl"]})
    write_eval(result, run)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert list(results) == [
        "model", "data", "mode", "settings", "totals", "by_size", "timings"
    ]  # fmt: skip
    assert results["data"] == ["sums.jsonl"]
    lines = (tmp_path / "run" / "examples.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["2+3", "40+2", "7+8", "55+45"]
    # the data files come from the run's config when the result does not name them
    assert (tmp_path / "run" / "summary.md").read_text() == eval_summary(result)
    assert "- data: `sums.jsonl`" in eval_summary(result)


def test_summarise_reads_only_the_named_metrics():
    records = [{"verdicts": {"a": True, "b": False}}, {"verdicts": {"a": False, "b": False}}]
    out = summarise(records, ["b", "a"])
    assert list(out)[:3] == ["n", "b", "a"] and (out["a"], out["b"]) == (0.5, 0.0)
    assert out["S_step"] is None and out["multi_token_answers"] is None


def test_score_blanks_needs_only_input_ids_and_answers(make_oracle):
    oracle = make_oracle()
    ids = tuple(oracle.tokenizer("ab=cd", add_special_tokens=False)["input_ids"])
    item = SimpleNamespace(input_ids=ids, answers=((3, 4), (4, 5)))
    [blanks] = score_blanks(oracle, [item])
    assert [(b.step, b.gold, b.correct, b.n_tokens) for b in blanks] == [
        (1, "c", True, 1),
        (2, "d", True, 1),
    ]
    assert score_blanks(oracle, [SimpleNamespace(input_ids=ids, answers=())]) == [[]]


def test_load_items_names_the_file_and_what_the_task_expects(tmp_path):
    task = Sums()
    good, bad, empty = tmp_path / "good.jsonl", tmp_path / "bad.jsonl", tmp_path / "empty.jsonl"
    good.write_text("[1, 2]\n[3, 4]\n")
    bad.write_text("bad\n")
    empty.write_text("")
    assert [it.id for it in load_items(task, [good, good], limit=1)] == ["1+2", "1+2"]
    with pytest.raises(UserError, match=r"bad.jsonl:1: not a sum; expected sums JSONL$"):
        load_items(task, [bad])
    with pytest.raises(UserError, match="empty.jsonl holds no examples.*; expected sums JSONL"):
        load_items(task, [empty])
    with pytest.raises(UserError, match="data file not found"):
        load_items(task, [tmp_path / "nope.jsonl"])


def test_sampling_at_a_vanishing_temperature_is_greedy_decoding(tiny_llama):
    """sample_task's known answer: as the temperature goes to 0 every sample is the greedy
    completion that evaluate_task writes, cut and scored the same; at T=1 the samples are
    seeded (same seed, same text) and differ between seeds."""
    from reasonlens.evaluate.task_eval import sample_task
    from reasonlens.tasks import get_task
    from reasonlens.tasks.blocksworld import generate_problems

    task = get_task("blocksworld")
    items = [task.item(p) for p in generate_problems(4, 2, 3, unique=True, seed=2)]
    greedy = evaluate_task(
        tiny_llama, task, items, mode="generate", max_new_tokens=6, progress=False
    ).examples
    cold = sample_task(tiny_llama, task, items, samples=3, temperature=1e-6, max_new_tokens=6)
    for rec, got in zip(greedy, cold, strict=True):
        assert got == [(rec["output"], rec["verdicts"])] * 3
    hot = [
        sample_task(tiny_llama, task, items, 3, 1.0, max_new_tokens=6, seed=s) for s in (0, 0, 1)
    ]
    assert hot[0] == hot[1] and hot[0] != hot[2]
    for bad, message in (({"samples": 0}, "samples must be at least 1"),
                         ({"temperature": 0.0}, "needs a temperature above 0")):  # fmt: skip
        args = {"samples": 2, "temperature": 1.0, **bad}
        with pytest.raises(UserError, match=message):
            sample_task(tiny_llama, task, items, **args)
