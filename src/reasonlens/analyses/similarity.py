"""Representation similarity: linear CKA between layers of two models, direction cosines.

**Linear CKA** (Kornblith et al. 2019): for activations X [n, d1] and Y [n, d2] of the same n
inputs, columns centred, in float64,
``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``, which is HSIC(K, L) / √(HSIC(K, K) HSIC(L, L)) for
the linear Gram matrices K = XXᵀ, L = YYᵀ. The debiased form replaces HSIC by its unbiased
U-statistic (Song et al. 2012; as in mklabunde/localizing-reasoning ``cka.py``), which is
near 0 for independent data even at small n and can be negative. Both need only ⟨K, L⟩ =
‖XᵀY‖² and cheap row statistics (diag K, K1, 1ᵀK1), so the n x n matrices are never centred.

**All layer pairs** (:func:`cka_matrix`) from two activation stores over the *same* token
sequences (refused otherwise, naming the first difference): every ⟨K_l, L_m⟩ at once, from
the Gram matrices built a block of rows at a time (only the blocks on and above the
diagonal), or from XᵀY when that is cheaper (many rows, narrow models). CKA is dominated by
tokens of massive activation (the first token, and a few others; Sun et al. 2024), so the
matrix is given twice, from the same pass over the Gram blocks: over every row, and without
the first token of each example and any row whose largest |activation| in some layer is over
`massive_abs` and over `massive_ratio` times that layer's median |activation| (estimated
on at most ~128 rows spread over it). Control: a
layer against a copy of itself with its rows shuffled (near 0 debiased; the biased estimator's
floor for this many rows otherwise).

**Direction cosines** (:func:`direction_cosines`) between two models of the same width: the
cosine of the directions at matching sites and positions, every site pair, and the 95% band
of the cosine of two random directions in that width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reasonlens.analyses import stats
from reasonlens.analyses.directions import Directions
from reasonlens.errors import UserError
from reasonlens.runs.files import jsonable
from reasonlens.trace.capture import Activations
from reasonlens.trace.store import ActivationStore

Source = ActivationStore | Activations


def _as_matrix(x, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() != 2:
        raise UserError(f"{what} must be a matrix [rows, features], got shape {tuple(t.shape)}")
    t = t.detach().to("cpu", torch.float64)
    if not torch.isfinite(t).all():
        raise UserError(f"{what} has non-finite values")
    return t


def _hsic(kl, ab, r_dot, sum_a, sum_b, s_a, s_b, m: int, debiased: bool):
    """HSIC (up to a factor common to every pair) of the Gram matrices K = XXᵀ, L = YYᵀ of m
    rows, from ⟨K, L⟩ (`kl`), aᵀb (`ab`, a = diag K), rᵀr' (`r_dot`, r = K1), Σa, Σb and
    s = 1ᵀK1, s' = 1ᵀL1. The data need not be centred: the centring is in the formula."""
    if not debiased:  # ⟨HKH, HLH⟩
        return kl - 2.0 / m * r_dot + s_a * s_b / (m * m)
    # Song et al. 2012, with K̃ = K - diag(a): tr(K̃L̃) = ⟨K, L⟩ - aᵀb, 1ᵀK̃1 = s - Σa,
    # 1ᵀK̃L̃1 = (r - a)ᵀ(r' - b) = rᵀr' - rᵀb - aᵀr' + aᵀb (the cross terms come in r_dot).
    return kl - ab + (s_a - sum_a) * (s_b - sum_b) / ((m - 1) * (m - 2)) - 2.0 / (m - 2) * r_dot


def linear_cka(x, y, debiased: bool = False) -> float:
    """Linear CKA of X [n, d1] and Y [n, d2] (rows are the same n inputs), columns centred,
    float64; `debiased` uses the unbiased HSIC (needs n > 3; can be negative). NaN when either
    representation is constant."""
    x, y = _as_matrix(x, "X"), _as_matrix(y, "Y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise UserError(f"X has {n} rows but Y has {y.shape[0]}: CKA needs the same inputs")
    if n < (4 if debiased else 2):
        raise UserError(f"CKA needs at least {4 if debiased else 2} rows, got {n}")
    return _pair_cka(x, y, debiased, torch.float64)


def _pair_cka(
    x: torch.Tensor, y: torch.Tensor, debiased: bool, gemm: torch.dtype, same_self: bool = False
) -> float:
    """CKA of two float64 matrices, the products XᵀY in `gemm` (sums float64). `same_self`:
    Y is X with its rows permuted, so ‖YᵀY‖ = ‖XᵀX‖ and is not computed again."""
    n = x.shape[0]
    x = x - x.mean(0)
    y = y - y.mean(0)
    a, b = (x * x).sum(1), (y * y).sum(1)  # diag of the Gram matrices; K1 = 0 (centred)

    def h(p, q, pa, qa):
        kl = float((p.to(gemm).T @ q.to(gemm)).double().square().sum())
        ab = float(pa @ qa)
        r_dot = ab if debiased else 0.0  # (r - a)ᵀ(r' - b) with r = 0
        sums = float(pa.sum()), float(qa.sum())
        return _hsic(kl, ab, r_dot, *sums, 0.0, 0.0, n, debiased)

    xy, xx = h(x, y, a, b), h(x, x, a, a)
    yy = xx if same_self else h(y, y, b, b)
    if xx <= 0 or yy <= 0:
        return math.nan
    return xy / math.sqrt(xx * yy)


def _gram_products(
    xs: torch.Tensor,
    ys: torch.Tensor,
    masks: list[torch.Tensor | None],
    block: int,
    gemm: torch.dtype,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each row subset (a bool mask, None for all rows): ⟨K_l, L_m⟩ [La, Lb], ⟨K_l, K_l⟩
    [La] and ⟨L_m, L_m⟩ [Lb] over the rows it keeps, for xs [La, n, da] and ys [Lb, n, db].

    One pass over the Gram blocks on and above the diagonal (off-diagonal ones counted twice)
    serves every subset: its products are the blocks with the other rows and columns zeroed
    (subsets are nested, each within the one before, so the zeroing accumulates). The blocks
    are products in `gemm`; everything summed from them is float64."""
    n = xs.shape[1]
    xs, ys = xs.to(gemm), ys.to(gemm)
    out = [
        (
            torch.zeros(xs.shape[0], ys.shape[0], dtype=torch.float64),
            torch.zeros(xs.shape[0], dtype=torch.float64),
            torch.zeros(ys.shape[0], dtype=torch.float64),
        )
        for _ in masks
    ]
    dropped = [None if m is None else ~m for m in masks]
    starts = list(range(0, n, block))
    for i, lo in enumerate(starts):
        rows_i = slice(lo, min(lo + block, n))
        for hi_start in starts[i:]:
            rows_j = slice(hi_start, min(hi_start + block, n))
            weight = 1.0 if hi_start == lo else 2.0
            k = torch.bmm(xs[:, rows_i], xs[:, rows_j].transpose(1, 2)).double()
            m = torch.bmm(ys[:, rows_i], ys[:, rows_j].transpose(1, 2)).double()
            for (cross, self_x, self_y), drop in zip(out, dropped, strict=True):
                if drop is not None:  # subsets are nested: zero the rows and columns it drops
                    for g in (k, m):
                        g[:, drop[rows_i], :] = 0
                        g[:, :, drop[rows_j]] = 0
                kk, mm = k.flatten(1), m.flatten(1)
                cross += weight * (kk @ mm.T)
                # ‖·‖² by vector_norm: one pass, no temporary (15x faster than square().sum())
                self_x += weight * torch.linalg.vector_norm(kk, dim=1).square()
                self_y += weight * torch.linalg.vector_norm(mm, dim=1).square()
    return out


def _feature_products(
    xs: torch.Tensor, ys: torch.Tensor, mask: torch.Tensor | None, gemm: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same from ‖X_lᵀY_m‖² over the kept rows (cheaper when rows outnumber widths)."""
    if mask is not None:
        xs, ys = xs[:, mask], ys[:, mask]

    def sq(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return (p.to(gemm).T @ q.to(gemm)).double().square().sum()

    cross = torch.stack([torch.stack([sq(x, y) for y in ys]) for x in xs])
    self_x = torch.stack([sq(x, x) for x in xs])
    self_y = torch.stack([sq(y, y) for y in ys])
    return cross, self_x, self_y


def cka_all_pairs(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    debiased: bool = False,
    block: int = 512,
    exact: bool = False,
) -> torch.Tensor:
    """CKA of every (X_l, Y_m): [len(xs), len(ys)]; all X share their rows with all Y.

    Centring, every sum and every ratio are float64. The matrix products themselves (Gram
    blocks, or XᵀY) run in float32 on the float64-centred data (about 2x faster on a CPU;
    measured within 5e-9 of all-float64 on SmolLM2-135M's 30 x 30 layers, 2,000 rows), or in
    float64 with ``exact=True``."""
    return cka_subsets(xs, ys, [None], debiased, block, exact)[0]


def _sq(x: torch.Tensor) -> torch.Tensor:
    """Squared norm of each row (one pass, no temporary)."""
    return torch.linalg.vector_norm(x, dim=-1).square()


def _centred(
    layers: Sequence[torch.Tensor], masks: list[torch.Tensor | None], gemm: torch.dtype
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Each layer in float64, centred at the mean of the last subset's rows, returned in
    `gemm` for the products [L, n, d]; and per subset the float64 row statistics of its Gram
    matrices, zero outside the subset: diag K [L, n], K1 [L, n] and 1ᵀK1 [L]. A layer at a time:
    no float64 copy of every layer is kept."""
    n, d = layers[0].shape
    last = masks[-1]
    out = torch.empty(len(layers), n, d, dtype=gemm)
    size = len(layers)
    stats = [
        (
            torch.empty(size, n, dtype=torch.float64),
            torch.empty(size, n, dtype=torch.float64),
            torch.empty(size, dtype=torch.float64),
        )
        for _ in masks
    ]
    for i, layer in enumerate(layers):
        x = layer.to(torch.float64)
        # the kept rows' mean, from the (few) dropped ones
        kept = x.mean(0) if last is None else (x.sum(0) - x[~last].sum(0)) / int(last.sum())
        x = x - kept
        diag = _sq(x)
        total = x.sum(0)
        for (a, r, s), mask in zip(stats, masks, strict=True):
            if mask is None:
                a[i], column = diag, total
                r[i] = x @ column
            else:
                column = total - x[~mask].sum(0)
                a[i] = diag * mask
                r[i] = (x @ column) * mask
            s[i] = column @ column
        out[i] = x
    return out, stats


def cka_subsets(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    subsets: Sequence[torch.Tensor | None],
    debiased: bool = False,
    block: int = 512,
    exact: bool = False,
) -> list[torch.Tensor]:
    """:func:`cka_all_pairs` over nested subsets of the rows (bool masks, each within the one
    before; None: every row, first), from one pass of the matrix products. The data are
    centred at the mean of the last subset's rows, so that subset (e.g. the rows left after
    leaving out massive activations) is computed from exactly centred data; the others are
    centred in the formula (float64)."""
    if not xs or not ys:
        raise UserError("no layers to compare")
    n = xs[0].shape[0]
    if any(x.shape[0] != n for x in [*xs, *ys]):
        raise UserError("every layer must have the same rows")
    masks = [None if m is None else torch.as_tensor(m, dtype=torch.bool) for m in subsets]
    for before, after in zip(masks, masks[1:], strict=False):
        if after is None or (before is not None and bool((after & ~before).any())):
            raise UserError("row subsets must be nested, each within the one before")
    sizes = [n if m is None else int(m.sum()) for m in masks]
    least = 4 if debiased else 2
    if min(sizes) < least:
        raise UserError(f"CKA needs at least {least} rows, got {min(sizes)}")
    gemm = torch.float64 if exact else torch.float32
    cx, stats_x = _centred(xs, masks, gemm)
    cy, stats_y = _centred(ys, masks, gemm)
    la, lb, da, db = cx.shape[0], cy.shape[0], cx.shape[2], cy.shape[2]
    gram_cost = (la + lb) * n * n * (da + db) / 4 + la * lb * n * n / 2 * len(masks)
    feature_cost = (la * lb * n * da * db + n * (la * da * da + lb * db * db)) * len(masks)
    if gram_cost <= feature_cost:
        products = _gram_products(cx, cy, masks, block, gemm)
    else:
        products = [_feature_products(cx, cy, m, gemm) for m in masks]
    results = []
    for size, (kl, kk, ll), (a, r, s_x), (b, q, s_y) in zip(
        sizes, products, stats_x, stats_y, strict=True
    ):
        sa, sb = a.sum(1), b.sum(1)

        def h(kl, ab, rr, ra, rb, sa_, sb_, s1, s2, size=size):
            r_dot = rr - ra - rb + ab if debiased else rr
            return _hsic(kl, ab, r_dot, sa_, sb_, s1, s2, size, debiased)

        hxy = h(
            kl, a @ b.T, r @ q.T, r @ b.T, a @ q.T, sa[:, None], sb[None], s_x[:, None], s_y[None]
        )
        ra, qb = (r * a).sum(1), (q * b).sum(1)
        hxx = h(kk, _sq(a), _sq(r), ra, ra, sa, sa, s_x, s_x)
        hyy = h(ll, _sq(b), _sq(q), qb, qb, sb, sb, s_y, s_y)
        denom = (hxx[:, None] * hyy[None, :]).clamp_min(0).sqrt()
        out = hxy / denom
        out[denom == 0] = math.nan
        results.append(out)
    return results


# ------------------------------------------------------------------------------- two stores


def _check_same_tokens(a: Source, b: Source) -> None:
    ta, tb = a.token_ids(), b.token_ids()
    if len(ta) != len(tb):
        raise UserError(
            f"the two stores hold different sequences: {len(ta)} examples and {len(tb)}; CKA "
            "needs both models run on identical token sequences"
        )
    for e, (x, y) in enumerate(zip(ta, tb, strict=True)):
        if x != y:
            j = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), None)
            where = (
                f"token {j}: {x[j]} and {y[j]}"
                if j is not None
                else f"lengths {len(x)} and {len(y)}"
            )
            raise UserError(
                f"the two stores hold different token sequences: first difference at example "
                f"{e}, {where}; CKA needs both models run on identical tokens"
            )
    pa, pb = a.positions(), b.positions()
    if pa.shape != pb.shape or not torch.equal(pa, pb):
        row = next(
            (i for i, (p, q) in enumerate(zip(pa.tolist(), pb.tolist(), strict=False)) if p != q),
            min(len(pa), len(pb)),
        )
        raise UserError(
            f"the two stores kept different token positions (first difference at row {row}); "
            "capture both with the same positions"
        )


def _layer_sites(source: Source, site: str, layers: Sequence[int] | None, what: str) -> list[int]:
    have = {int(s.split(".")[1]) for s in source.sites if s.split(".")[-1] == site and "." in s}
    chosen = sorted(have) if layers is None else [int(x) for x in layers]
    if not chosen:
        raise UserError(f"{what} has no {site} sites")
    missing = [x for x in chosen if x not in have]
    if missing:
        raise UserError(f"{what} has no layers.{missing[0]}.{site}; it has: {sorted(have)}")
    return chosen


@dataclass
class CKAResult:
    """CKA of every layer pair, over every row and without the first and massive tokens."""

    layers_a: list[int]
    layers_b: list[int]
    site: str
    matrix: torch.Tensor  # [La, Lb], every row
    matrix_trimmed: torch.Tensor  # [La, Lb], without first-token and massive-activation rows
    shuffled: dict  # control: a layer of A against its rows shuffled
    excluded: dict
    n_rows: int
    debiased: bool
    models: tuple[str, str] = ("", "")
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "analysis": "linear_cka",
            "models": list(self.models),
            "site": self.site,
            "layers_a": self.layers_a,
            "layers_b": self.layers_b,
            "debiased": self.debiased,
            "n_rows": self.n_rows,
            "excluded": self.excluded,
            "settings": self.settings,
            "matrix": jsonable(self.matrix),  # [layers_a][layers_b]
            "matrix_without_first_and_massive": jsonable(self.matrix_trimmed),
            "diagonal": jsonable(self._diagonal(self.matrix)),
            "diagonal_without_first_and_massive": jsonable(self._diagonal(self.matrix_trimmed)),
            "control_shuffled_rows": self.shuffled,
        }

    def _diagonal(self, matrix: torch.Tensor) -> list | None:
        common = [x for x in self.layers_a if x in self.layers_b]
        if not common:
            return None
        return [float(matrix[self.layers_a.index(x), self.layers_b.index(x)]) for x in common]

    def per_example(self) -> dict[str, torch.Tensor]:
        """The matrices (CKA has no per-example values)."""
        return {"matrix": self.matrix.float(), "matrix_trimmed": self.matrix_trimmed.float()}

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        from reasonlens.plots import new_figure, save_figure

        fig = new_figure(figsize=(9, 4))
        axes = fig.subplots(1, 2)
        for ax, (name, m) in zip(
            axes,
            (("every token", self.matrix), ("without first / massive", self.matrix_trimmed)),
            strict=True,
        ):
            image = ax.imshow(m.numpy(), origin="lower", vmin=0, vmax=1, cmap="viridis")
            ax.set_xlabel(f"layer ({self.models[1] or 'B'})")
            ax.set_ylabel(f"layer ({self.models[0] or 'A'})")
            ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=list(axes), shrink=0.8)
        label = "debiased " if self.debiased else ""
        fig.suptitle(title or f"Linear {label}CKA, {self.site}", fontsize=10)
        return save_figure(fig, path, dpi=150)


def cka_matrix(
    a: Source,
    b: Source,
    site: str = "resid_post",
    layers_a: Sequence[int] | None = None,
    layers_b: Sequence[int] | None = None,
    debiased: bool = False,
    massive_abs: float = 100.0,
    massive_ratio: float = 1000.0,
    control_layers: int = 3,
    seed: int = 0,
    exact: bool = False,
) -> CKAResult:
    """Linear CKA of every layer of `a` against every layer of `b` at `site` (see the module
    doc). Both stores must hold the same token sequences and positions. ``exact=True``: the
    matrix products in float64 too (see :func:`cka_all_pairs`)."""
    _check_same_tokens(a, b)
    la = _layer_sites(a, site, layers_a, "store A")
    lb = _layer_sites(b, site, layers_b, "store B")
    xs = [a.get(f"layers.{x}.{site}") for x in la]
    ys = [b.get(f"layers.{x}.{site}") for x in lb]
    n = xs[0].shape[0]
    if n < (4 if debiased else 2):
        raise UserError(f"CKA needs at least {4 if debiased else 2} rows, got {n}")
    positions = a.positions()
    first = positions == 0
    massive = torch.zeros(n, dtype=torch.bool)
    for layer in [*xs, *ys]:
        magnitude = layer.abs().float()
        top = magnitude.max(1).values
        # the median |activation| from at most ~128 rows spread over the layer (a threshold
        # needs no more; the median of every entry would cost more than the CKA itself)
        median = float(magnitude[:: max(1, n // 128)].median())
        massive |= (top > massive_abs) & (top > massive_ratio * median)
    keep = ~(first | massive)
    if int(keep.sum()) < (4 if debiased else 2):
        raise UserError(
            f"only {int(keep.sum())} rows are left without the first and massive-activation "
            "tokens: too few for CKA"
        )
    matrix, trimmed = cka_subsets(xs, ys, [None, keep], debiased, exact=exact)

    # Control: a layer against itself with its rows shuffled.
    picks = (
        sorted(
            {
                la[i]
                for i in np.linspace(0, len(la) - 1, min(control_layers, len(la)))
                .round()
                .astype(int)
            }
        )
        if control_layers > 0
        else []
    )
    perm = torch.as_tensor(stats.generator(seed).permutation(n))
    keep_idx = torch.nonzero(keep).flatten()
    perm_kept = keep_idx[torch.as_tensor(stats.generator(seed + 1).permutation(len(keep_idx)))]
    shuffled = {"layers": picks, "every_token": [], "without_first_and_massive": []}
    gemm = torch.float64 if exact else torch.float32
    for x in picks:
        rows = xs[la.index(x)].to(torch.float64)
        shuffled["every_token"].append(_pair_cka(rows, rows[perm], debiased, gemm, True))
        shuffled["without_first_and_massive"].append(
            _pair_cka(rows[keep_idx], rows[perm_kept], debiased, gemm, True)
        )
    tokens_all = [t for ids in a.token_ids() for t in ids]
    offsets = _row_tokens(a)
    massive_rows = torch.nonzero(massive & ~first).flatten().tolist()
    excluded = {
        "first_token_rows": int(first.sum()),
        "massive_rows": len(massive_rows),
        "massive_rule": f"max |activation| > {massive_abs:g} and > {massive_ratio:g} x the "
        "layer's median |activation|, in any compared layer of either model",
        "massive_examples": [
            {"row": r, "position": int(positions[r]), "token": tokens_all[offsets[r]]}
            for r in massive_rows[:20]
        ],
        "rows_left": int(keep.sum()),
    }
    names = (
        str(getattr(a, "meta", {}).get("model", "")),
        str(getattr(b, "meta", {}).get("model", "")),
    )
    return CKAResult(
        layers_a=la,
        layers_b=lb,
        site=site,
        matrix=matrix,
        matrix_trimmed=trimmed,
        shuffled=shuffled,
        excluded=excluded,
        n_rows=n,
        debiased=debiased,
        models=names,
        settings={
            "massive_abs": massive_abs,
            "massive_ratio": massive_ratio,
            "seed": seed,
            "products": "float64" if exact else "float32 (sums float64)",
        },
    )


def _row_tokens(source: Source) -> list[int]:
    """For each row, the index of its token in the concatenation of every example's tokens."""
    lengths = [len(t) for t in source.token_ids()]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    offsets = source.row_offsets
    offsets = offsets() if callable(offsets) else offsets
    positions = source.positions().numpy()
    example = np.repeat(np.arange(len(lengths)), np.diff(offsets.numpy()))
    return (starts[example] + positions).tolist()


# --------------------------------------------------------------------------- direction cosines


@dataclass
class CosineResult:
    """Cosines between directions of two models of the same width."""

    sites_a: list[str]
    sites_b: list[str]
    positions: list
    matrix: torch.Tensor  # [positions, sites_a, sites_b]
    matched: dict  # site -> [positions] cosine where both have the site
    null_95: float  # 95% band of |cos| of two random directions in this width
    shuffled: dict | None  # site -> [positions]: A's direction against B's shuffled-label one
    d: int
    models: tuple[str, str] = ("", "")

    def to_dict(self) -> dict:
        return {
            "analysis": "direction_cosines",
            "models": list(self.models),
            "d": self.d,
            "positions": self.positions,
            "sites_a": self.sites_a,
            "sites_b": self.sites_b,
            "matched": self.matched,
            "random_95": self.null_95,
            "control_shuffled": self.shuffled,
            "matrix": jsonable(self.matrix),  # [positions][sites_a][sites_b]
        }

    def per_example(self) -> dict[str, torch.Tensor]:
        return {"matrix": self.matrix.float()}

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        from reasonlens.plots import new_figure, save_figure

        fig = new_figure(figsize=(7, 4))
        ax = fig.subplots()
        for site_list in (list(self.matched),):
            layers = [int(s.split(".")[1]) for s in site_list]
            values = np.array([self.matched[s] for s in site_list])  # [sites, positions]
            for p, pos in enumerate(self.positions):
                ax.plot(layers, values[:, p], marker=".", label=f"position {pos}")
        ax.axhspan(-self.null_95, self.null_95, color="grey", alpha=0.2, label="random 95%")
        ax.set_xlabel("layer")
        ax.set_ylabel("cosine")
        ax.set_ylim(-1.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(title or "Direction cosines between the two models", fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path, dpi=150)


def _cos(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Cosines of the last axis; NaN where either vector is zero."""
    nu, nv = u.norm(dim=-1), v.norm(dim=-1)
    out = (u * v).sum(-1) / (nu * nv)
    return torch.where((nu == 0) | (nv == 0), torch.full_like(out, math.nan), out)


def direction_cosines(a: Directions, b: Directions) -> CosineResult:
    """Cosine of every direction of `a` with every direction of `b` at the same positions
    (both of one width), the matched sites, and the random-direction band."""
    if a.d != b.d:
        raise UserError(
            f"the directions have different widths ({a.d} and {b.d}): cosines need two models of "
            "the same width"
        )
    positions = [p for p in a.positions if p in b.positions]
    if not positions:
        raise UserError(f"no common positions: {a.positions} and {b.positions}")
    pa = [a.positions.index(p) for p in positions]
    pb = [b.positions.index(p) for p in positions]
    ra = a.raw[:, pa].transpose(0, 1)  # [P, Sa, d]
    rb = b.raw[:, pb].transpose(0, 1)
    matrix = _cos(ra[:, :, None, :], rb[:, None, :, :])  # [P, Sa, Sb]
    common = [s for s in a.sites if s in b.sites]
    matched = {s: jsonable(matrix[:, a.sites.index(s), b.sites.index(s)]) for s in common}
    shuffled = None
    if b.shuffled is not None:
        sb = b.shuffled[0][:, pb].transpose(0, 1)
        shuffled = {
            s: jsonable(_cos(ra[:, a.sites.index(s)], sb[:, b.sites.index(s)])) for s in common
        }
    # |cos| of two independent uniform directions in d dimensions: (1 + cos)/2 ~ Beta((d-1)/2,
    # (d-1)/2); for d >= 10 the normal approximation 1.96/sqrt(d) is within 1% of it.
    null = 1.959964 / math.sqrt(a.d)
    return CosineResult(
        sites_a=list(a.sites),
        sites_b=list(b.sites),
        positions=positions,
        matrix=matrix,
        matched=matched,
        null_95=null,
        shuffled=shuffled,
        d=a.d,
        models=(a.model, b.model),
    )
