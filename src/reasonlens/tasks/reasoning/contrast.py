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
    copy: str  # what the control prompt asks for (the first number in the question)
    steps: int  # computation steps (0 when unknown: a user's question)
    source: str = "arithmetic"

    def to_dict(self) -> dict:
        return asdict(self)


def reasoning_prompt(question: str) -> str:
    return f"Question: {question}\n{REASONING_LINE}\nAnswer:"


def control_prompt(question: str) -> str:
    return f"Question: {question}\n{CONTROL_LINE}\nAnswer:"


def contrast_prompts(items: list[ContrastItem]) -> tuple[list[str], list[str]]:
    """The reasoning prompts and their matched controls, item by item."""
    return [reasoning_prompt(x.question) for x in items], [
        control_prompt(x.question) for x in items
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
