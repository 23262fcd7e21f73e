"""Character spans to token ranges, through a fast tokenizer's offset mapping.

A Blocksworld example knows every chunk of its text as a character span (rule, states, each
step, its action prompt, its answer). Metrics and analyses need them as token ranges: the answer
token to score, the token just before it whose logits predict it, the tokens of a chunk whose
activations a probe reads. The text is tokenised once, exactly as training tokenises it
(``tokenizer(prompt + completion)`` with the tokenizer's own special tokens), and every span is
mapped onto that one token sequence.

A token belongs to a span when it overlaps it. With BPE tokenizers the answer token usually
carries the space before the word (``" red"`` covers the space and ``red``): it is the token
holding the answer's first character. A chunk boundary inside a token (a merge across two
chunks) puts that token in both ranges. Zero-width tokens (BOS and other special tokens, whose
offsets are ``(0, 0)``) belong to no span.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from reasonlens.tasks.blocksworld import Example

Span = tuple[int, int]
Offsets = Sequence[tuple[int, int]]


class TokenLocator:
    """Answers many span lookups on one offset mapping (binary search, built once)."""

    def __init__(self, offsets: Offsets):
        kept = [(i, int(s), int(e)) for i, (s, e) in enumerate(offsets) if e > s]
        self._index = [i for i, _, _ in kept]
        self._starts = [s for _, s, _ in kept]
        self._ends = [e for _, _, e in kept]
        if any(b < a for a, b in zip(self._starts, self._starts[1:], strict=False)):
            raise ValueError("token offsets are not in text order")

    def span(self, char_span: Span) -> Span:
        """``(first_token, last_token_exclusive)`` of the tokens overlapping ``char_span``."""
        start, end = char_span
        if not 0 <= start < end:
            raise ValueError(f"not a non-empty character span: {char_span}")
        lo = bisect.bisect_right(self._ends, start)  # first token ending after `start`
        hi = bisect.bisect_left(self._starts, end)  # tokens starting before `end`
        if lo >= hi:
            raise ValueError(f"no token covers the characters {start}:{end}")
        return self._index[lo], self._index[hi - 1] + 1


def token_spans(offsets: Offsets, char_span: Span) -> Span:
    """``(first_token, last_token_exclusive)``: the tokens overlapping characters
    ``[start, end)``, from the one holding the first character to the one holding the last."""
    return TokenLocator(offsets).span(char_span)


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

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example) -> EncodedExample:
    """Tokenise ``prompt + completion`` once, as training does, and locate every chunk."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("locating chunks needs a fast tokenizer (one with offset mappings)")
    enc = tokenizer(example.text, return_offsets_mapping=True)
    offsets = tuple((int(s), int(e)) for s, e in enc["offset_mapping"])
    return EncodedExample(tuple(enc["input_ids"]), offsets, example_token_spans(example, offsets))
