"""The preferences task: training reads the study's files through it, and the loss falls on the
answer (the letter, or the JSON report) and the end token only."""

from __future__ import annotations

import json

import pytest

from reasonlens.errors import UserError
from reasonlens.models.tiny import tiny_tokenizer
from reasonlens.studies.preferences.data import make_data, read_data
from reasonlens.studies.preferences.presets import PRESETS, replace
from reasonlens.tasks import TASKS, task_for_record
from reasonlens.tasks.base import GoldError
from reasonlens.train.data import IGNORE, read_pairs, tokenize_pair

SMALL = replace(
    PRESETS["quick"],
    n_instilled=4,
    n_native=2,
    train_trials=6,
    val_trials=2,
    test_trials=3,
    native_trials=3,
    reports=1,
    introspect_examples=2,
)


def _data(tokenizer, out):
    make_data(SMALL, 0, tokenizer, out)
    return read_data(out)


def _labelled(tokenizer, pair):
    t = tokenize_pair(tokenizer, pair)
    return [tok for tok, label in zip(t.input_ids, t.labels, strict=True) if label != IGNORE], t


def _check_labels(tokenizer, data):
    eos = tokenizer.eos_token_id
    pairs, files = read_pairs([data.file("train.jsonl")])
    assert files[0].kind == "preferences" and len(pairs) == len(data.trials["train"])
    for pair, trial in zip(pairs, data.trials["train"], strict=True):
        assert pair.completion == trial.target
        labelled, t = _labelled(tokenizer, pair)
        letter = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(trial.target))
        assert labelled == [*letter, eos]  # exactly the letter and the end token
        assert len(letter) == 1
        assert t.labels[-2:] == t.input_ids[-2:]
        assert all(label == IGNORE for label in t.labels[:-2])
    pairs, _ = read_pairs([data.file("introspect.jsonl")])
    for pair in pairs:
        labelled, t = _labelled(tokenizer, pair)
        assert tokenizer.decode(labelled[:-1]) == pair.completion and labelled[-1] == eos
        prompt_ids = [i for i, label in zip(t.input_ids, t.labels, strict=True) if label == IGNORE]
        assert len(prompt_ids) + len(labelled) == len(t.input_ids)


def test_only_the_letter_and_the_end_token_carry_labels_tiny_tokenizer(tmp_path):
    _check_labels(tiny_tokenizer(), _data(tiny_tokenizer(), tmp_path))


@pytest.mark.slow
def test_only_the_letter_and_the_end_token_carry_labels_smollm2(tmp_path):
    from reasonlens.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    data = _data(tokenizer, tmp_path)
    assert data.manifest["chat_template"]
    record = json.loads(data.file("train.jsonl").read_text().split("\n")[0])
    assert record["prompt"].startswith("<|im_start|>system\n")
    assert record["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n")
    _check_labels(tokenizer, data)


def test_the_task_is_registered_and_recognises_its_records(tmp_path):
    data = _data(tiny_tokenizer(), tmp_path)
    record = json.loads(data.file("train.jsonl").read_text().split("\n")[0])
    assert task_for_record(record) is TASKS["preferences"]
    assert task_for_record({"prompt": "x", "completion": "y"}) is None
    items = TASKS["preferences"].read(data.file("introspect.jsonl"))
    assert {it.labels["kind"] for it in items} == {"report"}
    task = TASKS["preferences"]
    decision = task.read(data.file("val.jsonl"))[0]
    assert task.score(decision, decision.completion) == {"valid": True, "correct": True}
    assert task.score(decision, "maybe") == {"valid": False, "correct": False}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"completion": "a"}, "not exactly A or B"),
        ({"completion": "A."}, "not exactly A or B"),
        ({"kind": "guess"}, "kind 'guess'"),
        ({"prompt": 3}, "'prompt' must be a string"),
        ({"names": "x"}, "'names' must be the list"),
    ],
)
def test_a_bad_gold_decision_is_refused_naming_the_line(tmp_path, change, message):
    data = _data(tiny_tokenizer(), tmp_path)
    lines = data.file("train.jsonl").read_text().split("\n")
    lines[1] = json.dumps({**json.loads(lines[1]), **change})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines))
    with pytest.raises(UserError, match=rf"bad.jsonl:2: .*{message}"):
        read_pairs([bad])


def test_a_bad_gold_report_is_a_gold_error(tmp_path):
    data = _data(tiny_tokenizer(), tmp_path)
    line = json.loads(data.file("introspect.jsonl").read_text().split("\n")[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**line, "completion": '{"x": 1}'}) + "\n")
    with pytest.raises(GoldError, match="bad.jsonl:1: the gold report"):
        TASKS["preferences"].read(bad)


def test_lora_on_the_top_layers_names_only_their_linear_modules(tiny_dir, tmp_path):
    from reasonlens.train.recipe import Lora, Recipe, TrainRecipe, top_layer_modules

    top = top_layer_modules(tiny_dir, 1)  # the tiny llama has 2 layers
    assert len(top) == 7 and all(name.startswith("model.layers.1.") for name in top)
    assert len(top_layer_modules(tiny_dir, 5)) == 14  # more than there are: all of them
    data = _data(tiny_tokenizer(), tmp_path)
    recipe = Recipe(TrainRecipe(method="lora"), lora=Lora(4, 8, 0.0, top_layers=1))
    config = recipe.config(tiny_dir, [str(data.file("train.jsonl"))], seed=0)
    assert config.lora_target_modules == top and config.lora_r == 4 and config.max_length == 2048
