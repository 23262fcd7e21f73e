"""Controls for lag probes: what a probe can earn without the residual stream's foresight.

(a) :func:`shuffled_chain_labels`: every chain gets another chain's labels, aligned from the
    chain's first token (cut, or padded with "no label", to its length). Where in a chain
    backtracking tends to happen survives; which activations go with which backtracks does not.
    The same grid fitted on it should sit at chance.
(b) Lexical baselines, each a chain source to fit the same grid on:
    :func:`token_embedding_source` (the layer-0 input: token embeddings, no context),
    :func:`bag_of_tokens_source` (multi-hot over the last k tokens: the surface text nearby)
    and :func:`prefix_lexical_source` (what the probe's residual stream can see without any
    understanding: every token of the prompt and chain so far, the last k tokens, the position
    in the chain and the distance since the last span).
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
    """``source`` with the chains' labels permuted among chains (control (a)): one draw; a
    permutation null (``null.permutation_null``) takes many."""
    n = len(source.labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return WithLabels(source, permuted_chain_labels(source.labels, perm))


def permuted_chain_labels(
    labels: Sequence[torch.Tensor], perm: Sequence[int]
) -> list[torch.Tensor]:
    """Chain i gets chain ``perm[i]``'s labels, aligned from its first scored token (cut, or
    padded with -1, to its own scored tokens): where in a chain spans fall survives, which
    activations go with them does not."""
    out = []
    for i, donor in enumerate(perm):
        mine, theirs = labels[i], labels[int(donor)]
        rows = torch.nonzero(mine >= 0).squeeze(1)
        given = theirs[theirs >= 0]
        y = torch.full_like(mine, -1)
        k = min(len(rows), len(given))
        y[rows[:k]] = given[:k]
        y[rows[k:]] = -1
        out.append(y)
    return out


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

    def window(self, i: int) -> torch.Tensor:
        """``[T, dim]`` multi-hot of chain i's last k tokens at every t."""
        cols = self.column(self._tokens[i])
        t = len(cols)
        x = torch.zeros(t, self.dim)
        for j in range(min(self.k, t)):
            x[torch.arange(j, t), cols[: t - j]] = 1.0
        return x

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
        return [self.window(i)[None] for i in chains]


def bag_of_tokens_source(
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[torch.Tensor],
    k: int = 8,
    dim: int = 4096,
    ids: Sequence[str] | None = None,
) -> BagOfTokens:
    """Control (b): what the last ``k`` tokens' surface text carries."""
    return BagOfTokens(input_ids, labels, k, dim, ids)


#: Distance bins (tokens) of the position features: 0, 1, 2-3, 4-7, ..., 256 and more.
_BINS = torch.tensor([0, 1, 2, 4, 8, 16, 32, 64, 128, 256])


def _binned(value: torch.Tensor) -> torch.Tensor:
    """``[T, len(_BINS)]`` one-hot of each value's distance bin."""
    idx = torch.bucketize(value, _BINS, right=True) - 1
    return torch.nn.functional.one_hot(idx.clamp(min=0), len(_BINS)).float()


def position_features(labels: torch.Tensor) -> torch.Tensor:
    """``[T, 26]`` what a chain's position and its spans so far say at every token t, from
    the labels up to t only: the position in the chain (log and binned), whether a span has
    happened yet, the distance since the last span's token (log and binned), the number of
    spans so far, whether t is inside a span and how far into it."""
    t = len(labels)
    idx = torch.arange(t)
    scored = torch.nonzero(labels >= 0)
    start = int(scored[0]) if len(scored) else 0
    pos = (idx - start).clamp(min=0)
    inside = labels == 1
    before = torch.cat([torch.zeros(1, dtype=torch.bool), inside[:-1]])
    onset = inside & ~before
    last = torch.cummax(torch.where(inside, idx, -1), 0).values
    began = torch.cummax(torch.where(onset, idx, -1), 0).values
    seen = (last >= 0).float()
    since = torch.where(last >= 0, idx - last, 0)
    into = torch.where(inside, idx - began, 0)
    return torch.cat(
        [
            torch.log1p(pos.float())[:, None],
            _binned(pos),
            seen[:, None],
            (torch.log1p(since.float()) * seen)[:, None],
            _binned(since) * seen[:, None],
            torch.log1p(torch.cumsum(onset, 0).float())[:, None],
            inside.float()[:, None],
            torch.log1p(into.float())[:, None],
        ],
        1,
    )


class PrefixLexical(BagOfTokens):
    """Chain source of what the whole prefix says on its surface, at every token t: log(1 +
    count) of every token id in the prompt and chain up to t, multi-hot of the last ``k``
    tokens, and :func:`position_features` (from the labels up to t). The residual stream at t
    sees all of this; a probe must read more than a linear map of it to be "beyond the text".
    One feature set, named ``"prefix"``; token columns as :class:`BagOfTokens`'."""

    @property
    def layers(self) -> list[Hashable]:
        return ["prefix"]

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]:
        out = []
        for i in chains:
            cols = self.column(self._tokens[i])
            counts = torch.zeros(len(cols), self.dim)
            counts[torch.arange(len(cols)), cols] = 1.0
            prefix = torch.log1p(torch.cumsum(counts, 0))
            x = torch.cat([prefix, self.window(i), position_features(self._labels[i])], 1)
            out.append(x[None])
        return out


def prefix_lexical_source(
    input_ids: Sequence[Sequence[int]],
    labels: Sequence[torch.Tensor],
    k: int = 8,
    dim: int = 4096,
    ids: Sequence[str] | None = None,
) -> PrefixLexical:
    """Control (b): the whole prefix's surface text and where the chain stands (see
    :class:`PrefixLexical`)."""
    return PrefixLexical(input_ids, labels, k, dim, ids)


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
