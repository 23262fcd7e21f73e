"""Both text layouts: exact text, exact spans, round trips, and malformed input."""

from __future__ import annotations

import json

import pytest

from reasonlens.errors import UserError
from reasonlens.tasks.blocksworld import (
    Example,
    Problem,
    example_from_record,
    generate_problems,
    make_example,
    parse_plan,
    pick_up,
    read_examples,
    stack,
    write_examples,
)
from reasonlens.tasks.blocksworld.formats import PAPER_RULE, SEED_INSTRUCTION, SEED_RULE

FIG2 = Problem(
    init=((), ("black",), ("blue", "red", "gray", "white"), ("green",)),
    goal=(("black", "gray"), ("blue", "red"), ("green",), ("white",)),
)
FIG2_PLAN = (pick_up("white"), stack("white", "table"), pick_up("gray"), stack("gray", "black"))

FIG2_TEXT = """Rule:
You can pick-up color1. stack color1 on-top-of color2. All the blocks are on the table. \
There is no order in the piles. Please output the optimal plan.
Init state:
<empty>
<black>
<white on gray on red on blue>
<green>
Goal state:
<gray on black>
<red on blue>
<green>
<white>
Plan:
step 1: pick-up white
step 2: stack white on-top-of table
step 3: pick-up gray
step 4: stack gray on-top-of black"""

# A line in the public reproduction's layout (its L2 test file has this problem).
SEED_RECORD = {
    "instruction": SEED_INSTRUCTION,
    "input": "Rule:\n" + SEED_RULE + "\n\nInit state:\n<blue on green>\n<yellow on red>\n\n"
    "Goal state:\n<blue on green>\n<yellow>\n<red>",
    "output": "Plan:\nstep 1: pick-up yellow\nstep 2: stack yellow on-top-of table\n"
    "step 3: pick-up red\nstep 4: stack red on-top-of table",
}


def test_paper_layout_matches_figure_2_exactly():
    ex = make_example(FIG2, FIG2_PLAN, "paper")
    assert ex.text == FIG2_TEXT
    assert ex.prompt == FIG2_TEXT[: FIG2_TEXT.index("step 1")]
    assert ex.prompt.endswith("Plan:\n") and ex.text == ex.prompt + ex.completion
    assert ex.level == 2 and ex.n_steps == 4 and ex.n_blocks == 6 and ex.slots == 4


def check_spans(ex: Example) -> None:
    """Every span of ``ex`` covers exactly the chunk it names."""
    text, sp = ex.text, ex.spans

    def at(span):
        return text[span[0] : span[1]]

    rule = PAPER_RULE if ex.format == "paper" else SEED_RULE
    assert at(sp.rule_header) == "Rule:" and at(sp.rule) == rule
    assert at(sp.init_header) == "Init state:" and at(sp.goal_header) == "Goal state:"
    assert at(sp.plan_header) == "Plan:"
    for state, whole, lines in (
        (ex.init, sp.init_state, sp.init_slots),
        (ex.goal, sp.goal_state, sp.goal_slots),
    ):
        shown = [p for p in state if p or ex.format == "paper"]
        expected = ["<" + " on ".join(reversed(p)) + ">" if p else "<empty>" for p in shown]
        assert [at(s) for s in lines] == expected
        assert at(whole) == "\n".join(expected)
    assert len(sp.steps) == len(ex.plan)
    for k, (action, s) in enumerate(zip(ex.plan, sp.steps, strict=True), start=1):
        assert at(s.step) == f"step {k}: {action}"
        assert at(s.action_prompt) == (
            "pick-up" if action.kind == "pick-up" else f"stack {action.block} on-top-of"
        )
        assert at(s.answer) == action.answer
        assert s.action_prompt[1] + 1 == s.answer[0] and text[s.action_prompt[1]] == " "
        assert s.step[1] == s.answer[1]
    # the plan starts right after the prompt; the prompt ends with the plan header line
    assert sp.plan_header[1] + 1 == len(ex.prompt)


def test_every_span_covers_its_chunk():
    check_spans(make_example(FIG2, FIG2_PLAN, "paper"))
    check_spans(make_example(FIG2, FIG2_PLAN, "seed"))
    for fmt in ("paper", "seed"):
        for level in (1, 3, 5):
            for ex in generate_problems(6, level, 3, fmt=fmt, seed=level):
                check_spans(ex)


def test_paper_record_round_trips_exactly():
    for ex in generate_problems(5, 3, 5, seed=1):
        line = ex.to_json()
        back = example_from_record(json.loads(line))
        assert back == ex and back.to_json() == line
        # and from the text alone
        assert example_from_record({"text": ex.text}).problem == ex.problem
        bare = example_from_record({"prompt": ex.prompt, "completion": ex.completion})
        assert (bare.problem, bare.plan, bare.text) == (ex.problem, ex.plan, ex.text)


def test_seed_record_round_trips_exactly():
    for ex in generate_problems(4, 2, 5, seed=2, fmt="seed"):
        line = ex.to_json()
        rec = json.loads(line)
        assert list(rec)[:3] == ["instruction", "input", "output"]
        assert "<empty>" not in rec["input"]
        back = example_from_record(rec)
        assert back == ex and back.to_json() == line
        assert rec["input"] + "\n\n" + rec["output"] == ex.text


def test_a_foreign_seed_record_is_parsed_from_its_text():
    ex = example_from_record(SEED_RECORD)
    assert ex.format == "seed" and ex.slots == 4
    assert ex.init == (("green", "blue"), ("red", "yellow"), (), ())
    assert ex.goal == (("green", "blue"), ("yellow",), ("red",), ())
    assert [str(a) for a in ex.plan][:2] == ["pick-up yellow", "stack yellow on-top-of table"]
    rec = ex.to_record()
    assert (rec["instruction"], rec["input"], rec["output"]) == tuple(SEED_RECORD.values())
    assert example_from_record(SEED_RECORD, slots=3).slots == 3


def test_files_round_trip_byte_for_byte(tmp_path):
    examples = generate_problems(4, 1, 4, seed=0) + generate_problems(4, 2, 4, seed=0, fmt="seed")
    write_examples(tmp_path / "a.jsonl", examples)
    again = read_examples(tmp_path / "a.jsonl")
    assert again == examples
    write_examples(tmp_path / "b.jsonl", again)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def paper_text_with(old: str, new: str) -> dict:
    assert old in FIG2_TEXT
    return {"text": FIG2_TEXT.replace(old, new, 1)}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (paper_text_with("<black>", "<red>"), "'red' appears twice in the init state"),
        (paper_text_with("<black>", "<black"), "unbalanced '<'"),
        (paper_text_with("<black>", "<bl<ack>"), "unbalanced '<'"),
        (paper_text_with("<green>\nGoal", "<green>\n<empty>\nGoal"), "5 slots but the goal"),
        (paper_text_with("<white>", "<pink>"), "goal state names 'pink'"),
        (paper_text_with("step 2", "step 3"), "expected step 2 here"),
        (paper_text_with("step 3: pick-up gray", "step 3: grab gray"), "plan line 3"),
        (paper_text_with("Goal state:", "Goal:"), "no 'Goal state:' line"),
        (paper_text_with("<black>", "<black  on red>"), "not a colour name"),
        (paper_text_with("<black>", "<>"), "empty pile"),
        ({"input": "x"}, "field 'output' is missing"),
        ({"foo": 1}, "a record needs"),
        ({**SEED_RECORD, "input": SEED_RECORD["input"] + "\n<empty>"}, "no <empty> lines"),
        ({**SEED_RECORD, "plan": ["pick-up red"]}, "field 'plan' does not match"),
        ({**SEED_RECORD, "slots": 1}, "2 piles but only 1 slots"),
        ({**SEED_RECORD, "n_blocks": 5}, "field 'n_blocks' is 5"),
    ],
)
def test_malformed_records_raise_a_clear_user_error(record, message):
    with pytest.raises(UserError, match=message):
        example_from_record(record)


def test_bad_line_in_a_file_is_named_by_file_and_line(tmp_path):
    good = generate_problems(4, 1, 1)[0].to_json()
    bad = json.dumps(paper_text_with("<black>", "<red>"))
    path = tmp_path / "data.jsonl"
    path.write_text(good + "\n\n" + bad + "\n")
    with pytest.raises(UserError, match=r"data\.jsonl:3: .*appears twice"):
        read_examples(path)


def test_model_output_plans_parse_leniently_but_not_loosely():
    text = "Plan:\n step 1: pick-up white \n\nstep 2: stack white on-top-of table\n"
    assert parse_plan(text) == FIG2_PLAN[:2]
    assert parse_plan("") == ()
    with pytest.raises(UserError, match="plan line 2"):
        parse_plan("step 1: pick-up white\nthen stack it")
