"""Controls for lag probes: what a probe can earn without the residual stream's foresight.

(a) :func:`shuffled_chain_labels`: every chain gets another chain's labels, aligned from the
    chain's first token (cut, or padded with "no label", to its length). Where in a chain
    backtracking tends to happen survives; which activations go with which backtracks does not.
    The same grid fitted on it should sit at chance.
(b) Lexical baselines, each a chain source to fit the same grid on:
    :func:`token_embedding_source` (the layer-0 input: token embeddings, no context) and
    :func:`bag_of_tokens_source` (multi-hot over the last k tokens: the surface text nearby).
    For a llama-style model the captured ``layers.0.resid_pre`` equals the token embeddings
    (Gemma scales them by sqrt(d), which standardisation removes).
(c) :func:`sentence_start_labels`: the positives split by whether their span starts a new
    sentence; score the fitted probes on each half (``probes.evaluate(..., labels=...)``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import torch

from reasonlens.analyses.lag_probes.sources import ChainSource, WithLabels, check_labels
from reasonlens.errors import UserError

if TYPE_CHECKING:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

SENTENCE_END = ".!?"
_CLOSERS = "\"')]}*"


def shuffled_chain_labels(source: ChainSource, seed: int = 0) -> WithLabels:
    """``source`` with the chains' labels permuted among chains (control (a))."""
    labels = source.labels
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    out = []
    for i, donor in enumerate(perm):
        mine, theirs = labels[i], labels[donor]
        rows = torch.nonzero(mine >= 0).squeeze(1)
        given = theirs[theirs >= 0]
        y = torch.full_like(mine, -1)
        k = min(len(rows), len(given))
        y[rows[:k]] = given[:k]
        y[rows[k:]] = -1
        out.append(y)
    return WithLabels(source, out)


class TokenEmbeddings:
    """Chain source of token embeddings: row t is ``embedding[input_ids[t]]`` (one feature
    set, named ``"embed"``)."""

    def __init__(
        self,
        embedding: torch.Tensor,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[torch.Tensor],
        ids: Sequence[str] | None = None,
    ):
        self.embedding = embedding.detach()
        self._tokens = [torch.as_tensor(list(t), dtype=torch.long) for t in input_ids]
        self._ids = [str(i) for i in range(len(self._tokens))] if ids is None else list(ids)
        self._labels = check_labels(labels, self._ids)
        _check_lengths(self._ids, self._tokens, self._labels)
        top = max(int(t.max()) for t in self._tokens if t.numel())
        if top >= self.embedding.shape[0]:
            raise UserError(f"token id {top} is outside the embedding ({self.embedding.shape[0]})")

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def layers(self) -> list[Hashable]:
        return ["embed"]

    @property
    def labels(self) -> list[torch.Tensor]:
        return self._labels

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]:
        return [self.embedding[self._tokens[i].to(self.embedding.device)][None] for i in chains]


def token_embedding_source(
    embedding: torch.Tensor,
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[torch.Tensor],
    ids: Sequence[str] | None = None,
) -> TokenEmbeddings:
    """Control (b): the layer-0 input. ``embedding``: the model's input embedding matrix
    ``[vocab, d]`` (``model.hf.get_input_embeddings().weight``)."""
    return TokenEmbeddings(embedding, input_ids, labels, ids)


class BagOfTokens:
    """Chain source of multi-hot features over the last ``k`` tokens (t-k+1 .. t): one column
    per token id seen in the chains when there are at most ``dim`` of them, else ids hashed
    into ``dim`` columns. One feature set, named ``"bag{k}"``."""

    def __init__(
        self,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[torch.Tensor],
        k: int = 8,
        dim: int = 4096,
        ids: Sequence[str] | None = None,
    ):
        if k < 1 or dim < 1:
            raise UserError("a bag of tokens needs k >= 1 and dim >= 1")
        self.k, self.dim = k, dim
        self._tokens = [torch.as_tensor(list(t), dtype=torch.long) for t in input_ids]
        self._ids = [str(i) for i in range(len(self._tokens))] if ids is None else list(ids)
        self._labels = check_labels(labels, self._ids)
        _check_lengths(self._ids, self._tokens, self._labels)
        vocab = torch.unique(torch.cat(self._tokens))
        self.hashed = len(vocab) > dim
        if self.hashed:
            self._column = None
        else:
            self._column = torch.full((int(vocab.max()) + 1,), -1, dtype=torch.long)
            self._column[vocab] = torch.arange(len(vocab))
            self.dim = len(vocab)

    def column(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._column is not None:
            return self._column[tokens]
        return (tokens * 2654435761) % self.dim  # Knuth's multiplicative hash

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def layers(self) -> list[Hashable]:
        return [f"bag{self.k}"]

    @property
    def labels(self) -> list[torch.Tensor]:
        return self._labels

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]:
        out = []
        for i in chains:
            cols = self.column(self._tokens[i])
            t = len(cols)
            x = torch.zeros(t, self.dim)
            for j in range(min(self.k, t)):
                x[torch.arange(j, t), cols[: t - j]] = 1.0
            out.append(x[None])
        return out


def bag_of_tokens_source(
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[torch.Tensor],
    k: int = 8,
    dim: int = 4096,
    ids: Sequence[str] | None = None,
) -> BagOfTokens:
    """Control (b): what the last ``k`` tokens' surface text carries."""
    return BagOfTokens(input_ids, labels, k, dim, ids)


def _check_lengths(ids, tokens, labels) -> None:
    for cid, t, y in zip(ids, tokens, labels, strict=True):
        if len(t) != len(y):
            raise UserError(f"chain {cid}: {len(t)} tokens but {len(y)} labels")


def token_texts(tokenizer: PreTrainedTokenizerBase, input_ids: Sequence[int]) -> list[str]:
    """Each token's text on its own (a byte-level piece may decode to a replacement char)."""
    return [tokenizer.decode([int(t)]) for t in input_ids]


def starts_sentence(texts: Sequence[str], i: int, first: int = 0) -> bool:
    """Whether token i begins a new sentence: the chain's first token (``first``), a token
    after a line break, or after sentence-ending punctuation (closing quotes and brackets
    skipped)."""
    if i <= first:
        return True
    lead = texts[i][: len(texts[i]) - len(texts[i].lstrip())]
    before = "".join(texts[max(first, i - 16) : i])
    gap = before[len(before.rstrip()) :] + lead
    if "\n" in gap:
        return True
    stripped = before.rstrip().rstrip(_CLOSERS)
    if not stripped:
        return i - 16 <= first  # only whitespace since the chain began
    return stripped[-1] in SENTENCE_END


def sentence_start_labels(
    labels: Sequence[torch.Tensor], texts: Sequence[Sequence[str]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Control (c): ``(starting, inside)`` label sets. Each run of consecutive positive tokens
    (one span) goes to ``starting`` when its first token begins a sentence, else to
    ``inside``; in each set the other half's positives are -1 (not scored), negatives stay."""
    starting, inside = [], []
    for y, tx in zip(labels, texts, strict=True):
        if len(tx) != len(y):
            raise UserError(f"{len(tx)} token texts for {len(y)} labels")
        first = int(torch.nonzero(y >= 0)[0]) if bool((y >= 0).any()) else 0
        a, b = y.clone(), y.clone()
        t = 0
        while t < len(y):
            if y[t] != 1:
                t += 1
                continue
            end = t
            while end < len(y) and y[end] == 1:
                end += 1
            if starts_sentence(tx, t, first):
                b[t:end] = -1
            else:
                a[t:end] = -1
            t = end
        starting.append(a)
        inside.append(b)
    return starting, inside
