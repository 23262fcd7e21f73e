"""Objectives and batched training for linear and one-hidden-layer MLP probes.

A chunk of P probes is trained as one batched problem. Every probe sees its own standardised
features (train-split mean and std, like scikit-learn's StandardScaler). Labels are [P, n, H]:
H heads, each its own softmax over `n_classes`, -1 = no label for that (row, head).

- linear: logits_h = W_h x + b_h, one L-BFGS problem per (probe, head), so each head is exactly
  an L2-regularised multinomial logistic regression (scikit-learn's objective with
  C = 1 / (l2 * n_labelled)).
- mlp: logits = W1 ReLU(W2 x + b2) + b1, the hidden layer shared by the heads (one probe outputs
  the whole H x C matrix, as in the planning paper), one L-BFGS problem per probe.

Speed. Each probe is solved in the eigenbasis of its training rows (computed once per probe and
shared by the shuffled-label control):
- with fewer rows n than features d, L2-regularised weights lie in the span of the training
  rows, so the problem shrinks from d to n dimensions: an exact change of variables;
- in that basis the feature covariance is diagonal, which gives L-BFGS a diagonal
  preconditioner for the quadratic part of the loss. Activations are strongly anisotropic, and
  this cuts the number of steps several-fold where it matters.
The MLP's first layer is trained in the same basis.

Classes absent from a head's training labels get a logit of -inf (never predicted), as
scikit-learn fits only the classes it has seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reasonlens.analyses.probes.lbfgs import minimize

# Eigen-directions with less than this share of the top eigenvalue are float32 round-off.
_RANK_TOL = 1e-6


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # "linear" | "mlp"
    n_classes: int
    hidden: int
    l2: float
    max_iter: int
    tol: float
    class_weight: str | None  # None | "balanced"
    seed: int
    keep_weights: bool = True  # export linear weights in activation space


@dataclass
class Features:
    """Standardised training features of a chunk of probes, in their eigenbasis."""

    mean: torch.Tensor  # [P, d] train-split mean
    scale: torch.Tensor  # [P, d] train-split std (1 where constant)
    train: torch.Tensor  # [P, n, r] training rows in the basis; column j has squared norm lam_j
    eigenvalues: torch.Tensor  # [P, r] lam_j (0 for dropped directions)
    rows: torch.Tensor | None  # [P, n, d] standardised training rows when n < d, else None
    basis: torch.Tensor  # [P, n, r] if rows is not None (acts on rows @ z), else [P, d, r]

    @classmethod
    def build(cls, x_train: torch.Tensor) -> Features:
        x = x_train.float()
        mean = x.mean(1)
        scale = x.std(1, correction=0)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        z = (x - mean[:, None]) / scale[:, None]
        n, d = z.shape[1:]
        rows = z if n < d else None
        gram = torch.bmm(z, z.mT) if n < d else torch.bmm(z.mT, z)
        lam, vecs = torch.linalg.eigh(gram)
        keep = lam > _RANK_TOL * lam.amax(-1, keepdim=True)
        lam = torch.where(keep, lam, 0.0)
        if rows is None:  # basis of feature space: coordinates z @ U
            basis = vecs * keep[:, None]
            return cls(mean, scale, torch.bmm(z, basis), lam, None, basis)
        # basis of the row span: V = z^T U lam^-1/2, so z_train @ V = U lam^1/2
        inv_sqrt = torch.where(keep, lam.clamp(min=1e-30).rsqrt(), 0.0)
        return cls(mean, scale, vecs * lam.sqrt()[:, None], lam, rows, vecs * inv_sqrt[:, None])

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """[P, m, d] raw features -> [P, m, r] coordinates in the basis."""
        z = (x.float() - self.mean[:, None]) / self.scale[:, None]
        if self.rows is not None:
            z = torch.bmm(z, self.rows.mT)
        return torch.bmm(z, self.basis)

    def lift(self, w: torch.Tensor) -> torch.Tensor:
        """[P, r, k] weights in the basis -> [P, d, k] weights on standardised features."""
        w = torch.bmm(self.basis, w)
        return w if self.rows is None else torch.bmm(self.rows.mT, w)


@dataclass
class Fitted:
    """Trained parameters of a chunk of probes (in the basis of `features`)."""

    spec: ProbeSpec
    features: Features
    params: torch.Tensor  # [P, D] flat, layout per kind (see _unpack_*)
    present: torch.Tensor  # [P, H, C] classes seen in training
    iterations: torch.Tensor  # [P, H]
    converged: torch.Tensor  # [P, H]

    def logits(self, f: torch.Tensor) -> torch.Tensor:
        """[P, m, r] coordinates in the basis (see Features.project) -> [P, m, C, H] logits."""
        p, h, c = self.present.shape
        if self.spec.kind == "linear":
            w, b = _unpack_linear(self.params, p, h, f.shape[-1], c)
            out = torch.baddbmm(b, f, w)
        else:
            w2, b2, w1, b1 = _unpack_mlp(self.params, p, f.shape[-1], self.spec.hidden, h * c)
            out = torch.baddbmm(b1, torch.relu(torch.baddbmm(b2, f, w2)), w1)
        mask = ~self.present.transpose(1, 2)[:, None]
        return out.view(*f.shape[:2], c, h).masked_fill(mask, -math.inf)

    def predict(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """[P, m, d] raw features (None: the training rows) -> [P, H, m] class ids."""
        f = self.features.train if x is None else self.features.project(x)
        return self.logits(f).argmax(-2).transpose(1, 2)

    def activation_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear weights [P, H, C, d] and biases [P, H, C] acting on raw activations.

        weight @ x + bias reproduces the probe's logits; classes never seen in training have
        bias -inf.
        """
        p, h, c = self.present.shape
        feats = self.features
        w, b = _unpack_linear(self.params, p, h, feats.train.shape[-1], c)
        w = feats.lift(w.contiguous())  # [P, d, C * H] on standardised features
        w = w.view(p, -1, c, h).permute(0, 3, 2, 1) / feats.scale[:, None, None, :]
        b = b.reshape(p, c, h).transpose(1, 2) - torch.einsum("phcd,pd->phc", w, feats.mean)
        return w.contiguous(), b.masked_fill(~self.present, -math.inf)


def fit(features: Features, y: torch.Tensor, spec: ProbeSpec) -> Fitted:
    """Train a chunk of probes on `features` with labels y [P or 1, n, H] (-1 = no label)."""
    f = features.train
    p, n, r = f.shape
    y = y.expand(p, -1, -1)
    h, c = y.shape[-1], spec.n_classes
    present, weight = _class_stats(y, spec)
    if spec.kind == "linear":
        problem = _LinearProblem(f, y, weight, present, spec.l2)
        x0 = f.new_zeros(p * h, (r + 1) * c)
        res = minimize(
            problem,
            x0,
            group_size=h,
            max_iter=spec.max_iter,
            tol=spec.tol,
            precond=_linear_precond(features.eigenvalues, present, n, spec.l2),
        )
        # back to [P, D] with the (probe, head) problems laid out as [P, r + 1, C, H]
        params = res.x.view(p, h, r + 1, c).permute(0, 2, 3, 1).reshape(p, -1)
        iterations, converged = res.iterations.view(p, h), res.converged.view(p, h)
    else:
        problem = _MlpProblem(f, y, weight, present, spec)
        x0 = _mlp_init(r, spec, h * c).expand(p, -1)
        res = minimize(problem, x0, max_iter=spec.max_iter, tol=spec.tol)
        params = res.x
        iterations = res.iterations[:, None].expand(p, h)
        converged = res.converged[:, None].expand(p, h)
    return Fitted(spec, features, params, present, iterations, converged)


def _class_stats(y: torch.Tensor, spec: ProbeSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes seen per (probe, head) [P, H, C] and per-(row, head) loss weights [P, n, H]."""
    valid = y >= 0
    onehot = torch.nn.functional.one_hot(y.clamp(min=0), spec.n_classes) * valid[..., None]
    counts = onehot.sum(1).float()  # [P, H, C]
    present = counts > 0
    present = torch.where(present.any(-1, keepdim=True), present, True)  # no label: keep all
    if spec.class_weight == "balanced":
        n_seen = present.sum(-1, keepdim=True).float()
        per_class = counts.sum(-1, keepdim=True) / (n_seen * counts.clamp(min=1))
        weight = per_class.gather(-1, y.clamp(min=0).transpose(1, 2)).transpose(1, 2)
        return present, weight * valid
    return present, valid.float()


def _linear_precond(lam: torch.Tensor, present: torch.Tensor, n: int, l2: float) -> torch.Tensor:
    """Diagonal inverse-Hessian guess [P * H, (r + 1) * C] at the start (uniform softmax).

    Along eigen-direction j the loss curvature is about kappa * lam_j / n + l2, with
    kappa = p (1 - p) the softmax curvature at p = 1 / (classes seen); the bias has kappa.
    """
    p, h, c = present.shape
    k = present.sum(-1).float().clamp(min=2)  # [P, H]
    kappa = (1 / k) * (1 - 1 / k)
    curvature = kappa[:, :, None] * lam[:, None, :] / n + l2
    weights = 1.0 / curvature.clamp(min=1e-12)  # [P, H, r]; dropped directions have no gradient
    full = torch.cat([weights, 1.0 / kappa[:, :, None]], 2)  # [P, H, r + 1]
    return full[..., None].expand(p, h, lam.shape[1] + 1, c).reshape(p * h, -1)


def _unpack_linear(params: torch.Tensor, p: int, h: int, d: int, c: int):
    """[P, (d + 1) * C * H] -> weight [P, d, C * H] and bias [P, 1, C * H]."""
    full = params.view(p, d + 1, c * h)
    return full[:, :d], full[:, d:]


class _LinearProblem:
    """Loss and analytic gradient of every (probe, head) logistic regression at once.

    Rows of x are (probe, head) problems holding [r + 1, C] weights (last row: bias). Logits are
    laid out [P, n, C, H]: a softmax over a short non-last dim vectorises well.
    """

    def __init__(self, f, y, weight, present, l2: float):
        self.f, self.y, self.weight, self.present, self.l2 = f, y, weight, present, l2
        norm = weight.sum(1, keepdim=True).clamp(min=1e-12)  # [P, 1, H]
        self.row_scale = (weight / norm)[:, :, None]  # [P, n, 1, H]
        # unlabelled rows point at a class the head has seen, so their log-prob is finite
        fallback = present.float().argmax(-1)[:, None]  # [P, 1, H]
        self.index = torch.where(y >= 0, y, fallback)[:, :, None]  # [P, n, 1, H]
        self.mask = None if bool(present.all()) else ~present.transpose(1, 2)[:, None]

    def subset(self, groups: torch.Tensor) -> _LinearProblem:
        g = groups
        return _LinearProblem(self.f[g], self.y[g], self.weight[g], self.present[g], self.l2)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, l2 = self.f, self.l2
        p, n, r = f.shape
        h, c = self.present.shape[1:]
        w = x.view(p, h, r + 1, c)
        wm = w[:, :, :r].permute(0, 2, 3, 1).reshape(p, r, c * h)
        b = w[:, :, r].transpose(1, 2).reshape(p, 1, c * h)
        logits = torch.baddbmm(b, f, wm).view(p, n, c, h)
        if self.mask is not None:
            logits.masked_fill_(self.mask, -math.inf)
        logits.sub_(logits.amax(-2, keepdim=True))  # stable softmax: largest logit is 0
        picked = logits.gather(-2, self.index)
        g = logits.exp_()
        total = g.sum(-2, keepdim=True)
        nll = total.log() - picked  # [P, n, 1, H]
        loss = (nll * self.row_scale).sum((1, 2)) + 0.5 * l2 * w[:, :, :r].pow(2).sum((2, 3))
        g.div_(total)  # softmax
        g.scatter_add_(-2, self.index, torch.full_like(nll, -1.0))
        g.mul_(self.row_scale)
        grad = torch.empty_like(w)
        gw = torch.bmm(f.mT, g.view(p, n, c * h)).view(p, r, c, h)
        torch.add(gw.permute(0, 3, 1, 2), w[:, :, :r], alpha=l2, out=grad[:, :, :r])
        grad[:, :, r] = g.sum(1).transpose(1, 2)
        return loss.reshape(p * h), grad.view(p * h, -1)


def _unpack_mlp(params: torch.Tensor, p: int, d: int, hidden: int, k: int):
    """[P, D] -> w2 [P, d, hidden], b2 [P, 1, hidden], w1 [P, hidden, k], b1 [P, 1, k]."""
    w2, b2, w1, b1 = params.split([d * hidden, hidden, hidden * k, k], dim=1)
    return w2.view(p, d, hidden), b2.view(p, 1, hidden), w1.view(p, hidden, k), b1.view(p, 1, k)


def _mlp_init(d: int, spec: ProbeSpec, k: int) -> torch.Tensor:
    """One seeded initialisation shared by every probe, so a probe's result does not depend on
    which other probes it was trained with."""
    gen = torch.Generator().manual_seed(spec.seed)
    w2 = torch.randn(d, spec.hidden, generator=gen) * math.sqrt(2.0 / d)
    w1 = torch.randn(spec.hidden, k, generator=gen) * math.sqrt(1.0 / spec.hidden)
    return torch.cat([w2.flatten(), torch.zeros(spec.hidden), w1.flatten(), torch.zeros(k)])[None]


class _MlpProblem:
    """Loss (summed over heads) and autograd gradient of every probe's MLP at once."""

    def __init__(self, f, y, weight, present, spec: ProbeSpec):
        self.f, self.y, self.weight, self.present, self.spec = f, y, weight, present, spec
        norm = weight.sum(1, keepdim=True).clamp(min=1e-12)
        self.row_scale = (weight / norm)[:, :, None]  # [P, n, 1, H]
        fallback = present.float().argmax(-1)[:, None]
        self.index = torch.where(y >= 0, y, fallback)[:, :, None]
        self.mask = ~present.transpose(1, 2)[:, None]

    def subset(self, groups: torch.Tensor) -> _MlpProblem:
        g = groups
        return _MlpProblem(self.f[g], self.y[g], self.weight[g], self.present[g], self.spec)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, spec = self.f, self.spec
        p, n, r = f.shape
        h, c = self.present.shape[1:]
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            w2, b2, w1, b1 = _unpack_mlp(x, p, r, spec.hidden, h * c)
            hid = torch.relu(torch.baddbmm(b2, f, w2))
            logits = torch.baddbmm(b1, hid, w1).view(p, n, c, h).masked_fill(self.mask, -math.inf)
            lse = logits.logsumexp(-2, keepdim=True)
            nll = lse - logits.gather(-2, self.index)
            loss = (nll * self.row_scale).sum((1, 2, 3))
            loss = loss + 0.5 * spec.l2 * (w2.pow(2).sum((1, 2)) + w1.pow(2).sum((1, 2)))
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad
