"""Every chunk of a Blocksworld example as token ranges (rule, states, slots, each step).

An example knows all its chunks as character spans (:class:`~.formats.Spans`); the planning
analyses read activations at their tokens. The mapping is the generic one of
:mod:`reasonlens.tasks.tokens` (a token belongs to every span it overlaps), applied to the one
tokenisation of ``prompt + completion`` that training and teacher forcing use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from reasonlens.tasks.blocksworld.example import Example
from reasonlens.tasks.tokens import Offsets, Span, TokenLocator, encode_text

if TYPE_CHECKING:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase


@dataclass(frozen=True)
class StepTokens:
    """Token ranges of one plan step: its line, the text before the blank, the answer."""

    step: Span
    action_prompt: Span
    answer: Span

    @property
    def readout(self) -> int:
        """The token whose logits predict the answer's first token (the one just before it)."""
        return self.answer[0] - 1


@dataclass(frozen=True)
class ExampleTokens:
    """Every chunk of an example as half-open token ranges ``[first, last)``.

    Same names as :class:`~reasonlens.tasks.blocksworld.Spans`, plus ``prompt`` (from token 0,
    BOS included, to the end of the ``Plan:`` line) and ``completion`` (the step lines).
    """

    prompt: Span
    completion: Span
    rule_header: Span
    rule: Span
    init_header: Span
    init_state: Span
    init_slots: tuple[Span, ...]
    goal_header: Span
    goal_state: Span
    goal_slots: tuple[Span, ...]
    plan_header: Span
    steps: tuple[StepTokens, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def example_token_spans(example: Example, offsets: Offsets) -> ExampleTokens:
    """Map all of an example's character spans to token ranges of its tokenised ``text``."""
    loc = TokenLocator(offsets)
    sp = example.spans
    prompt_end = loc.span((0, len(example.prompt)))[1]
    return ExampleTokens(
        prompt=(0, prompt_end),
        completion=loc.span((len(example.prompt), len(example.text))),
        rule_header=loc.span(sp.rule_header),
        rule=loc.span(sp.rule),
        init_header=loc.span(sp.init_header),
        init_state=loc.span(sp.init_state),
        init_slots=tuple(loc.span(s) for s in sp.init_slots),
        goal_header=loc.span(sp.goal_header),
        goal_state=loc.span(sp.goal_state),
        goal_slots=tuple(loc.span(s) for s in sp.goal_slots),
        plan_header=loc.span(sp.plan_header),
        steps=tuple(
            StepTokens(loc.span(s.step), loc.span(s.action_prompt), loc.span(s.answer))
            for s in sp.steps
        ),
    )


@dataclass(frozen=True)
class EncodedExample:
    """An example's full text as token ids, with the token range of every chunk."""

    input_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    tokens: ExampleTokens

    @property
    def answers(self) -> tuple[Span, ...]:
        """Each step's answer tokens: what teacher-forced scoring reads."""
        return tuple(s.answer for s in self.tokens.steps)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example) -> EncodedExample:
    """Tokenise ``prompt + completion`` once, as training does, and locate every chunk."""
    ids, offsets = encode_text(tokenizer, example.text)
    return EncodedExample(ids, offsets, example_token_spans(example, offsets))
