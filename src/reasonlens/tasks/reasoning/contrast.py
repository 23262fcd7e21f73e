"""Matched contrast prompts for reasoning directions (seed 004, spec C1).

Every item is one question asked two ways, in the same surface form, differing in one line:

* **reasoning**: ``Give the final answer.`` -- the answer needs the question's multi-step
  computation (checked: the generator computes it, a user's file gives it);
* **control**: ``Give the first number in the question.`` -- the answer is copied from the
  text, no computation needed (checked the same way).

The built-in generator writes two- and three-step arithmetic word problems whose every
intermediate value and final answer is a single digit 0-9 distinct from the first number, so
each answer is one token for a digit-splitting tokenizer and the two answers always differ.
`read_prompts` reads GSM8K/MATH-style JSONL (``question``, ``answer``; a GSM8K answer's
``#### N`` tail is the answer) and refuses a file with a missing answer or no items.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from reasonlens.errors import UserError

# The two lines differ in two words and have the same length in bytes and in common BPE
# vocabularies (SmolLM2: 8 tokens each), so a prompt and its control align token by token:
# activation patching between them needs that.
REASONING_LINE = "Give the final answer to the question."
CONTROL_LINE = "Give the first number in the question."
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

NAMES = ("Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
THINGS = ("apples", "books", "coins", "pens", "shells", "stamps", "cards", "marbles")


@dataclass(frozen=True)
class ContrastItem:
    question: str
    answer: str  # what the reasoning prompt asks for (the computation's result)
    copy: str  # what the control prompt asks for (read off the question)
    steps: int  # computation steps (0 when unknown: a user's question)
    source: str = "arithmetic"
    reasoning_line: str = REASONING_LINE  # the instruction that asks for the computation
    control_line: str = CONTROL_LINE  # the one that asks for the copy

    def to_dict(self) -> dict:
        return asdict(self)


def reasoning_prompt(question: str, line: str = REASONING_LINE) -> str:
    return f"Question: {question}\n{line}\nAnswer:"


def control_prompt(question: str, line: str = CONTROL_LINE) -> str:
    return f"Question: {question}\n{line}\nAnswer:"


def contrast_prompts(items: list[ContrastItem]) -> tuple[list[str], list[str]]:
    """The reasoning prompts and their matched controls, item by item."""
    return [reasoning_prompt(x.question, x.reasoning_line) for x in items], [
        control_prompt(x.question, x.control_line) for x in items
    ]


def _problem(rng: random.Random, steps: int) -> ContrastItem | None:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    start = rng.randint(1, 9)
    value, clauses = start, []
    for _ in range(steps):
        if rng.random() < 0.5:
            k = rng.randint(1, 9 - value) if value < 9 else 0
            if k == 0:
                return None
            value += k
            clauses.append(
                rng.choice(["gets {k} more", "finds {k} more", "buys {k} more"]).format(k=k)
            )
        else:
            if value <= 1:
                return None
            k = rng.randint(1, value - 1)
            value -= k
            clauses.append(rng.choice(["gives away {k}", "loses {k}", "sells {k}"]).format(k=k))
    if value == start:
        return None
    body = ", then ".join(clauses)
    question = f"{name} has {start} {thing}. {name} {body}. How many {thing} does {name} have now?"
    return ContrastItem(question, str(value), str(start), steps)


def arithmetic_items(n: int, seed: int = 0, steps: tuple[int, ...] = (2, 3)) -> list[ContrastItem]:
    """`n` distinct multi-step word problems (seeded), each step count in turn."""
    if n < 1:
        raise UserError("the contrast set needs at least one problem")
    rng = random.Random(seed)
    out: list[ContrastItem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise UserError(f"could not generate {n} distinct problems")
        item = _problem(rng, steps[len(out) % len(steps)])
        if item is not None and item.question not in seen:
            seen.add(item.question)
            out.append(item)
    return out


#: The maze: which room follows the start on the path to the goal needs the search (the
#: start has two or more corridors); which room the path starts in is read off the question.
MAZE_LINES = ("Give the second room on the path.", "Give the first room on the path.")
#: Blocksworld: which block an optimal plan picks up first needs the plan (problems with one
#: optimal plan); which block is on top of the first pile is read off the init state.
BLOCKS_LINES = (
    "Give the block the optimal plan picks up first.",
    "Give the block on top of the first pile.",
)


def _distinct(make, n: int, rng: random.Random, what: str) -> list[ContrastItem]:
    """`n` items of distinct questions whose answer and copy differ from the first character
    (so their first tokens differ under any tokenizer: the logit difference is defined)."""
    out: list[ContrastItem] = []
    seen: set[str] = set()
    for _ in range(200 * n):
        item = make(rng)
        if item is None or item.question in seen:
            continue
        if item.answer[:1].lower() != item.copy[:1].lower():
            seen.add(item.question)
            out.append(item)
            if len(out) == n:
                return out
    raise UserError(f"could not generate {n} distinct {what} problems")


def maze_items(n: int, seed: int = 0, rooms: tuple[int, int] = (5, 7)) -> list[ContrastItem]:
    """`n` distinct mazes (the maze task's prompt, seeded): the reasoning prompt asks for the
    room after the start on the path to the goal, the control for the start room."""
    from reasonlens.tasks.backtracking.puzzle import random_maze
    from reasonlens.tasks.backtracking.traces import prompt_text

    def make(rng: random.Random) -> ContrastItem | None:
        maze = random_maze(rng, rng.randint(*rooms))
        if len(maze.neighbours(maze.start)) < 2:  # one corridor out: nothing to search
            return None
        path = maze.shortest_path()
        question = prompt_text(maze).strip()
        return ContrastItem(question, path[1], path[0], len(path) - 1, "maze", *MAZE_LINES)

    return _distinct(make, n, random.Random(seed), "maze")


def blocksworld_items(n: int, seed: int = 0, blocks: int = 4) -> list[ContrastItem]:
    """`n` distinct Blocksworld problems of levels 2 and 3 with one optimal plan each (the
    planning prompt, seeded): the reasoning prompt asks for the block the plan picks up
    first, the control for the block on top of the first pile."""
    from reasonlens.tasks.blocksworld import generate_problems

    pool = [
        ex
        for level in (2, 3)
        for ex in generate_problems(blocks, level, 2 * n, unique=True, seed=seed + level)
    ]
    random.Random(seed).shuffle(pool)
    examples = iter(pool)

    def make(_rng: random.Random) -> ContrastItem | None:
        ex = next(examples, None)
        if ex is None:
            return None
        top = next(pile[-1] for pile in ex.problem.init if pile)
        question = ex.prompt.removesuffix("Plan:\n").strip()
        first = ex.plan[0].block
        return ContrastItem(question, first, top, len(ex.plan), "blocksworld", *BLOCKS_LINES)

    return _distinct(make, n, random.Random(seed), "Blocksworld")


#: The built-in contrast sets: name -> f(n, seed).
CONTRAST_SETS = {
    "arithmetic": lambda n, seed: arithmetic_items(n, seed=seed),
    "maze": lambda n, seed: maze_items(n, seed=seed),
    "blocksworld": lambda n, seed: blocksworld_items(n, seed=seed),
}


def final_number(text: str) -> str | None:
    """The answer a GSM8K/MATH-style answer field gives: after ``####`` if present, else the
    last number in it (commas dropped); None when it has none."""
    text = str(text).replace(",", "")
    if "####" in text:
        text = text.split("####")[-1]
    found = NUMBER.findall(text)
    return found[-1] if found else None


def first_number(question: str) -> str | None:
    found = NUMBER.findall(str(question).replace(",", ""))
    return found[0] if found else None


def read_prompts(path: str | Path) -> tuple[list[ContrastItem], int]:
    """A user's question/answer JSONL as contrast items, and how many were left out (their
    question has no number to copy, or the answer equals its first number, so the pair
    contrasts nothing). Refused (UserError, one line): no file, no items, a line without a
    question or an answer, an answer with no number."""
    from reasonlens.jsonl import read_jsonl

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--prompts {path}: no such file")
    rows = read_jsonl(path, "an object with question and answer")
    if not rows:
        raise UserError(f"--prompts {path}: the file holds no prompts")
    items, dropped = [], 0
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise UserError(f"--prompts {path}: item {i} is not an object")
        q, a = row.get("question"), row.get("answer")
        if not isinstance(q, str) or not q.strip():
            raise UserError(f"--prompts {path}: item {i} has no question")
        if a is None or (isinstance(a, str) and not a.strip()):
            raise UserError(f"--prompts {path}: item {i} has no answer")
        answer = final_number(a)
        if answer is None:
            raise UserError(f"--prompts {path}: item {i}'s answer {str(a)[:40]!r} has no number")
        copy = first_number(q)
        if copy is None or copy == answer:
            dropped += 1
            continue
        items.append(ContrastItem(q.strip(), answer, copy, 0, source=path.name))
    if not items:
        raise UserError(
            f"--prompts {path}: none of its {len(rows)} items has a number in its question "
            "that differs from its answer (the control copies that number)"
        )
    return items, dropped
