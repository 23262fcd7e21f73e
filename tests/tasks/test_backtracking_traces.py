"""Maze traces: the generator's exact backtracking spans, and a checker that reads any text."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonlens.errors import UserError
from reasonlens.tasks import get_task, task_for_record
from reasonlens.tasks.backtracking import (
    Maze,
    TraceConfig,
    check_trace,
    generate_split,
    generate_trace,
    generate_traces,
    random_maze,
    sentence,
    to_record,
    write_records,
)
from reasonlens.tasks.base import GoldError
from reasonlens.train.data import read_pairs

# A-B-C-D is the way to the goal D; E hangs off B, F off C
HAND = Maze(
    rooms=("A", "B", "C", "D", "E", "F"),
    corridors=(("A", "B"), ("B", "C"), ("C", "D"), ("B", "E"), ("C", "F")),
    start="A",
    goal="D",
)
HAND_TRACE = (
    "<think>\n"
    "I start at A. From A I can go to B.\n"
    "Try B. From B I can go to E or C.\n"
    "Try E. Wait, E is a dead end. Back to B.\n"
    "Try C. From C I can go to F or D.\n"
    "Try F. Wait, F is a dead end. Back to C.\n"
    "Try D. D is the goal.\n"
    "</think>\n"
    "Path: A B C D\n"
)
SEEDS = st.integers(min_value=0, max_value=2**31)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_hand_written_trace_is_read_exactly():
    checked = check_trace(HAND, HAND_TRACE)
    assert checked.labelable and not checked.errors and checked.solved
    assert [HAND_TRACE[s:e] for s, e in checked.spans()] == [
        "Wait, E is a dead end. Back to B.",
        "Wait, F is a dead end. Back to C.",
    ]
    assert checked.n_needed == 2 and checked.answer == ("A", "B", "C", "D")


@FAST
@given(seed=SEEDS, lo=st.integers(2, 10), extra=st.integers(0, 12))
def test_the_checker_labels_generated_traces_exactly_as_the_generator(seed, lo, extra):
    rng = random.Random(seed)
    maze = random_maze(rng, min(lo + extra, 24), min_distance=2)
    trace = generate_trace(maze, rng)
    checked = check_trace(maze, trace.text)
    assert checked.labelable, checked.reason
    assert not checked.errors and checked.solved and not checked.truncated
    assert checked.backtracks == trace.backtracks
    assert all(b.needed for b in trace.backtracks)  # a perfect maze: every backtrack needed
    assert trace.path == maze.shortest_path()
    for b in trace.backtracks:
        text = trace.text[b.start : b.end]
        assert text == sentence(b.kind, b.room, b.back_to)


@FAST
@given(seed=SEEDS)
def test_a_backtrack_out_of_the_way_to_the_goal_is_not_needed(seed):
    """Hand edit: the search gives up on a room of the start-goal path as a "dead end"."""
    rng = random.Random(seed)
    maze = random_maze(rng, rng.randint(4, 14), min_distance=2)
    trace = generate_trace(maze, rng)
    room, parent = trace.path[1], trace.path[0]  # on the way, and not the goal
    line = f"Try {room}. " + sentence("options", room, _options_written(trace.text, room))
    assert line in trace.text
    cut = trace.text.index(line)
    edited = trace.text[:cut] + f"Try {room}. " + sentence("dead_end", room, parent) + "\n"
    checked = check_trace(maze, edited)
    assert checked.labelable, checked.reason
    last = checked.backtracks[-1]
    assert (last.room, last.back_to, last.needed) == (room, parent, False)
    assert all(b.needed for b in checked.backtracks[:-1])
    assert not checked.reached_goal and not checked.solved


def _options_written(text: str, room: str) -> list[str]:
    head = f"From {room} I can go to "
    line = text[text.index(head) + len(head) :].split(".", 1)[0]
    return line.replace(" or ", ", ").split(", ")


def test_hand_edited_unneeded_backtrack():
    text = HAND_TRACE.replace(
        "Try C. From C I can go to F or D.\n", "Try C. Wait, C is a dead end. Back to B.\n"
    )
    text = text[: text.index("Try F.")]
    checked = check_trace(HAND, text)
    assert checked.labelable
    assert [(b.room, b.needed) for b in checked.backtracks] == [("E", True), ("C", False)]
    assert checked.n_unneeded == 1 and not checked.solved


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Hello world, I think the answer is 42.", "cannot read the text at character 0"),
        ("", "the text is empty"),
        ("<think>\n</think>\nPath: A B C D\n", "never starts"),
        ("I start at A. From A I can go to Q.\n", "room Q is not in the maze"),
        (
            "I start at A. From A I can go to B.\nTry B. Wait, B is a dead end. Back to C.\n",
            "came from A",
        ),
        ("I start at A. From B I can go to C.\n", "while the search is at A"),
        ("I start at A. Wait, A is a dead end. Back to B.\n", "nowhere to go back to"),
        (
            HAND_TRACE.replace("Try E. Wait,", "Try E. Hmm, so,"),
            "cannot read the text at character",
        ),
    ],
)
def test_garbled_or_inconsistent_text_is_unlabelable_with_a_reason(text, reason):
    checked = check_trace(HAND, text)
    assert not checked.labelable and reason in checked.reason


def test_wrong_facts_are_errors_of_a_labelled_chain():
    text = HAND_TRACE.replace("From A I can go to B.", "From A I can go to B or E.")
    text = text.replace("Path: A B C D", "Path: A C D")
    checked = check_trace(HAND, text)
    assert checked.labelable and checked.n_backtracks == 2
    assert any("lists the ways from A" in e for e in checked.errors)
    assert any("answer A C D is not a path" in e for e in checked.errors)
    assert not checked.solved
    jump = check_trace(HAND, "I start at A. From A I can go to B.\nTry D. D is the goal.\n")
    assert jump.labelable and any("no corridor A-D" in e for e in jump.errors)


def test_a_chain_cut_inside_a_backtrack_is_truncated_and_labelled():
    end = HAND_TRACE.index("dead end. Back to B.")
    checked = check_trace(HAND, HAND_TRACE[:end])
    assert checked.labelable and checked.truncated
    last = checked.backtracks[-1]
    assert last.truncated and last.room == "E" and last.needed
    assert HAND_TRACE[last.start : last.end] == "Wait, E is a"  # up to the last character
    mid = check_trace(HAND, HAND_TRACE[: HAND_TRACE.index("I can go to E")])
    assert mid.labelable and mid.truncated and not mid.backtracks


def test_generation_is_seeded_and_mazes_are_distinct():
    a = generate_traces(30, seed=4)
    assert [t.text for t in a] == [t.text for t in generate_traces(30, seed=4)]
    assert [t.text for t in a] != [t.text for t in generate_traces(30, seed=5)]
    train, test = generate_split(40, 10, seed=1)
    keys = [t.maze.key() for t in train + test]
    assert len(set(keys)) == 50
    busy = generate_traces(10, seed=0, config=TraceConfig(min_backtracks=3, max_backtracks=5))
    assert all(3 <= len(t.backtracks) <= 5 for t in busy)
    with pytest.raises(UserError):
        TraceConfig(rooms=(1, 4))


def test_the_task_reads_its_records_and_training_reads_the_file(tmp_path):
    traces = generate_traces(5, seed=2, config=TraceConfig(min_backtracks=1))
    records = [to_record(t, f"train-{i}", "train") for i, t in enumerate(traces)]
    path = write_records(tmp_path / "train.jsonl", records)
    assert task_for_record(records[0]).name == "backtracking"
    items = get_task("backtracking").read(path)
    assert len(items) == 5 and items[0].split == "train"
    for item, trace in zip(items, traces, strict=True):
        spans = item.spans["backtracking"]
        assert [item.text[s:e] for s, e in spans] == [
            trace.text[b.start : b.end] for b in trace.backtracks
        ]
    pairs, files = read_pairs([path])
    assert files[0].kind == "backtracking" and pairs[0].completion == traces[0].text
    task = get_task("backtracking")
    score = task.score(items[0], task.cut(items[0].completion + "more text"))
    assert score["solved"] and score["error_free"] and score["n_needed"] == score["n_backtracks"]
    assert task.stop(items[0].completion) and not task.stop(items[0].completion[:-30])


def test_a_record_whose_spans_are_not_the_checkers_is_refused(tmp_path):
    trace = generate_traces(1, seed=3, config=TraceConfig(min_backtracks=1))[0]
    rec = to_record(trace, "x")
    rec["spans"][0]["start"] += 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(GoldError, match=r"bad.jsonl:1: 'spans' are not the backtracks"):
        get_task("backtracking").read(bad)
    rec = to_record(trace, "x")
    rec["completion"] = rec["completion"].replace("Try", "Go to", 1)
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(GoldError, match="cannot be labelled"):
        get_task("backtracking").read(bad)
    rec = to_record(trace, "x")
    rec["maze"]["goal"] = rec["maze"]["start"]
    bad.write_text(json.dumps(rec) + "\n")
    with pytest.raises(UserError, match="two different rooms"):
        get_task("backtracking").read(bad)


def test_checked_samples_are_summarised_and_become_chains_to_label():
    from reasonlens.tasks.backtracking import summarize

    edited = HAND_TRACE.replace(
        "Try C. From C I can go to F or D.\n", "Try C. Wait, C is a dead end. Back to B.\n"
    )[: HAND_TRACE.index("Try F.")]
    checks = [
        check_trace(HAND, HAND_TRACE),
        check_trace(HAND, edited),
        check_trace(HAND, "gibberish"),
        check_trace(
            HAND, "I start at A. From A I can go to B.\nTry B. Wait, B is a dead end. Back to E."
        ),
    ]
    summary = summarize(checks)
    assert summary["chains"] == 4 and summary["labelable"] == 2
    assert summary["backtracks"] == 4 and summary["needed"] == 3 and summary["unneeded"] == 1
    assert summary["solved"] == 1 and summary["share_needed"] == 0.75
    assert sum(summary["unlabelable_reasons"].values()) == 2
    chain = checks[1].chain("s1", edited, problem="maze")
    assert chain.spans_of("unneeded-backtracking") == checks[1].spans("unneeded")
    assert chain.spans_of("backtracking") == checks[1].spans()
