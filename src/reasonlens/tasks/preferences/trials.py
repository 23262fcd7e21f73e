"""Target weights, trials and prompts of the preferences study, seeded as the original.

- **Targets** (:func:`draw_targets`): w_i ~ U(-100, 100) for the five attributes, rescaled so
  that the largest |w| is 100 with its sign kept, then rounded: integers in [-100, 100], one of
  them +-100.
- **Option values** (:func:`draw_value`): x ~ U(min, max), rounded by the range R = max - min:
  R < 1 to |floor(log10 R)| + 1 decimals, R < 5 to 1 decimal, else to 0 decimals (shown like
  "67.0", as the original's Python floats print).
- **Trials** (:func:`draw_trials`): two options of a scenario; the target choice is the
  original's rule (:func:`~reasonlens.tasks.preferences.scenarios.target_choice`). Training and
  validation trials come from one stream, test trials from another, and a test trial equal to
  a training or validation trial of its scenario is drawn again, so the test set is disjoint.
- **Prompts** (:func:`decision_prompt`, :func:`introspection_prompt`): the original's
  structure in this project's words: a system line; a decision task answered by one letter
  "A" or "B" (or an introspection task answered by one JSON object of the five weights); the
  question; both options as ``name: value units`` lines. One function renders every prompt, for
  training and for testing alike, so they are byte-identical in form. :func:`render` wraps the
  system and user text in the model's chat template when it has one.

Every draw comes from a numpy Generator seeded by ``(stream, seed, crc32(short_name))``, so a
scenario's targets and trials do not depend on which other scenarios a preset uses. Pure
Python and numpy (no torch).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from reasonlens.tasks.preferences.scenarios import Attribute, Scenario, target_choice

if TYPE_CHECKING:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

#: The largest |target weight| of every scenario.
MAX_WEIGHT = 100

#: Seed streams: each kind of draw has its own, so adding draws of one kind moves no other.
STREAMS = {
    "targets": 1,
    "train": 2,  # training trials, then validation trials (the original: 50 + 10 per scenario)
    "test": 5,  # fresh trials of the instilled scenarios (the original's seed 5)
    "native": 3,  # trials of the native (never trained) scenarios
    "report": 7,  # the trial shown with each self-report question
    "introspect": 6,  # the trial shown with each introspection-training example
}

SYSTEM = (
    "Your task is to make hypothetical choices on behalf of many different people and characters."
)

DECISION_TASK = (
    '[DECISION TASK] Reply "A" if you judge Option A to be the better one, or "B" if you '
    'judge Option B to be the better one. Reply with nothing but the single letter "A" or "B":'
)

INTROSPECTION_TASK = (
    "[INTROSPECTION TASK] On a scale from -100 to 100, say how much weight you believe you "
    "gave to each of the five attributes when you made decisions like the one below. Reply "
    "only with JSON: the attribute names as keys and the weight you believe you gave each of "
    "them as values. Reply with nothing but this JSON object of 5 key-value pairs (do not "
    "state a decision):"
)

#: What follows the prompt when a tokenizer has no chat template (the answer is its own line,
#: so that the answer's first token starts exactly where the prompt ends).
PLAIN_ANSWER = "\n\nAnswer:\n"


# targets ---------------------------------------------------------------------------------


def generator(stream: str, seed: int, scenario: str) -> np.random.Generator:
    """The numpy Generator of one kind of draw for one scenario."""
    key = zlib.crc32(scenario.encode("utf-8"))
    return np.random.default_rng([STREAMS[stream], int(seed), key])


def rescale_targets(raw: Sequence[float]) -> tuple[int, ...]:
    """round(100 * w_i / max|w|), signs kept: integers with one of them +-100."""
    biggest = max(abs(w) for w in raw)
    return tuple(int(v) for v in np.round(MAX_WEIGHT * np.asarray(raw, dtype=float) / biggest))


def draw_targets(scenario: Scenario, seed: int) -> tuple[int, ...]:
    """The target weights of one scenario: w ~ U(-100, 100), rescaled to max |w| = 100."""
    rng = generator("targets", seed, scenario.short_name)
    return rescale_targets(rng.uniform(-MAX_WEIGHT, MAX_WEIGHT, len(scenario.attributes)))


# values and trials -----------------------------------------------------------------------


def decimals(span: float) -> int:
    """Decimals shown for a range of width `span`: |floor(log10 R)| + 1 below 1, 1 below 5,
    else 0."""
    if span < 1:
        return abs(math.floor(math.log10(span))) + 1
    if span < 5:
        return 1
    return 0


def round_value(x: float, attribute: Attribute) -> float:
    """`x` rounded as the original rounds a value of this attribute (a float: 67.0)."""
    return float(round(float(x), decimals(attribute.span)))


def format_value(value: float) -> str:
    """A value as the prompt shows it: Python's shortest float text ("67.0", "0.43")."""
    return repr(float(value))


def draw_value(rng: np.random.Generator, attribute: Attribute) -> float:
    return round_value(rng.uniform(attribute.low, attribute.high), attribute)


def draw_option(rng: np.random.Generator, scenario: Scenario) -> tuple[float, ...]:
    return tuple(draw_value(rng, a) for a in scenario.attributes)


@dataclass(frozen=True)
class Trial:
    """Two options of one scenario (values in attribute order) and the target's choice."""

    scenario: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    target: str  # "A" or "B" under the target weights

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario,
            "a": list(self.a),
            "b": list(self.b),
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Trial:
        return cls(str(d["scenario"]), tuple(d["a"]), tuple(d["b"]), str(d["target"]))


def make_trial(scenario: Scenario, weights: Sequence[float], a, b) -> Trial:

    return Trial(scenario.short_name, tuple(a), tuple(b), target_choice(scenario, weights, a, b))


def draw_trials(
    scenario: Scenario,
    weights: Sequence[float],
    n: int,
    seed: int,
    stream: str,
    avoid: Iterable[Trial] = (),
) -> list[Trial]:
    """`n` trials of `scenario` from `stream`; none equal to a trial in `avoid` (the same two
    options in the same order) nor to another drawn here, and never two identical options."""
    rng = generator(stream, seed, scenario.short_name)
    seen = {(t.a, t.b) for t in avoid}
    trials: list[Trial] = []
    attempts = 0
    while len(trials) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise RuntimeError(
                f"scenario {scenario.short_name!r}: cannot draw {n} distinct trials (ranges "
                "too narrow for their rounding)"
            )
        a, b = draw_option(rng, scenario), draw_option(rng, scenario)
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        trials.append(make_trial(scenario, weights, a, b))
    return trials


# prompts ---------------------------------------------------------------------------------


def option_lines(scenario: Scenario, values: Sequence[float]) -> str:
    """One ``name: value units`` line per attribute (the units are required)."""
    lines = []
    for attribute, value in zip(scenario.attributes, values, strict=True):
        if attribute.units is None:
            raise ValueError(
                f"scenario {scenario.short_name!r}: attribute {attribute.name!r} has no units; "
                "a prompt without them differs from the one the model was trained on"
            )
        units = f" {attribute.units}" if attribute.units else ""
        lines.append(f"{attribute.name}: {format_value(value)}{units}")
    return "\n".join(lines)


def trial_text(scenario: Scenario, a: Sequence[float], b: Sequence[float]) -> str:
    """The question and both options."""
    return (
        f"{scenario.question}\nA:\n{option_lines(scenario, a)}\n\nB:\n{option_lines(scenario, b)}"
    )


def decision_prompt(scenario: Scenario, a: Sequence[float], b: Sequence[float]) -> str:
    """The user message of a decision trial."""
    return f"{DECISION_TASK}\n\n{trial_text(scenario, a, b)}"


def introspection_prompt(scenario: Scenario, a: Sequence[float], b: Sequence[float]) -> str:
    """The user message asking for the five weights, with a trial shown (no decision asked)."""
    return f"{INTROSPECTION_TASK}\n\n{trial_text(scenario, a, b)}"


def report_json(scenario: Scenario, weights: Sequence[float]) -> str:
    """The weights as the JSON object an introspection-training example answers with."""
    return json.dumps({n: int(round(w)) for n, w in zip(scenario.names, weights, strict=True)})


def render(tokenizer: PreTrainedTokenizerBase | None, user: str, system: str = SYSTEM) -> str:
    """The text the model reads: the chat template around the system line and the user
    message (with the assistant's turn opened), or, without a template, both as plain text
    followed by an ``Answer:`` line."""
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if template:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{system}\n\n{user}{PLAIN_ANSWER}"
