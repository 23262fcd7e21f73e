"""Every token position and label the planning study reads, on one hand-checked problem.

`planning_positions` decides where each analysis reads and writes (readouts, chunk ranges for
information flow, the history intervention's colour tokens, probe positions) and what the probes
are trained to predict (block states, future answers). A one-off error there shifts every
figure of the study without failing anything downstream, so the values are written out here by
hand from one small problem, not recomputed with the code under test.

The problem (4 blocks, 3 table slots, piles bottom to top) and its only optimal plan::

    init  [red, blue]  [green, yellow]  []       step 1: pick-up blue
    goal  [red, yellow] [green]  [blue]          step 2: stack blue on-top-of table
                                                 step 3: pick-up yellow
                                                 step 4: stack yellow on-top-of red

It has a pick-up step, a stack onto the table (not a colour) and a stack onto a colour. It is
encoded twice: with the tiny models' byte-level tokenizer (one token per character, no BOS, so
a token index is a character offset into ``TEXT`` below) and, in one slow test, with the
default model's BPE tokenizer, where the answer token carries its leading space (`` blue``).
"""

from __future__ import annotations

import pytest

from reasonlens.models.tiny import tiny_tokenizer
from reasonlens.studies.planning import positions as pos
from reasonlens.tasks.blocksworld import (
    Example,
    make_example,
    make_problem,
    optimal_plans,
    pick_up,
    stack,
)
from reasonlens.tasks.blocksworld.tokens import encode_example

PROBLEM = make_problem(
    [["red", "blue"], ["green", "yellow"], []],
    [["red", "yellow"], ["green"], ["blue"]],
)
PLAN = (pick_up("blue"), stack("blue", "table"), pick_up("yellow"), stack("yellow", "red"))

# A short rule keeps the character offsets countable; nothing here depends on the rule text.
RULE = "Stack them."
# Character offsets of the byte-level example (= token indices):
#   0 "Rule:"  6 "Stack them."  18 "Init state:"  30 "<blue on red>"  44 "<yellow on green>"
#   62 "<empty>"  70 "Goal state:"  82 "<yellow on red>"  98 "<green>"  106 "<blue>"
#   113 "Plan:"
#   119 "step 1: "  127 "pick-up"  134 " "  135 "blue"
#   140 "step 2: "  148 "stack "  154 "blue"  158 " on-top-of"  168 " "  169 "table"
#   175 "step 3: "  183 "pick-up"  190 " "  191 "yellow"
#   198 "step 4: "  206 "stack "  212 "yellow"  218 " on-top-of"  228 " "  229 "red"  (end 232)
TEXT = (
    "Rule:\nStack them.\n"
    "Init state:\n<blue on red>\n<yellow on green>\n<empty>\n"
    "Goal state:\n<yellow on red>\n<green>\n<blue>\n"
    "Plan:\n"
    "step 1: pick-up blue\n"
    "step 2: stack blue on-top-of table\n"
    "step 3: pick-up yellow\n"
    "step 4: stack yellow on-top-of red"
)

# Scrambled against the problem's own order, with two colours (white, black) it does not use.
PALETTE = ("white", "red", "green", "black", "blue", "yellow")
# state classes: white 0, red 1, green 2, black 3, blue 4, yellow 5, sky 6, table 7
# answer classes: white 0, red 1, green 2, black 3, blue 4, yellow 5, table 6


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def item(tok):
    example = Example(PROBLEM, PLAN, rule=RULE)
    assert example.text == TEXT
    [item] = pos.encode_items(tok, [example])
    # the premise of every literal index below: one token per character, nothing added
    assert item.encoded.offsets == tuple((i, i + 1) for i in range(len(TEXT)))
    return item


def decode(tok, item, positions) -> str:
    return tok.decode([item.input_ids[i] for i in positions])


def test_the_plan_is_the_only_optimal_one():
    assert optimal_plans(PROBLEM) == [PLAN]


def test_encode_items_keeps_the_example_and_its_tokens(tok, item):
    assert item.example.plan == PLAN
    assert item.n_steps == 4
    assert item.encoded == encode_example(tok, item.example)
    assert isinstance(item.input_ids, list) and len(item.input_ids) == 232
    assert tok.decode(item.input_ids) == TEXT
    assert pos.encode_items(tok, []) == []


def test_readouts_are_the_tokens_just_before_each_answer(tok, item):
    assert pos.readouts(item) == [134, 168, 190, 228]
    # byte-level: the space before the blank is its own token, so it is the readout
    assert [decode(tok, item, [r]) for r in pos.readouts(item)] == [" "] * 4
    # ...and the prompt token before it is the last letter of "up" / "of"
    assert [TEXT[r - 2 : r] for r in pos.readouts(item)] == ["up", "of", "up", "of"]


def test_targets_pair_each_readout_with_the_answers_first_token(tok, item):
    targets = pos.targets(item)
    assert [p for p, _ in targets] == [134, 168, 190, 228]
    assert [tok.decode([i]) for _, i in targets] == ["b", "t", "y", "r"]  # blue table yellow red


def test_flow_order_lists_the_headers_the_history_and_the_action_prompt():
    head = ["init token", "init state", "goal token", "goal state", "plan token"]
    assert pos.flow_order(1) == [*head, "action prompt"]
    assert pos.flow_order(4) == [*head, "history 1", "history 2", "history 3", "action prompt"]


STATIC_CHUNKS = {
    "init token": (18, 29),
    "init state": (30, 69),
    "goal token": (70, 81),
    "goal state": (82, 112),
    "plan token": (113, 118),
}
HISTORY = {"history 1": (119, 139), "history 2": (140, 174), "history 3": (175, 197)}


def test_flow_chunks_give_the_headers_states_and_earlier_steps(tok, item):
    chunks = pos.flow_chunks(item)
    assert len(chunks) == 4
    for t, step_chunks in enumerate(chunks):
        # the rows come in flow_order's order; history k is visible from step k + 1 on
        assert list(step_chunks) == pos.flow_order(t + 1)
        expected = {**STATIC_CHUNKS, **dict(list(HISTORY.items())[:t])}
        assert {k: v for k, v in step_chunks.items() if k != "action prompt"} == expected
    last = chunks[3]
    assert decode(tok, item, range(*last["init token"])) == "Init state:"
    assert decode(tok, item, range(*last["init state"])) == (
        "<blue on red>\n<yellow on green>\n<empty>"
    )
    assert decode(tok, item, range(*last["goal token"])) == "Goal state:"
    assert decode(tok, item, range(*last["goal state"])) == "<yellow on red>\n<green>\n<blue>"
    assert decode(tok, item, range(*last["plan token"])) == "Plan:"
    assert decode(tok, item, range(*last["history 1"])) == "step 1: pick-up blue"
    assert decode(tok, item, range(*last["history 2"])) == "step 2: stack blue on-top-of table"
    assert decode(tok, item, range(*last["history 3"])) == "step 3: pick-up yellow"


def test_flow_chunks_action_prompt_leaves_out_only_the_readout(tok, item):
    # The readouts (134, 168, 190, 228) lie outside these spans already: nothing to remove.
    assert [c["action prompt"] for c in pos.flow_chunks(item)] == [
        (127, 134),
        (148, 168),
        (183, 190),
        (206, 228),
    ]


COLOUR_TOKENS = [
    [135, 136, 137, 138],  # step 1 pick-up blue: the picked-up block
    [154, 155, 156, 157],  # step 2 stack blue on-top-of table: blue only, table is no colour
    [191, 192, 193, 194, 195, 196],  # step 3 pick-up yellow
    [212, 213, 214, 215, 216, 217, 229, 230, 231],  # step 4 stack yellow on-top-of red: both
]


def test_colour_tokens_are_the_blocks_each_step_line_names(tok, item):
    colours = pos.colour_tokens(item)
    assert colours == COLOUR_TOKENS
    assert [decode(tok, item, c) for c in colours] == ["blue", "blue", "yellow", "yellowred"]
    assert decode(tok, item, colours[3][:6]) == "yellow"
    assert decode(tok, item, colours[3][6:]) == "red"


def test_history_groups_are_the_colour_tokens_of_earlier_steps(item):
    c1, c2, c3, _ = COLOUR_TOKENS
    assert pos.history_groups(item) == [[], [c1], [c1, c2], [c1, c2, c3]]


def test_probe_positions(tok, item):
    positions = pos.probe_positions(item)
    assert positions == {
        "init": 68,
        "goal": 111,
        "s1-act": 134,
        "s1-col": 135,
        "s2-act": 168,
        "s2-col": 169,
        "s3-act": 190,
        "s3-col": 191,
        "s4-act": 228,
        "s4-col": 229,
    }
    assert list(positions) == ["init", "goal"] + [
        f"s{k}-{kind}" for k in range(1, 5) for kind in ("act", "col")
    ]
    # init and goal: the last token of the state chunk, the ">" closing its last pile line
    assert decode(tok, item, range(30, positions["init"] + 1)).endswith("<empty>")
    assert decode(tok, item, range(82, positions["goal"] + 1)).endswith("<blue>")
    assert TEXT[positions["init"] + 1 :].startswith("\nGoal state:")
    assert TEXT[positions["goal"] + 1 :].startswith("\nPlan:")
    # s{k}-act is the readout; s{k}-col the answer's first token (here its first letter)
    assert [decode(tok, item, [positions[f"s{k}-col"]]) for k in range(1, 5)] == list("btyr")


def test_state_classes():
    assert pos.SKY == "sky"
    assert pos.state_classes(PALETTE) == [*PALETTE, "sky", "table"]
    assert pos.answer_classes(PALETTE) == [*PALETTE, "table"]


# Per palette colour (white red green black blue yellow): the class above it, then below it.
INIT_LABELS = [-1, 4, 5, -1, 6, 6] + [-1, 7, 7, -1, 1, 2]  # blue/red, yellow/green
AFTER_STEP_2 = [-1, 6, 5, -1, 6, 6] + [-1, 7, 7, -1, 7, 2]  # red, yellow/green, blue
GOAL_LABELS = [-1, 5, 6, -1, 6, 6] + [-1, 7, 7, -1, 7, 1]  # yellow/red, green, blue


@pytest.mark.parametrize(
    ("position", "labels"),
    [
        ("init", INIT_LABELS),
        ("goal", GOAL_LABELS),
        ("s1-act", None),  # a block is held after an odd step: no state
        ("s1-col", None),
        ("s2-act", AFTER_STEP_2),
        ("s2-col", AFTER_STEP_2),
        ("s3-act", None),
        ("s3-col", None),
        ("s4-act", GOAL_LABELS),  # the plan ends in the goal
        ("s4-col", GOAL_LABELS),
    ],
)
def test_block_state_labels(item, position, labels):
    assert pos.block_state_labels(item, position, PALETTE) == labels


# answers: blue 4, table 6, yellow 5, red 1
@pytest.mark.parametrize(
    ("position", "n_heads", "labels"),
    [
        ("init", 4, [4, 6, 5, 1]),
        ("goal", 4, [4, 6, 5, 1]),
        ("s1-act", 4, [-1, 6, 5, 1]),
        ("s1-col", 4, [-1, 6, 5, 1]),
        ("s2-act", 4, [-1, -1, 5, 1]),
        ("s3-col", 4, [-1, -1, -1, 1]),
        ("s4-act", 4, [-1, -1, -1, -1]),
        ("s4-col", 4, [-1, -1, -1, -1]),
        ("init", 6, [4, 6, 5, 1, -1, -1]),  # more heads than steps
        ("s2-col", 6, [-1, -1, 5, 1, -1, -1]),
        ("init", 2, [4, 6]),  # fewer heads: later steps are dropped
        ("s1-act", 2, [-1, 6]),
        ("s3-act", 2, [-1, -1]),
    ],
)
def test_future_labels(item, position, n_heads, labels):
    assert pos.future_labels(item, position, PALETTE, n_heads) == labels


@pytest.mark.slow
def test_positions_with_the_default_models_bpe_tokenizer():
    """With BPE the answer token is `` blue`` (space included): the readout is ``up``/``of``."""
    from reasonlens.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    [item] = pos.encode_items(tok, [make_example(PROBLEM, PLAN)])

    def texts(positions):
        return [tok.decode([item.input_ids[i]]) for i in positions]

    assert pos.readouts(item) == [92, 105, 114, 127]
    assert texts(pos.readouts(item)) == ["up", "of", "up", "of"]
    assert [tok.decode([i]) for _, i in pos.targets(item)] == [" blue", " table", " yellow", " red"]
    assert pos.colour_tokens(item) == [[93], [100], [115], [122, 128]]
    assert [texts(c) for c in pos.colour_tokens(item)] == [
        [" blue"],
        [" blue"],
        [" yellow"],
        [" yellow", " red"],
    ]
    positions = pos.probe_positions(item)
    assert positions == {
        "init": 63,
        "goal": 81,
        "s1-act": 92,
        "s1-col": 93,
        "s2-act": 105,
        "s2-col": 106,
        "s3-act": 114,
        "s3-col": 115,
        "s4-act": 127,
        "s4-col": 128,
    }
    assert texts([positions["init"] - 1, positions["init"]]) == ["empty", ">"]
    assert texts([positions["goal"] - 1, positions["goal"]]) == ["blue", ">"]
    # the readout is the action prompt's last token: the chunk stops just before it, as the
    # code has always cut it for BPE tokenizers
    prompts = [c["action prompt"] for c in pos.flow_chunks(item)]
    assert [end for _, end in prompts] == pos.readouts(item)
    chunks = pos.flow_chunks(item)
    # here the readout is the action prompt's last token, and only it is left out
    assert [c["action prompt"] for c in chunks] == [(90, 92), (99, 105), (112, 114), (121, 127)]
    assert [tok.decode(item.input_ids[slice(*c["action prompt"])]) for c in chunks] == [
        " pick-",
        " stack blue on-top-",
        " pick-",
        " stack yellow on-top-",
    ]
    assert chunks[3]["history 2"] == (95, 107)
    assert tok.decode(item.input_ids[95:107]) == "step 2: stack blue on-top-of table"
