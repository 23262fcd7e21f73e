"""Where lag probes read their data: per-chain activations and token labels, chain by chain.

A *chain source* holds N chains. Its labels are small and held in memory: one long tensor
``[T_i]`` per chain with 1/0 for the chain's tokens and -1 for tokens that are not scored (the
prompt). Its features are read on demand, a few chains at a time: ``features(chains)`` returns
one ``[F, T_i, d]`` tensor per chain, F feature sets (layers) over every token of the chain.
Nothing asks for all chains at once, so a source backed by an activation store streams.

- :class:`TensorChains`: features already in memory (tests, benchmarks, small data);
- :class:`StoreChains`: an :class:`~reasonlens.trace.ActivationStore` (or in-memory
  ``Activations``) captured with ``positions="all"``, one example per chain, one site per
  feature set; its tokens are checked against the labels' ``input_ids``;
- :class:`WithLabels`, :class:`FeatureSubset`: the same features with other labels (controls)
  or fewer feature sets.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from reasonlens.errors import UserError


@runtime_checkable
class ChainSource(Protocol):
    """Per-chain features and labels (see the module docstring)."""

    @property
    def ids(self) -> Sequence[str]: ...

    @property
    def layers(self) -> Sequence[Hashable]: ...

    @property
    def labels(self) -> Sequence[torch.Tensor]: ...

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]: ...


def labels_from_rows(rows: Sequence[Any]) -> list[torch.Tensor]:
    """Label tensors from labels.jsonl rows (``labels`` 0/1 and ``start``; objects or dicts):
    the prompt's tokens become -1 (not scored)."""
    out = []
    for row in rows:
        labels = row["labels"] if isinstance(row, dict) else row.labels
        start = row.get("start", 0) if isinstance(row, dict) else row.start
        y = torch.tensor(list(labels), dtype=torch.long)
        y[:start] = -1
        out.append(y)
    return out


def check_labels(labels: Sequence[torch.Tensor], ids: Sequence[str]) -> list[torch.Tensor]:
    """Long tensors [T] of -1/0/1, one per chain (a UserError naming the chain otherwise)."""
    if len(labels) != len(ids):
        raise UserError(f"{len(labels)} label rows for {len(ids)} chains")
    out = []
    for cid, y in zip(ids, labels, strict=True):
        y = torch.as_tensor(y)
        if y.dim() != 1 or y.is_floating_point():
            raise UserError(f"chain {cid}: labels must be a 1-D integer tensor")
        if y.numel() and (int(y.min()) < -1 or int(y.max()) > 1):
            raise UserError(f"chain {cid}: labels must be 0 or 1 (-1: not scored)")
        out.append(y.long())
    return out


class TensorChains:
    """Chains whose features are in memory: ``features[i]`` is ``[F, T_i, d]`` (any device and
    float dtype; the probes move each batch to their device as float32)."""

    def __init__(
        self,
        features: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        ids: Sequence[str] | None = None,
        layers: Sequence[Hashable] | None = None,
    ):
        if not features:
            raise UserError("no chains")
        self._features = list(features)
        self._ids = [str(i) for i in range(len(features))] if ids is None else list(ids)
        self._labels = check_labels(labels, self._ids)
        n_layers = self._features[0].shape[0]
        self._layers = list(range(n_layers)) if layers is None else list(layers)
        for cid, f, y in zip(self._ids, self._features, self._labels, strict=True):
            if f.dim() != 3 or f.shape[0] != len(self._layers) or f.shape[1] != len(y):
                raise UserError(
                    f"chain {cid}: features {tuple(f.shape)} are not [{len(self._layers)} "
                    f"layers, {len(y)} tokens, d]"
                )

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def layers(self) -> list[Hashable]:
        return self._layers

    @property
    def labels(self) -> list[torch.Tensor]:
        return self._labels

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]:
        return [self._features[i] for i in chains]


class StoreChains:
    """Chains read lazily from an activation store: example i is chain i, every token kept
    (``positions="all"``), feature set f is ``sites[f]``. Reads come a run of consecutive
    chains at a time, so a batch touches only its shards."""

    def __init__(
        self,
        store: Any,
        sites: Sequence[str],
        labels: Sequence[torch.Tensor],
        ids: Sequence[str] | None = None,
        input_ids: Sequence[Sequence[int]] | None = None,
        layers: Sequence[Hashable] | None = None,
    ):
        self.store = store
        self.sites = list(sites)
        if not self.sites:
            raise UserError("no sites to read")
        missing = [s for s in self.sites if s not in store.sites]
        if missing:
            raise UserError(
                f"site {missing[0]!r} is not in the activation store; it has: "
                f"{', '.join(store.sites)}"
            )
        positions = (getattr(store, "meta", None) or {}).get("positions", "all")
        if positions != "all":
            raise UserError(
                f"lag probes need every token's activations; the store kept {positions!r}"
            )
        n = store.n_examples
        self._ids = [str(i) for i in range(n)] if ids is None else list(ids)
        self._labels = check_labels(labels, self._ids)
        offsets = store.row_offsets() if callable(store.row_offsets) else store.row_offsets
        self._offsets = torch.as_tensor(offsets, dtype=torch.long)
        rows = torch.diff(self._offsets).tolist()
        for cid, count, y in zip(self._ids, rows, self._labels, strict=True):
            if count != len(y):
                raise UserError(f"chain {cid}: the store holds {count} tokens, the labels {len(y)}")
        if input_ids is not None:
            if len(input_ids) != n:
                raise UserError(f"{len(input_ids)} token rows for a store of {n} chains")
            for i, (cid, ids_) in enumerate(zip(self._ids, input_ids, strict=True)):
                if list(store.input_ids(i)) != list(ids_):
                    raise UserError(
                        f"chain {cid}: the store's tokens differ from the labels' input_ids "
                        "(captured from another file?)"
                    )
        self._layers = list(self.sites) if layers is None else list(layers)

    @property
    def ids(self) -> list[str]:
        return self._ids

    @property
    def layers(self) -> list[Hashable]:
        return self._layers

    @property
    def labels(self) -> list[torch.Tensor]:
        return self._labels

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for lo, hi in _runs(sorted(set(chains))):
            per_site = [self.store.get(site, range(lo, hi)) for site in self.sites]
            base = int(self._offsets[lo])
            for i in range(lo, hi):
                a, b = int(self._offsets[i]) - base, int(self._offsets[i + 1]) - base
                out[i] = torch.stack([rows[a:b] for rows in per_site])
        return [out[i] for i in chains]


def _runs(sorted_ids: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``[lo, hi)`` of sorted ids."""
    runs: list[tuple[int, int]] = []
    for i in sorted_ids:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


class WithLabels:
    """A source's features with other labels (same chains, same lengths)."""

    def __init__(self, source: ChainSource, labels: Sequence[torch.Tensor]):
        self.source = source
        self._labels = check_labels(labels, source.ids)
        for cid, a, b in zip(source.ids, source.labels, self._labels, strict=True):
            if len(a) != len(b):
                raise UserError(f"chain {cid}: {len(b)} labels for {len(a)} tokens")

    @property
    def ids(self) -> Sequence[str]:
        return self.source.ids

    @property
    def layers(self) -> Sequence[Hashable]:
        return self.source.layers

    @property
    def labels(self) -> list[torch.Tensor]:
        return self._labels

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]:
        return self.source.features(chains)


class FeatureSubset:
    """Some of a source's feature sets (by index), e.g. to fit one layer's probes alone."""

    def __init__(self, source: ChainSource, which: Sequence[int]):
        self.source = source
        self.which = list(which)
        if not self.which or not all(0 <= f < len(source.layers) for f in self.which):
            raise UserError(f"feature sets {self.which} are not among 0..{len(source.layers) - 1}")

    @property
    def ids(self) -> Sequence[str]:
        return self.source.ids

    @property
    def layers(self) -> list[Hashable]:
        return [self.source.layers[f] for f in self.which]

    @property
    def labels(self) -> Sequence[torch.Tensor]:
        return self.source.labels

    def features(self, chains: Sequence[int]) -> list[torch.Tensor]:
        return [f[self.which] for f in self.source.features(chains)]
