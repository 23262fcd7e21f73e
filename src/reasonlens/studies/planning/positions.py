"""Where the planning study's analyses read and write: token positions and labels per example.

Everything is derived from the structured chunk spans of each Blocksworld example (mapped to
tokens once by `encode_example`), never by searching the text. Choices the paper leaves open
(spec §8) are made here, in one place:

* the readout of step t is the last token before its blank (`up` of pick-up, `of` of
  on-top-of); its own flow (the diagonal) is ignored, so the "action prompt" chunk is the
  action prompt without that token;
* a multi-token chunk is represented in probes by its last token; the "action" position of
  step k is its readout token and the "colour" position is its answer token;
* the history intervention's "colour tokens" of a step are the coloured blocks the step line
  names: the picked-up block, or the moved block and its destination (`table` is not a colour);
* block-state targets: init -> the initial state, goal -> the goal, step 2k -> the state after
  steps 1..2k (after an odd step a block is held; those positions get no state label).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reasonlens.tasks.blocksworld import Example
from reasonlens.tasks.blocksworld.colors import TABLE
from reasonlens.tasks.blocksworld.state import STACK, World
from reasonlens.tasks.blocksworld.tokens import EncodedExample, encode_example
from reasonlens.tasks.tokens import TokenLocator

SKY = "sky"  # nothing above: the block is clear


@dataclass(frozen=True)
class Item:
    """One analysed example with its tokens."""

    example: Example
    encoded: EncodedExample

    @property
    def input_ids(self) -> list[int]:
        return list(self.encoded.input_ids)

    @property
    def n_steps(self) -> int:
        return len(self.example.plan)


def encode_items(tokenizer, examples: Sequence[Example]) -> list[Item]:
    return [Item(ex, encode_example(tokenizer, ex)) for ex in examples]


def readouts(item: Item) -> list[int]:
    """Per step, the token whose logits predict the answer."""
    return [s.readout for s in item.encoded.tokens.steps]


def targets(item: Item) -> list[tuple[int, int]]:
    """Per step, (readout position, gold answer token id: the answer's first token)."""
    ids = item.encoded.input_ids
    return [(s.readout, ids[s.answer[0]]) for s in item.encoded.tokens.steps]


FLOW_ORDER_HEAD = ("init token", "init state", "goal token", "goal state", "plan token")


def flow_order(n_steps: int) -> list[str]:
    return [*FLOW_ORDER_HEAD, *(f"history {i}" for i in range(1, n_steps)), "action prompt"]


def flow_chunks(item: Item) -> list[dict[str, tuple[int, int]]]:
    """Per step, the paper's chunks as token ranges (the rule has no row in its figures)."""
    tok = item.encoded.tokens
    out = []
    for t, step in enumerate(tok.steps):
        chunks = {
            "init token": tok.init_header,
            "init state": tok.init_state,
            "goal token": tok.goal_header,
            "goal state": tok.goal_state,
            "plan token": tok.plan_header,
        }
        for i in range(t):
            chunks[f"history {i + 1}"] = tok.steps[i].step
        # leave out the readout itself (its self-flow is ignored): with a BPE tokenizer it is
        # the prompt's last token (" of"), with a byte-level one the space after the prompt
        start, end = step.action_prompt[0], min(step.action_prompt[1], step.readout)
        if end > start:
            chunks["action prompt"] = (start, end)
        out.append(chunks)
    return out


def colour_tokens(item: Item) -> list[list[int]]:
    """Per step, the token positions of the coloured blocks its line names."""
    locator = TokenLocator(item.encoded.offsets)
    text = item.example.text
    out = []
    for action, span in zip(item.example.plan, item.example.spans.steps, strict=True):
        positions = []
        if action.kind == STACK:
            # "stack X on-top-of": X starts after "stack "
            start = span.action_prompt[0] + len("stack ")
            if text[start : start + len(action.block)] != action.block:
                raise ValueError(f"step line does not name {action.block!r} where expected")
            positions.extend(range(*locator.span((start, start + len(action.block)))))
        if action.answer != TABLE:
            positions.extend(range(*locator.span(span.answer)))
        out.append(sorted(set(positions)))
    return out


def history_groups(item: Item) -> list[list[list[int]]]:
    """Per step t, the colour-token groups of history steps 1..t-1 (visible to step t)."""
    colours = colour_tokens(item)
    return [colours[:t] for t in range(item.n_steps)]


def step_of(position: str) -> int:
    """The plan step a probe position belongs to: 0 for init and goal (before step 1), k for
    s{k}-act and s{k}-col."""
    if position in ("init", "goal"):
        return 0
    match = re.fullmatch(r"s(\d+)-(act|col)", position)
    if match is None:
        raise ValueError(f"not a probe position: {position!r} (init, goal, s<k>-act, s<k>-col)")
    return int(match.group(1))


def probe_positions(item: Item) -> dict[str, int]:
    """Named probe positions: init, goal, and s{k}-act / s{k}-col for every step k."""
    tok = item.encoded.tokens
    positions = {"init": tok.init_state[1] - 1, "goal": tok.goal_state[1] - 1}
    for k, step in enumerate(tok.steps, start=1):
        positions[f"s{k}-act"] = step.readout
        positions[f"s{k}-col"] = step.answer[0]
    return positions


def state_classes(palette: Sequence[str]) -> list[str]:
    return [*palette, SKY, TABLE]


def block_state_labels(item: Item, position: str, palette: Sequence[str]) -> list[int] | None:
    """12-head style labels at `position`: for each palette colour, the class of the block
    directly above it (or sky) and directly below it (or table); -1 for colours not in this
    problem. None where the state is not defined (odd steps: a block is held)."""
    classes = state_classes(palette)
    state = _state_at(item, position)
    if state is None:
        return None
    above: dict[str, str] = {}
    below: dict[str, str] = {}
    for pile in state:
        for i, block in enumerate(pile):  # piles are bottom to top
            below[block] = pile[i - 1] if i else TABLE
            above[block] = pile[i + 1] if i + 1 < len(pile) else SKY
    labels = [classes.index(above[c]) if c in above else -1 for c in palette]
    labels += [classes.index(below[c]) if c in below else -1 for c in palette]
    return labels


def _state_at(item: Item, position: str):
    if position == "init":
        return item.example.init
    if position == "goal":
        return item.example.goal
    step = step_of(position)
    if step % 2:
        return None
    world = World(item.example.init)
    for action in item.example.plan[:step]:
        world.apply(action)
    return world.state()


def answer_classes(palette: Sequence[str]) -> list[str]:
    return [*palette, TABLE]


def future_labels(item: Item, position: str, palette: Sequence[str], n_heads: int) -> list[int]:
    """One head per plan step: the answer class of step r, only for steps after `position`'s
    step (init and goal come before step 1); -1 elsewhere."""
    classes = answer_classes(palette)
    current = step_of(position)
    labels = [-1] * n_heads
    for r, action in enumerate(item.example.plan, start=1):
        if r > current and r <= n_heads:
            labels[r - 1] = classes.index(action.answer)
    return labels
