"""Chains as probe rows: standardised features on the device and lag targets, batch by batch.

A chain's *rows* are its scored tokens (label >= 0 in the source: the chain, not the prompt).
Row t's target at lag k is the label of token t + lag, -1 where that is not a scored token.
Targets may come from other labels than the source's (a control relabels positives), over the
same rows, and from several label sets at once (a permutation null: one column per set and lag).

**Onset targets** (``onset=True``, positive lags only) measure anticipation, not continuation:
at lag +k a positive is a token t+k inside a span whose first token lies in (t, t+k]. Rows
where t is itself inside a span have no target (at +k their positives would mostly be the
same span going on, readable from the present). With 0/1 labels a span is a run of 1s, so on
the rows kept (label[t] = 0) every positive at t+k belongs to a span that began after t: the
second exclusion ("the span at t+k began at or before t") is the first one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from reasonlens.analyses.lag_probes.sources import ChainSource


def lag_targets(
    labels: torch.Tensor,
    lags: Sequence[int],
    rows: torch.Tensor | None = None,
    onset: bool = False,
) -> torch.Tensor:
    """``[T, K]`` targets: row t, lag k holds ``labels[t + lags[k]]`` (-1 where t + lag is off
    the chain or its label is -1), and -1 on rows that are not scored (``rows``, default
    ``labels >= 0``). ``onset``: also -1 on rows inside a span (label 1), so that a positive is
    a span beginning after t (see the module doc; every lag must be positive)."""
    if onset:
        if min(lags) <= 0:
            raise ValueError(f"onset targets need positive lags, got {list(lags)}")
        rows = (labels >= 0 if rows is None else rows) & (labels == 0)
    t = labels.shape[0]
    lo, hi = max(0, -min(lags)), max(0, max(lags))
    padded = torch.full((t + lo + hi,), -1, dtype=torch.long)
    padded[lo : lo + t] = labels
    idx = torch.arange(t)[:, None] + torch.tensor(list(lags))[None, :] + lo
    out = padded[idx]
    out[~(labels >= 0 if rows is None else rows)] = -1
    return out


def onset_counts(labels: Sequence[torch.Tensor], lags: Sequence[int]) -> list[dict[str, int]]:
    """Per positive lag, over the chains of ``labels``: the all-targets measure's rows and
    positives, how many of those positives are continuation (t already inside a span), and the
    onset measure's rows and positives, with the rows it leaves out (t inside a span)."""
    lags = [k for k in lags if k > 0]
    if not lags:
        return []
    total = torch.zeros(6, len(lags), dtype=torch.long)
    for y in labels:
        every = lag_targets(y, lags)
        onset = lag_targets(y, lags, onset=True)
        inside = (y == 1)[:, None]
        total += torch.stack(
            [
                (every >= 0).sum(0),
                (every == 1).sum(0),
                ((every == 1) & inside).sum(0),
                (onset >= 0).sum(0),
                (onset == 1).sum(0),
                ((every >= 0) & inside).sum(0),
            ]
        )
    names = ("rows", "positives", "continuation", "onset_rows", "onset_positives", "excluded")
    return [
        {"lag": lag, **{n: int(total[j, k]) for j, n in enumerate(names)}}
        for k, lag in enumerate(lags)
    ]


@dataclass
class Rows:
    """Rows of some chains: standardised features ``[F, N, d]`` (float32, on the device),
    targets ``[N, K]`` (int8, -1: none) and each row's position in the list of chains read."""

    x: torch.Tensor
    y: torch.Tensor
    chain: torch.Tensor


@dataclass
class RowReader:
    """Reads a source's chains as :class:`Rows`; standardised features of as many chains as fit
    in ``cache_bytes`` are kept for the next read (labels are never cached).

    ``onset``: onset targets (module doc). ``label_sets``: targets from several label sets of
    the same chains instead of the source's, one column per (set, lag), set-major: a fit over
    them is one fit per set, batched (a permutation null)."""

    source: ChainSource
    lags: tuple[int, ...]
    device: torch.device
    mean: torch.Tensor  # [F, d], on the device
    scale: torch.Tensor  # [F, d], on the device
    cache_bytes: int = 0
    onset: bool = False
    label_sets: Sequence[Sequence[torch.Tensor]] | None = None
    _cache: dict[int, torch.Tensor] = field(default_factory=dict)
    _cached_bytes: int = 0
    _targets: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Target columns: lags, times the label sets."""
        return len(self.lags) * (len(self.label_sets) if self.label_sets else 1)

    def targets(self, i: int, labels: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``[n_rows, width]`` int8 targets of chain i (from ``labels`` instead of the source's
        or the label sets; those are kept after the first call: they are small)."""
        if labels is None and i in self._targets:
            return self._targets[i]
        rows = self.source.labels[i] >= 0
        sets = [labels] if labels is not None else self.label_sets or [self.source.labels]
        out = torch.cat(
            [lag_targets(ys[i], self.lags, rows, self.onset)[rows] for ys in sets], 1
        ).to(torch.int8)
        if labels is None:
            self._targets[i] = out
        return out

    def _prepare(self, i: int, feats: torch.Tensor) -> torch.Tensor:
        keep = (self.source.labels[i] >= 0).to(feats.device)
        x = feats[:, keep].to(self.device, torch.float32, non_blocking=True)
        return (x - self.mean[:, None]) / self.scale[:, None]

    def fetch(self, chains: Sequence[int]) -> list[torch.Tensor]:
        """Raw features of the chains not cached, in order (safe to call on a thread)."""
        todo = [i for i in chains if i not in self._cache]
        return self.source.features(todo) if todo else []

    def read(
        self,
        chains: Sequence[int],
        raw: list[torch.Tensor] | None = None,
        labels: Sequence[torch.Tensor] | None = None,
    ) -> Rows:
        """Rows of ``chains`` (``raw``: what :meth:`fetch` returned for them)."""
        raw = self.fetch(chains) if raw is None else raw
        xs, ys, cs = [], [], []
        it = iter(raw)
        for pos, i in enumerate(chains):
            x = self._cache.get(i)
            if x is None:
                x = self._prepare(i, next(it))
                size = x.numel() * x.element_size()
                if self._cached_bytes + size <= self.cache_bytes:
                    self._cache[i] = x
                    self._cached_bytes += size
            y = self.targets(i, labels).to(self.device)
            xs.append(x)
            ys.append(y)
            cs.append(torch.full((y.shape[0],), pos, dtype=torch.long, device=self.device))
        return Rows(torch.cat(xs, 1), torch.cat(ys), torch.cat(cs))

    def batches(
        self,
        chains: Sequence[int],
        batch_tokens: int,
        labels: Sequence[torch.Tensor] | None = None,
    ) -> Iterator[tuple[list[int], Rows]]:
        """``(chains, rows)`` in batches of about ``batch_tokens`` rows; the next batch is read
        on a background thread while the current one is used."""
        sizes = [int((self.source.labels[i] >= 0).sum()) for i in chains]
        groups = list(_group(chains, sizes, batch_tokens))
        if not groups:
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.fetch, groups[0])
            for k, group in enumerate(groups):
                raw = pending.result()
                if k + 1 < len(groups):
                    pending = pool.submit(self.fetch, groups[k + 1])
                yield group, self.read(group, raw, labels)


def _group(chains: Sequence[int], sizes: Sequence[int], budget: int) -> Iterator[list[int]]:
    group: list[int] = []
    total = 0
    for i, size in zip(chains, sizes, strict=True):
        group.append(i)
        total += size
        if total >= budget:
            yield group
            group, total = [], 0
    if group:
        yield group


def probe_logits(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[F, N, K]`` logits of probes ``weight [F, K, d]``, ``bias [F, K]`` on ``x [F, N, d]``."""
    return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))


@torch.no_grad()
def score_chains(
    weight: torch.Tensor,
    bias: torch.Tensor,
    reader: RowReader,
    chains: Sequence[int],
    batch_tokens: int = 8192,
    labels: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every probe's logits on the rows of ``chains``, in batches: scores ``[F, K, N]``,
    targets ``[K, N]`` (int8) and each row's position in ``chains`` ``[N]``."""
    scores, targets, where = [], [], []
    base = 0  # batches are consecutive runs of `chains`
    for group, rows in reader.batches(chains, batch_tokens, labels):
        scores.append(probe_logits(weight, bias, rows.x).permute(0, 2, 1))
        targets.append(rows.y.T)
        where.append(rows.chain + base)
        base += len(group)
    return torch.cat(scores, 2), torch.cat(targets, 1), torch.cat(where)
