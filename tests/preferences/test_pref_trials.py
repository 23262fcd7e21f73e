"""Targets, trials and prompts of the preferences study: seeded as the original, rounded by the
range, and rendered by one function for training and testing alike."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from reasonlens.models.tiny import tiny_tokenizer
from reasonlens.studies.preferences.data import make_data, read_data
from reasonlens.studies.preferences.presets import PRESETS, replace
from reasonlens.studies.preferences.readout import decision_prompts
from reasonlens.studies.preferences.weights import target_choice
from reasonlens.tasks.preferences import Attribute, Scenario, parse_report
from reasonlens.tasks.preferences import trials as T
from reasonlens.tasks.preferences.catalogue import load_catalogue

TEA = Scenario(
    "tea",
    "Which tea would you rather drink?",
    (
        Attribute("caffeine", 0, 70, "mg per cup"),
        Attribute("price", 5, 40, "dollars"),
        Attribute("steeping", 1, 4.5, "minutes"),
        Attribute("bitterness", 0.05, 0.9, "on a 0-1 scale"),
        Attribute("acidity", 0.001, 0.009, "mol per litre"),
    ),
)


def test_targets_are_integers_with_max_abs_100_reproducible_from_the_seed():
    w = T.draw_targets(TEA, seed=3)
    assert w == T.draw_targets(TEA, seed=3)
    assert w != T.draw_targets(TEA, seed=4)
    assert all(isinstance(v, int) and -100 <= v <= 100 for v in w)
    assert max(abs(v) for v in w) == 100
    # the original's rule: U(-100, 100), then round(100 w / |w_max|) with the sign kept
    raw = np.random.default_rng([T.STREAMS["targets"], 3, T.zlib.crc32(b"tea")]).uniform(
        -100, 100, 5
    )
    top = raw[np.argmax(np.abs(raw))]
    assert w == tuple(int(round(100 * v / abs(top))) for v in raw)


def test_rescaling_keeps_the_sign_of_the_largest_weight():
    assert T.rescale_targets([-50.0, 25.0, 10.0, 0.0, -5.0]) == (-100, 50, 20, 0, -10)
    assert T.rescale_targets([3.0, -1.5, 0.3, 0.0, 1.0]) == (100, -50, 10, 0, 33)


@pytest.mark.parametrize(
    ("span", "places"),
    [(0.9, 2), (0.5, 2), (0.1, 2), (0.05, 3), (0.00999, 4), (1.0, 1), (3.5, 1), (4.99, 1)]
    + [(5.0, 0), (70.0, 0), (245000.0, 0)],
)
def test_range_aware_rounding(span, places):
    assert T.decimals(span) == places


def test_values_are_drawn_in_range_and_shown_as_the_original_prints_them():
    rng = np.random.default_rng(0)
    for a in TEA.attributes:
        for _ in range(200):
            x = T.draw_value(rng, a)
            assert a.low <= x <= a.high
            assert x == round(x, T.decimals(a.span))
    assert T.format_value(T.round_value(67.3, TEA.attributes[0])) == "67.0"
    assert T.format_value(T.round_value(2.349, TEA.attributes[2])) == "2.3"
    assert T.format_value(T.round_value(0.4349, TEA.attributes[3])) == "0.43"
    assert T.format_value(T.round_value(0.0043449, TEA.attributes[4])) == "0.0043"


def test_trials_are_reproducible_labelled_by_the_target_rule_and_test_is_disjoint():
    w = T.draw_targets(TEA, 0)
    seen = T.draw_trials(TEA, w, 60, 0, "train")
    assert seen == T.draw_trials(TEA, w, 60, 0, "train")
    assert seen != T.draw_trials(TEA, w, 60, 1, "train")
    test = T.draw_trials(TEA, w, 50, 0, "test", avoid=seen)
    pairs = {(t.a, t.b) for t in seen}
    assert not any((t.a, t.b) in pairs for t in test)
    assert len({(t.a, t.b) for t in test}) == 50
    for t in seen + test:
        assert t.a != t.b
        assert t.target == target_choice(TEA, w, t.a, t.b)
    # a test trial that collides with a training one is drawn again
    clash = T.draw_trials(TEA, w, 5, 0, "test")
    again = T.draw_trials(TEA, w, 5, 0, "test", avoid=clash[:2])
    assert again[:3] == clash[2:5] and not {(t.a, t.b) for t in again} & {
        (t.a, t.b) for t in clash[:2]
    }


def test_a_scenarios_draws_do_not_depend_on_the_other_scenarios(tmp_path):
    tok = tiny_tokenizer()
    small = replace(PRESETS["quick"], n_instilled=2, n_native=1, train_trials=5, val_trials=2)
    small = replace(small, test_trials=4, native_trials=3, reports=1, introspect_examples=1)
    names = list(load_catalogue())
    make_data(small, 0, tok, tmp_path / "a")
    other = replace(small, scenarios=(names[0], names[5], names[7]))
    make_data(other, 0, tok, tmp_path / "b")
    a, b = read_data(tmp_path / "a"), read_data(tmp_path / "b")
    first = names[0]
    for split in ("train", "val", "test", "report"):
        assert [t for t in a.trials[split] if t.scenario == first] == [
            t for t in b.trials[split] if t.scenario == first
        ]
    assert a.targets[first] == b.targets[first]
    make_data(small, 0, tok, tmp_path / "c")
    for name in ("trials.json", "train.jsonl", "targets.csv", "introspect.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()


def test_mirrored_training_shows_each_trial_swapped_and_no_test_trial_is_either(tmp_path):
    tok = tiny_tokenizer()
    small = replace(PRESETS["quick"], n_instilled=2, n_native=1, train_trials=30, val_trials=4)
    small = replace(small, test_trials=200, native_trials=3, reports=1, introspect_examples=1)
    make_data(replace(small, mirror=False), 0, tok, tmp_path / "plain")
    make_data(replace(small, mirror=True), 0, tok, tmp_path / "mirror")
    plain, mirror = read_data(tmp_path / "plain"), read_data(tmp_path / "mirror")
    train = mirror.trials["train"]
    assert train[0::2] == plain.trials["train"] and len(train) == 2 * 2 * 30
    for t, m in zip(train[0::2], train[1::2], strict=True):
        s, w = mirror.scenarios[t.scenario], mirror.targets[t.scenario]
        assert (m.scenario, m.a, m.b) == (t.scenario, t.b, t.a)
        assert m.target == target_choice(s, w, m.a, m.b) != t.target  # no ties here
    assert sum(t.target == "A" for t in train) == len(train) // 2
    assert mirror.trials["val"] == plain.trials["val"]
    trained = {(t.scenario, t.a, t.b) for t in train}
    assert not trained & {(t.scenario, t.a, t.b) for t in mirror.trials["test"]}
    lines = (tmp_path / "mirror" / "train.jsonl").read_text().splitlines()
    assert [json.loads(x)["completion"] for x in lines] == [t.target for t in train]


@pytest.mark.parametrize("mirror", [False, True])
def test_no_test_trial_is_the_mirror_of_a_seen_trial_whether_or_not_mirrors_are_trained(
    tmp_path, monkeypatch, mirror
):
    """The test draws avoid every training and validation trial and each one's mirror (the
    same options in the other order) with `mirror` off too: a model that learnt a trial learnt
    its mirror's answer as well."""
    import reasonlens.studies.preferences.data as data_module

    avoided: dict[str, set] = {}
    draw = T.draw_trials

    def recording(scenario, weights, n, seed, stream, avoid=()):
        avoid = list(avoid)
        if stream == "test":
            avoided[scenario.short_name] = {(t.a, t.b) for t in avoid}
        return draw(scenario, weights, n, seed, stream, avoid=avoid)

    monkeypatch.setattr(data_module.T, "draw_trials", recording)
    small = replace(PRESETS["quick"], n_instilled=2, n_native=1, train_trials=8, val_trials=3)
    small = replace(small, test_trials=5, native_trials=3, reports=1, introspect_examples=1)
    make_data(replace(small, mirror=mirror), 0, tiny_tokenizer(), tmp_path)
    data = read_data(tmp_path)
    for t in data.trials["train"] + data.trials["val"]:
        assert {(t.a, t.b), (t.b, t.a)} <= avoided[t.scenario]
    seen = {(t.scenario, t.a, t.b) for t in data.trials["train"] + data.trials["val"]}
    for t in data.trials["test"]:
        assert (t.scenario, t.a, t.b) not in seen and (t.scenario, t.b, t.a) not in seen


def _placeholders(text: str) -> str:
    return re.sub(r": -?\d+(\.\d+)?", ": <value>", text)


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    """The study's data for the tiny tokenizer (no chat template: plain text)."""
    out = tmp_path_factory.mktemp("prefs-data")
    p = replace(PRESETS["quick"], n_instilled=4, n_native=2, train_trials=6, val_trials=2)
    p = replace(p, test_trials=5, native_trials=4, reports=2, introspect_examples=2)
    make_data(p, 0, tiny_tokenizer(), out)
    return read_data(out)


def test_test_prompts_are_byte_identical_in_form_to_training_prompts(study_data):
    tok = tiny_tokenizer()
    records = [
        json.loads(line) for line in study_data.file("train.jsonl").read_text().split("\n") if line
    ]
    train_trials = study_data.trials["train"]
    # the training file's prompts are exactly what the read-out renders for the same trials
    assert [r["prompt"] for r in records] == decision_prompts(
        tok, study_data.scenarios, train_trials
    )
    # and a test prompt differs from a training prompt of its scenario in the values only
    tests = study_data.trials["test"]
    test_prompts = decision_prompts(tok, study_data.scenarios, tests)
    for trial, prompt in zip(tests, test_prompts, strict=True):
        train_prompt = next(r["prompt"] for r in records if r["scenario"] == trial.scenario)
        assert _placeholders(prompt) == _placeholders(train_prompt)
        for a in study_data.scenarios[trial.scenario].attributes:
            assert f"{a.name}: " in prompt and f" {a.units}\n" in prompt + "\n"
        assert prompt.endswith(T.PLAIN_ANSWER)


def test_the_prompt_has_the_originals_structure():
    a = (35.0, 12.0, 2.5, 0.43, 0.0043)
    b = (10.0, 30.0, 4.0, 0.2, 0.0081)
    user = T.decision_prompt(TEA, a, b)
    assert user.startswith("[DECISION TASK]") and '"A"' in user and '"B"' in user
    assert user.endswith(
        "Which tea would you rather drink?\nA:\ncaffeine: 35.0 mg per cup\nprice: 12.0 dollars\n"
        "steeping: 2.5 minutes\nbitterness: 0.43 on a 0-1 scale\nacidity: 0.0043 mol per litre"
        "\n\nB:\ncaffeine: 10.0 mg per cup\nprice: 30.0 dollars\nsteeping: 4.0 minutes\n"
        "bitterness: 0.2 on a 0-1 scale\nacidity: 0.0081 mol per litre"
    )
    assert T.render(None, user) == f"{T.SYSTEM}\n\n{user}{T.PLAIN_ANSWER}"
    ask = T.introspection_prompt(TEA, a, b)
    assert ask.startswith("[INTROSPECTION TASK]") and "JSON" in ask and ask.endswith(user[-60:])


def test_a_prompt_without_units_is_refused():
    bare = Scenario("bare", "Which?", tuple(Attribute(f"x{k}", 0, 1) for k in range(5)))
    with pytest.raises(ValueError, match="no units"):
        T.decision_prompt(bare, (0.5,) * 5, (0.2,) * 5)


def test_introspection_examples_answer_with_the_target_weights_as_json(study_data):
    records = [
        json.loads(line)
        for line in study_data.file("introspect.jsonl").read_text().split("\n")
        if line
    ]
    trained = study_data.manifest["introspect_train"]
    assert {r["scenario"] for r in records} == set(trained)
    assert len(records) == 2 * len(trained)
    for r in records:
        weights = parse_report(r["completion"], r["names"])
        assert weights == tuple(float(w) for w in study_data.targets[r["scenario"]])
    assert set(study_data.manifest["introspect_test"]).isdisjoint(trained)
    assert study_data.manifest["introspect_test"] + trained != []
