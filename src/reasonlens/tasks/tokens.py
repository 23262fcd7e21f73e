"""Character spans to token ranges, through a fast tokenizer's offset mapping.

A task knows the chunks of its text as character spans (an answer, a step line, a state).
Metrics and analyses need them as token ranges: the answer token to score, the token just
before it whose logits predict it, the tokens of a chunk whose activations a probe reads. The
text is tokenised once, exactly as training tokenises it (``tokenizer(prompt + completion)``
with the tokenizer's own special tokens), and every span is mapped onto that one sequence.

A token belongs to a span when it overlaps it. With BPE tokenizers an answer token usually
carries the space before the word (``" red"`` covers the space and ``red``): it is the token
holding the answer's first character. A chunk boundary inside a token (a merge across two
chunks) puts that token in both ranges. Zero-width tokens (BOS and other special tokens, whose
offsets are ``(0, 0)``) belong to no span.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reasonlens.tasks.base import TaskItem

if TYPE_CHECKING:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

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


def encode_text(
    tokenizer: PreTrainedTokenizerBase, text: str
) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """``(input_ids, offsets)`` of ``text`` tokenised as training does (special tokens
    included); refuses a tokenizer without offset mappings (a slow one)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("locating chunks needs a fast tokenizer (one with offset mappings)")
    enc = tokenizer(text, return_offsets_mapping=True)
    offsets = tuple((int(s), int(e)) for s, e in enc["offset_mapping"])
    return tuple(enc["input_ids"]), offsets


@dataclass(frozen=True)
class EncodedItem:
    """A task item's text as token ids, with its named spans as token ranges.

    ``completion`` is the token range of the gold completion; ``spans`` has the item's span
    names, each a tuple of token ranges.
    """

    input_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    completion: Span
    spans: Mapping[str, tuple[Span, ...]]

    @property
    def answers(self) -> tuple[Span, ...]:
        """The token ranges teacher-forced scoring reads (the item's ``"answers"`` spans)."""
        return self.spans.get("answers", ())

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_item(tokenizer: PreTrainedTokenizerBase, item: TaskItem) -> EncodedItem:
    """Tokenise ``prompt + completion`` once and map every named span to tokens."""
    ids, offsets = encode_text(tokenizer, item.text)
    loc = TokenLocator(offsets)
    return EncodedItem(
        input_ids=ids,
        offsets=offsets,
        completion=loc.span((len(item.prompt), len(item.text))),
        spans={name: tuple(loc.span(s) for s in spans) for name, spans in item.spans.items()},
    )
