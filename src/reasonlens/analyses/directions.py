"""Difference-in-means directions from activation stores, with shuffled-label controls.

Two kinds of contrast, both read from activation stores (or in-memory `Activations`) a chunk
of examples at a time and summed in float64, so a store is never all in memory:

* :func:`mean_difference`: two sets of prompts (reasoning vs control, harmful vs harmless),
  per site and per token position, positions counted from each example's end (-1 is the
  last token; the post-instruction template tokens of Arditi et al. 2024) or from its start,
  or all kept rows pooled (``positions=None``);
* :func:`window_contrast`: token windows at ``offset`` .. ``offset + width - 1`` from the
  first token of each behaviour span (Ward et al.: offset -13, width 6 before backtracking
  spans), against windows before a baseline set of spans, or against every token.

``raw = mean_a - mean_b`` (what activation addition adds, coefficient 1) and ``unit`` (what
directional ablation projects out) are both kept. Each result carries its controls: the same
contrast with the labels shuffled (examples reassigned between the two sets, keeping their
sizes; for windows, windows at random starts in the same examples), ``shuffles`` times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reasonlens.analyses import stats
from reasonlens.errors import UserError
from reasonlens.runs.files import jsonable
from reasonlens.trace.capture import Activations
from reasonlens.trace.store import ActivationStore

Source = ActivationStore | Activations


@dataclass(frozen=True)
class Candidate:
    """One (site, position) a direction was computed at."""

    index: tuple[int, int]  # (site index, position index) into Directions.raw
    site: str
    layer: int
    position: int | None


@dataclass
class Directions:
    """Difference-in-means directions per site and position.

    ``raw[s, p]`` = ``mean_a[s, p] - mean_b[s, p]`` (float64, [sites, positions, d]);
    ``shuffled[k, s, p]`` the same from the k-th shuffled-label control."""

    sites: list[str]
    positions: list[int | None]
    raw: torch.Tensor
    mean_a: torch.Tensor
    mean_b: torch.Tensor
    count_a: torch.Tensor  # [positions]: rows averaged into mean_a
    count_b: torch.Tensor
    shuffled: torch.Tensor | None = None
    contrast: dict = field(default_factory=dict)
    model: str = ""

    @property
    def d(self) -> int:
        return int(self.raw.shape[-1])

    @property
    def norms(self) -> torch.Tensor:
        """‖raw‖ per site and position: [sites, positions]."""
        return self.raw.norm(dim=-1)

    @property
    def unit(self) -> torch.Tensor:
        """raw / ‖raw‖ (0 where raw is 0)."""
        return self.raw / self.norms.clamp_min(torch.finfo(torch.float64).tiny)[..., None]

    def layer(self, site: str) -> int:
        return int(site.split(".")[1])

    def direction(self, site: str, position: int | None = None, unit: bool = False):
        """The direction at `site` and `position` (raw, or unit), float64 [d]."""
        if site not in self.sites:
            raise UserError(f"no direction at {site!r}; computed at: {', '.join(self.sites)}")
        if position not in self.positions:
            raise UserError(f"no direction at position {position}; computed at {self.positions}")
        s, p = self.sites.index(site), self.positions.index(position)
        return (self.unit if unit else self.raw)[s, p].clone()

    def candidates(self) -> list[Candidate]:
        """Every (site, position), site by site."""
        return [
            Candidate((s, p), site, self.layer(site), pos)
            for s, site in enumerate(self.sites)
            for p, pos in enumerate(self.positions)
        ]

    def shuffled_norms(self) -> torch.Tensor | None:
        """‖raw‖ of each shuffled control: [shuffles, sites, positions]."""
        return None if self.shuffled is None else self.shuffled.norm(dim=-1)

    def to_dict(self) -> dict:
        out = {
            "analysis": "mean_difference",
            "model": self.model,
            "contrast": self.contrast,
            "sites": list(self.sites),
            "positions": list(self.positions),
            "d": self.d,
            "count_a": jsonable(self.count_a),
            "count_b": jsonable(self.count_b),
            "norm": jsonable(self.norms),  # [sites][positions]
        }
        if self.shuffled is not None:
            shuffled = self.shuffled_norms()
            out["shuffles"] = int(self.shuffled.shape[0])
            out["shuffled_norm_mean"] = jsonable(shuffled.mean(0))
            # How far the real contrast stands above its shuffled-label controls.
            out["norm_ratio_to_shuffled"] = jsonable(self.norms / shuffled.max(0).values)
        return out

    def per_example(self) -> dict[str, torch.Tensor]:
        """The vectors themselves (a direction has no per-example values): what a later stage
        needs to steer or ablate with."""
        out = {"raw": self.raw, "unit": self.unit, "mean_a": self.mean_a, "mean_b": self.mean_b}
        if self.shuffled is not None:
            out["shuffled"] = self.shuffled
        return {k: v.contiguous() for k, v in out.items()}

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """‖raw‖ against layer, one line per position, the shuffled controls dashed."""
        from reasonlens.plots import new_figure, save_figure

        fig = new_figure(figsize=(7, 4))
        ax = fig.subplots()
        layers = [self.layer(s) for s in self.sites]
        norms = self.norms.numpy()
        shuffled = self.shuffled_norms()
        for p, pos in enumerate(self.positions):
            line = ax.plot(layers, norms[:, p], marker=".", label=f"position {pos}")[0]
            if shuffled is not None:
                ax.plot(
                    layers, shuffled[:, :, p].max(0).values.numpy(), "--", color=line.get_color()
                )
        ax.set_xlabel("layer (site)")
        ax.set_ylabel("‖mean_a − mean_b‖")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(title or f"Difference in means: {self.model} (dashed: shuffled labels)")
        fig.tight_layout()
        return save_figure(fig, path, dpi=150)


# ----------------------------------------------------------------------------- reading stores


def _row_offsets(source: Source) -> torch.Tensor:
    offsets = source.row_offsets
    return offsets() if callable(offsets) else offsets


def _check_sites(sources: Sequence[Source], sites: Sequence[str] | None) -> list[str]:
    available = [list(s.sites) for s in sources]
    if sites is None:
        chosen = [s for s in available[0] if s.split(".")[-1] != "attn_pattern"]
    else:
        chosen = list(sites)
    if not chosen:
        raise UserError("no sites to compute directions at")
    for source, have in zip(sources, available, strict=True):
        missing = [s for s in chosen if s not in have]
        if missing:
            raise UserError(
                f"site {missing[0]!r} is not in {getattr(source, 'path', 'the activations')}; "
                f"it has: {', '.join(have)}"
            )
    return chosen


def _sum_rows(
    source: Source,
    sites: list[str],
    plan: list[tuple[np.ndarray, np.ndarray]],
    n_keys: int,
    chunk: int,
    sums: torch.Tensor,
) -> None:
    """Add rows into ``sums`` [keys, sites, d] (float64): ``plan[e] = (rows, keys)`` says which
    of example e's rows (indices among its kept rows) go to which key. Reads `chunk` examples at
    a time."""
    offsets = _row_offsets(source)
    for lo in range(0, source.n_examples, chunk):
        hi = min(lo + chunk, source.n_examples)
        base = int(offsets[lo])
        rows = [int(offsets[e]) - base + plan[e][0] for e in range(lo, hi)]
        keys = [plan[e][1] for e in range(lo, hi)]
        if not any(len(r) for r in rows):
            continue
        index = torch.as_tensor(np.concatenate(rows), dtype=torch.long)
        key = torch.as_tensor(np.concatenate(keys), dtype=torch.long)
        for s, site in enumerate(sites):
            x = source.get(site, range(lo, hi))
            if x.dim() != 2:
                raise UserError(f"site {site!r} rows are not vectors (shape {tuple(x.shape)})")
            sums[:, s].index_add_(0, key, x.index_select(0, index).to(torch.float64))


def _position_rows(source: Source, positions: Sequence[int] | None, what: str) -> list[np.ndarray]:
    """For each example, the index (among its kept rows) of each requested position, or all
    of its rows when `positions` is None."""
    offsets = _row_offsets(source)
    lengths = [len(t) for t in source.token_ids()]
    kept = source.positions().numpy()
    out = []
    for e, length in enumerate(lengths):
        rows = kept[int(offsets[e]) : int(offsets[e + 1])]
        if positions is None:
            out.append(np.arange(len(rows)))
            continue
        picked = []
        for p in positions:
            absolute = p + length if p < 0 else p
            if not 0 <= absolute < length:
                raise UserError(f"{what}, example {e}: position {p} is outside its {length} tokens")
            where = np.flatnonzero(rows == absolute)
            if not len(where):
                raise UserError(
                    f"{what}, example {e}: no activations at position {p} (token {absolute}): "
                    "capture it (positions='all', or 'given' including it)"
                )
            picked.append(int(where[0]))
        out.append(np.asarray(picked))
    return out


def _check_positions(positions: Sequence[int] | None) -> list[int | None]:
    if positions is None:
        return [None]
    positions = [int(p) for p in positions]
    if not positions:
        raise UserError("no positions given (use None to pool every row)")
    if len(set(positions)) != len(positions):
        raise UserError(f"positions repeat: {positions}")
    return positions


def _directions(
    sums: torch.Tensor,
    counts: torch.Tensor,
    n_pos: int,
    shuffles: int,
    sites: list[str],
    positions: list,
    contrast: dict,
    model: str,
) -> Directions:
    """Means and differences from the summed keys: key = group * n_pos + position, groups 0 (a),
    1 (b), then two per shuffle."""
    s, d = sums.shape[1], sums.shape[2]
    means = sums / counts.clamp_min(1)[:, None, None]
    means = means.view(2 + 2 * shuffles, n_pos, s, d).transpose(1, 2)  # [groups, S, P, d]
    count = counts.view(2 + 2 * shuffles, n_pos)
    shuffled = None
    if shuffles:
        shuffled = (means[2::2] - means[3::2]).contiguous()
    return Directions(
        sites=sites,
        positions=positions,
        raw=(means[0] - means[1]).contiguous(),
        mean_a=means[0].contiguous(),
        mean_b=means[1].contiguous(),
        count_a=count[0].clone(),
        count_b=count[1].clone(),
        shuffled=shuffled,
        contrast=contrast,
        model=model,
    )


def _model_name(sources: Sequence[Source]) -> str:
    names = []
    for source in sources:
        meta = getattr(source, "meta", {}) or {}
        names.append(str(meta.get("model", "")))
    return names[0] if len(set(names)) == 1 else " / ".join(names)


def mean_difference(
    a: Source,
    b: Source,
    sites: Sequence[str] | None = None,
    positions: Sequence[int] | None = None,
    shuffles: int = 1,
    seed: int = 0,
    chunk: int = 64,
) -> Directions:
    """mean(a) - mean(b) at each site and position, summed in float64, `chunk` examples of a
    store in memory at a time.

    `positions`: token positions, negative from each example's end (-1: the last token) or
    non-negative from its start; every example must have a row there. None pools every kept row
    of every example. `shuffles`: controls with the examples' a/b labels permuted (sizes kept).
    """
    if a.n_examples == 0 or b.n_examples == 0:
        raise UserError(f"empty contrast set: {a.n_examples} and {b.n_examples} examples")
    if shuffles < 0:
        raise UserError("shuffles must be >= 0")
    chosen = _check_sites([a, b], sites)
    keys = _check_positions(positions)
    n_pos = len(keys)
    rows_a = _position_rows(a, positions, "set a")
    rows_b = _position_rows(b, positions, "set b")
    n_a, n_b = a.n_examples, b.n_examples
    labels = np.array([0] * n_a + [1] * n_b)
    perms = stats.permutations(labels, shuffles, stats.generator(seed))
    n_groups = 2 + 2 * shuffles

    def plan(rows: list[np.ndarray], first: int, group: int):
        out = []
        for e, r in enumerate(rows):
            pos_key = np.arange(len(r)) if positions is not None else np.zeros(len(r), int)
            groups = [group] + [2 + 2 * k + int(perm[first + e]) for k, perm in enumerate(perms)]
            out.append(
                (np.tile(r, len(groups)), np.concatenate([g * n_pos + pos_key for g in groups]))
            )
        return out

    width = a.get(chosen[0], range(0, 1)).shape[-1]
    other = b.get(chosen[0], range(0, 1)).shape[-1]
    if width != other:
        raise UserError(f"the two sets have different widths ({width} and {other})")
    sums = torch.zeros(n_groups * n_pos, len(chosen), width, dtype=torch.float64)
    counts = torch.zeros(n_groups * n_pos, dtype=torch.float64)
    for source, rows, first, group in ((a, rows_a, 0, 0), (b, rows_b, n_a, 1)):
        p = plan(rows, first, group)
        _sum_rows(source, chosen, p, n_groups * n_pos, chunk, sums)
        for _, key in p:
            counts += torch.bincount(torch.as_tensor(key), minlength=n_groups * n_pos)
    if (counts.view(n_groups, n_pos)[:2] == 0).any():
        raise UserError("empty contrast set: no rows to average in one of the two sets")
    contrast = {
        "kind": "prompt sets",
        "examples_a": n_a,
        "examples_b": n_b,
        "positions": "pooled (every kept row)" if positions is None else list(keys),
        "shuffles": shuffles,
        "seed": seed,
    }
    return _directions(sums, counts, n_pos, shuffles, chosen, keys, contrast, _model_name([a, b]))


def _span_starts(spans, n_examples: int, what: str) -> list[list[int]]:
    if len(spans) != n_examples:
        raise UserError(
            f"{what} are given for {len(spans)} examples but the store has {n_examples}"
        )
    out = []
    for example in spans:
        starts = []
        for span in example:
            start = span[0] if isinstance(span, Sequence) else span
            starts.append(int(start))
        out.append(starts)
    return out


def window_contrast(
    source: Source,
    spans: Sequence[Sequence[int | tuple[int, int]]],
    offset: int,
    width: int,
    sites: Sequence[str] | None = None,
    baseline_spans: Sequence[Sequence[int | tuple[int, int]]] | None = None,
    shuffles: int = 1,
    seed: int = 0,
    chunk: int = 64,
) -> Directions:
    """mean over the windows before `spans` minus the baseline mean, per site (one pooled
    position). ``spans[e]`` lists example e's behaviour spans by first token (an int or a
    (start, end) pair); each window is tokens ``start + offset`` .. ``start + offset + width -
    1``. A window that does not fit inside its example is skipped (and counted). The baseline
    is the windows before `baseline_spans` (e.g. the spans of every behaviour) or, if None,
    every row of the store. Controls: windows of the same width at random starts, as many per
    example as it has spans, `shuffles` times."""
    if width < 1:
        raise UserError(f"window width must be at least 1, got {width}")
    if shuffles < 0:
        raise UserError("shuffles must be >= 0")
    chosen = _check_sites([source], sites)
    starts = _span_starts(spans, source.n_examples, "spans")
    base_starts = (
        None
        if baseline_spans is None
        else _span_starts(baseline_spans, source.n_examples, "baseline spans")
    )
    offsets = _row_offsets(source)
    lengths = [len(t) for t in source.token_ids()]
    kept = source.positions().numpy()
    gen = stats.generator(seed)
    plan, skipped = [], {"target": 0, "baseline": 0}

    def window_rows(rows: np.ndarray, length: int, begin: int, e: int) -> np.ndarray:
        cols = np.arange(begin, begin + width)
        where = np.searchsorted(rows, cols)
        ok = (where < len(rows)) & (rows[np.minimum(where, len(rows) - 1)] == cols)
        if not ok.all():
            missing = int(cols[~ok][0])
            raise UserError(
                f"example {e}: no activations at token {missing} (a window's row): capture every "
                "position (positions='all')"
            )
        return where

    for e, length in enumerate(lengths):
        rows = kept[int(offsets[e]) : int(offsets[e + 1])]
        parts: list[tuple[np.ndarray, int]] = []
        fits = 0
        for start in starts[e]:
            begin = start + offset
            if begin < 0 or begin + width > length:
                skipped["target"] += 1
                continue
            parts.append((window_rows(rows, length, begin, e), 0))
            fits += 1
        if base_starts is None:
            parts.append((np.arange(len(rows)), 1))
        else:
            for start in base_starts[e]:
                begin = start + offset
                if begin < 0 or begin + width > length:
                    skipped["baseline"] += 1
                    continue
                parts.append((window_rows(rows, length, begin, e), 1))
        for k in range(shuffles):
            if length >= width and fits:
                for begin in gen.integers(0, length - width + 1, fits):
                    parts.append((window_rows(rows, length, int(begin), e), 2 + k))
        if parts:
            plan.append(
                (
                    np.concatenate([r for r, _ in parts]),
                    np.concatenate([np.full(len(r), g) for r, g in parts]),
                )
            )
        else:
            plan.append((np.zeros(0, int), np.zeros(0, int)))
    n_summed = 2 + shuffles  # target, baseline, one random-window set per shuffle
    counts = torch.zeros(n_summed, dtype=torch.float64)
    for _, key in plan:
        counts += torch.bincount(torch.as_tensor(key, dtype=torch.long), minlength=n_summed)
    if counts[0] == 0:
        raise UserError(
            f"empty contrast set: no window at offset {offset}, width {width} fits before any span "
            f"({skipped['target']} skipped)"
        )
    if counts[1] == 0:
        raise UserError("empty contrast set: no baseline window fits")
    d = source.get(chosen[0], range(0, 1)).shape[-1]
    sums = torch.zeros(n_summed, len(chosen), d, dtype=torch.float64)
    _sum_rows(source, chosen, plan, n_summed, chunk, sums)
    # Each control is its random windows against the same baseline: groups 2k+2, 2k+3.
    order = [0, 1] + [i for k in range(shuffles) for i in (2 + k, 1)]
    sums, counts = sums[order], counts[order]
    contrast = {
        "kind": "windows before spans",
        "offset": offset,
        "width": width,
        "baseline": "windows before baseline spans" if base_starts is not None else "every token",
        "windows": int(counts[0]),
        "baseline_rows": int(counts[1]),
        "skipped_windows": skipped,
        "shuffles": shuffles,
        "seed": seed,
    }
    return _directions(sums, counts, 1, shuffles, chosen, [None], contrast, _model_name([source]))
