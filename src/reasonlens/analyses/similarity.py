"""Representation similarity: linear CKA between layers of two models, direction cosines.

**Linear CKA** (Kornblith et al. 2019): for activations X [n, d1] and Y [n, d2] of the same n
inputs, columns centred, in float64,
``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``, which is HSIC(K, L) / √(HSIC(K, K) HSIC(L, L)) for
the linear Gram matrices K = XXᵀ, L = YYᵀ. The debiased form replaces HSIC by its unbiased
U-statistic (Song et al. 2012; as in mklabunde/localizing-reasoning ``cka.py``), which is
near 0 for independent data even at small n and can be negative. With centred columns
(K1 = 0) it needs only ⟨K, L⟩ = ‖XᵀY‖², the squared row norms a, b and their sums:
``h(K, L) = ⟨K, L⟩ - aᵀb (1 + 2/(n-2)) + ΣaΣb / ((n-1)(n-2))``.

**All layer pairs** (:func:`cka_matrix`) from two activation stores over the *same* token
sequences (refused otherwise, naming the first difference): every ⟨K_l, L_m⟩ at once, from
the Gram matrices built a block of rows at a time (only the blocks on and above the
diagonal; float64), or from XᵀY when that is cheaper (many rows, narrow models). CKA is
dominated by tokens of massive activation (the first token, and a few others; Sun et al. 2024),
so the matrix is given twice: over every row, and without the first token of each example
and any row whose largest |activation| in some layer is over `massive_abs` and over
`massive_ratio` times that layer's median |activation|. Control: a layer against a copy of
itself with its rows shuffled (near 0).

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


def _hsic_terms(cross, a_dot_b, sum_a, sum_b, n: int, debiased: bool):
    """HSIC (up to a factor common to every pair) from ⟨K, L⟩ of centred data."""
    if not debiased:
        return cross
    return cross - a_dot_b * (1 + 2 / (n - 2)) + sum_a * sum_b / ((n - 1) * (n - 2))


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
    x = x - x.mean(0)
    y = y - y.mean(0)
    a, b = (x * x).sum(1), (y * y).sum(1)

    def h(p, q, pa, qa):
        cross = float((p.T @ q).square().sum())
        return _hsic_terms(cross, float(pa @ qa), float(pa.sum()), float(qa.sum()), n, debiased)

    xy, xx, yy = h(x, y, a, b), h(x, x, a, a), h(y, y, b, b)
    if xx <= 0 or yy <= 0:
        return math.nan
    return xy / math.sqrt(xx * yy)


def _grams_cross(
    xs: torch.Tensor, ys: torch.Tensor, block: int, gemm: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """⟨K_l, L_m⟩ [La, Lb], ⟨K_l, K_l⟩ [La], ⟨L_m, L_m⟩ [Lb] for centred xs [La, n, da] and ys
    [Lb, n, db], from Gram blocks on and above the diagonal (off-diagonal ones counted twice).
    The Gram blocks are products in `gemm`; everything summed from them is float64."""
    n = xs.shape[1]
    xs, ys = xs.to(gemm), ys.to(gemm)
    cross = torch.zeros(xs.shape[0], ys.shape[0], dtype=torch.float64)
    self_x = torch.zeros(xs.shape[0], dtype=torch.float64)
    self_y = torch.zeros(ys.shape[0], dtype=torch.float64)
    starts = list(range(0, n, block))
    for i, lo in enumerate(starts):
        rows_i = slice(lo, min(lo + block, n))
        for hi_start in starts[i:]:
            rows_j = slice(hi_start, min(hi_start + block, n))
            weight = 1.0 if hi_start == lo else 2.0
            k = torch.bmm(xs[:, rows_i], xs[:, rows_j].transpose(1, 2)).flatten(1).double()
            m = torch.bmm(ys[:, rows_i], ys[:, rows_j].transpose(1, 2)).flatten(1).double()
            cross += weight * (k @ m.T)
            self_x += weight * k.square().sum(1)
            self_y += weight * m.square().sum(1)
    return cross, self_x, self_y


def _features_cross(
    xs: torch.Tensor, ys: torch.Tensor, gemm: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same as :func:`_grams_cross` from ‖X_lᵀY_m‖² (cheaper when rows outnumber widths)."""

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
    exact: bool = True,
) -> torch.Tensor:
    """CKA of every (X_l, Y_m): [len(xs), len(ys)]; all X share their rows with all Y.

    Centring, every sum and every ratio are float64. With ``exact=False`` the matrix products
    themselves (Gram blocks, or XᵀY) run in float32 on the float64-centred data, about 2.5x
    faster on a CPU; the result then agrees with the float64 one to about 1e-6."""
    if not xs or not ys:
        raise UserError("no layers to compare")
    n = xs[0].shape[0]
    if any(x.shape[0] != n for x in [*xs, *ys]):
        raise UserError("every layer must have the same rows")
    if n < (4 if debiased else 2):
        raise UserError(f"CKA needs at least {4 if debiased else 2} rows, got {n}")
    cx = torch.stack([x.to(torch.float64) for x in xs])
    cy = torch.stack([y.to(torch.float64) for y in ys])
    cx -= cx.mean(1, keepdim=True)
    cy -= cy.mean(1, keepdim=True)
    la, lb, da, db = cx.shape[0], cy.shape[0], cx.shape[2], cy.shape[2]
    gram_cost = (la + lb) * n * n * (da + db) / 4 + la * lb * n * n / 2
    feature_cost = la * lb * n * da * db + n * (la * da * da + lb * db * db)
    gemm = torch.float64 if exact else torch.float32
    if gram_cost <= feature_cost:
        cross, self_x, self_y = _grams_cross(cx, cy, block, gemm)
    else:
        cross, self_x, self_y = _features_cross(cx, cy, gemm)
    a, b = cx.square().sum(2), cy.square().sum(2)  # [La, n], [Lb, n]: diag of each Gram
    sa, sb = a.sum(1), b.sum(1)
    hxy = _hsic_terms(cross, a @ b.T, sa[:, None], sb[None, :], n, debiased)
    hxx = _hsic_terms(self_x, a.square().sum(1), sa, sa, n, debiased)
    hyy = _hsic_terms(self_y, b.square().sum(1), sb, sb, n, debiased)
    denom = (hxx[:, None] * hyy[None, :]).clamp_min(0).sqrt()
    out = hxy / denom
    out[denom == 0] = math.nan
    return out


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
) -> CKAResult:
    """Linear CKA of every layer of `a` against every layer of `b` at `site` (see the module
    doc). Both stores must hold the same token sequences and positions."""
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
        median = float(magnitude.median())
        massive |= (top > massive_abs) & (top > massive_ratio * median)
    keep = ~(first | massive)
    if int(keep.sum()) < (4 if debiased else 2):
        raise UserError(
            f"only {int(keep.sum())} rows are left without the first and massive-activation "
            "tokens: too few for CKA"
        )
    matrix = cka_all_pairs(xs, ys, debiased)
    trimmed = cka_all_pairs([x[keep] for x in xs], [y[keep] for y in ys], debiased)

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
    for x in picks:
        rows = xs[la.index(x)]
        shuffled["every_token"].append(linear_cka(rows, rows[perm], debiased))
        shuffled["without_first_and_massive"].append(
            linear_cka(rows[keep_idx], rows[perm_kept], debiased)
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
        settings={"massive_abs": massive_abs, "massive_ratio": massive_ratio, "seed": seed},
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
