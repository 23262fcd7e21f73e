"""L-BFGS for many independent problems at once.

Probes are small problems (hundreds of rows, hundreds of features), and fitting thousands of them
one by one is dominated by per-call overhead. Here each row of a [B, D] parameter matrix is its
own problem with its own history, step size and stopping test, while every function evaluation is
one batched tensor computation. A problem's path does not depend on which other problems share
its batch, so fitting probes together gives the same answer as fitting each alone.

Two things keep the batch from waiting on its slowest member:
- the line search backtracks lazily: a problem whose trial point fails the Armijo test halves its
  step and retries at the next batched evaluation, so each loop costs one evaluation;
- problems are grouped (e.g. the heads of one probe share its features), and once a quarter of
  the groups still being evaluated have finished, the working set shrinks to the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

HISTORY = 5  # curvature pairs kept; with the diagonal preconditioner more barely helps


class Problem(Protocol):
    """B independent objectives in groups of `group_size` consecutive rows."""

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row losses [B'] and gradients [B', D] for the rows of the current groups."""
        ...

    def subset(self, groups: torch.Tensor) -> Problem:
        """The same objectives restricted to these groups (ids into the full problem)."""
        ...


@dataclass
class LbfgsResult:
    x: torch.Tensor  # [B, D] the solutions
    loss: torch.Tensor  # [B] objective at x
    grad_max: torch.Tensor  # [B] max |gradient| at x
    iterations: torch.Tensor  # [B] accepted steps per problem
    converged: torch.Tensor  # [B] bool: max |gradient| <= tol
    evaluations: int  # batched calls of the objective


def minimize(
    problem: Problem,
    x0: torch.Tensor,
    *,
    group_size: int = 1,
    max_iter: int = 100,
    tol: float = 1e-4,
    history: int = HISTORY,
    max_backtracks: int = 20,
    precond: torch.Tensor | None = None,
) -> LbfgsResult:
    """Minimise B independent smooth objectives, starting from x0 [B, D].

    Stops a problem when its largest gradient entry is at most `tol` (scipy's `gtol`, the test
    scikit-learn's `lbfgs` solver uses), when its line search can no longer decrease the loss
    (float precision reached), or after `max_iter` accepted steps. Curvature pairs with
    s.y <= 0 (possible on non-convex objectives) are skipped.

    `precond` ([B, D] or [1, D], positive) is a diagonal guess of the inverse Hessian used as
    L-BFGS's initial matrix; a good one cuts the number of steps on ill-conditioned problems.
    Without it the first step is scaled down as in torch.optim.LBFGS.
    """
    n, dim = x0.shape
    if n % group_size:
        raise ValueError(f"{n} rows do not split into groups of {group_size}")
    st = _State(x0.clone(), history, precond)
    st.loss, st.grad = problem(st.x)
    st.active = st.grad.abs().amax(1) > tol
    out = _Results.like(st)
    evaluations = 1
    full = problem
    for _ in range(max_iter * (max_backtracks + 1)):
        if not bool(st.active.any()):
            break
        groups_alive = st.active.view(-1, group_size).any(1)
        if int(groups_alive.sum()) <= 0.75 * groups_alive.numel():
            keep = torch.nonzero(groups_alive).squeeze(1)
            rows = (keep[:, None] * group_size + torch.arange(group_size)).reshape(-1)
            st.retire(out, rows)
            problem = full.subset(st.rows.view(-1, group_size)[:, 0] // group_size)
        if bool(st.need_direction.any()):
            st.new_directions()
        s = (st.step * st.active)[:, None] * st.direction
        trial = st.x + s
        new_loss, new_grad = problem(trial)
        evaluations += 1
        ok = st.active & torch.isfinite(new_loss)
        ok &= new_loss <= st.loss + 1e-4 * st.step * st.slope
        failed = st.active & ~ok
        y = new_grad - st.grad
        sy = _rowdot(s, y)
        yhy = _rowdot(y, y) if st.precond is None else _rowdot(y, y * st.precond)
        good = ok & (sy > 1e-8 * yhy)
        st.memory.push(s, y, sy, yhy, good)
        st.fresh &= ~good
        st.x = _update(ok, trial, st.x)
        st.loss = torch.where(ok, new_loss, st.loss)
        st.grad = _update(ok, new_grad, st.grad)
        st.iterations += ok.long()
        st.step = torch.where(failed, st.step * 0.5, st.step)
        st.backtracks += failed.long()
        st.need_direction = ok
        done = ok & (st.grad.abs().amax(1) <= tol)
        st.active &= ~done & (st.backtracks < max_backtracks) & (st.iterations < max_iter)
    st.retire(out, torch.zeros(0, dtype=torch.long))
    grad_max = out.grad_max
    return LbfgsResult(out.x, out.loss, grad_max, out.iterations, grad_max <= tol, evaluations)


class _State:
    """Per-problem optimiser state for the rows still in the working set."""

    def __init__(self, x: torch.Tensor, history: int, precond: torch.Tensor | None):
        n, dim = x.shape
        self.rows = torch.arange(n)  # ids of these rows in the full problem
        self.x = x
        self.loss = x.new_zeros(n)
        self.grad = torch.zeros_like(x)
        self.precond = precond
        self.memory = _Memory(history, n, dim, x)
        self.fresh = torch.ones(n, dtype=torch.bool)  # no curvature pair yet
        self.need_direction = torch.ones(n, dtype=torch.bool)
        self.direction = torch.zeros_like(x)
        self.step = x.new_zeros(n)
        self.slope = x.new_zeros(n)
        self.backtracks = torch.zeros(n, dtype=torch.long)
        self.iterations = torch.zeros(n, dtype=torch.long)
        self.active = torch.ones(n, dtype=torch.bool)

    def new_directions(self) -> None:
        """A fresh L-BFGS direction for every row that accepted its last step."""
        need, grad, precond = self.need_direction, self.grad, self.precond
        new_dir = -self.memory.apply(grad, precond)
        new_slope = _rowdot(grad, new_dir)
        uphill = need & ~(new_slope < 0)
        if bool(uphill.any()):  # a stale history can point uphill: restart from -grad
            self.memory.forget(uphill)
            self.fresh |= uphill
            restart = grad if precond is None else grad * precond.expand_as(grad)
            new_dir[uphill] = -restart[uphill]
            new_slope = _rowdot(grad, new_dir)
        first = torch.ones_like(self.step)
        if precond is None:
            first = torch.where(self.fresh, (1.0 / grad.abs().sum(1)).clamp(max=1.0), first)
        self.direction = _update(need, new_dir, self.direction)
        self.slope = torch.where(need, new_slope, self.slope)
        self.step = torch.where(need, first, self.step)
        self.backtracks = torch.where(need, 0, self.backtracks)

    def retire(self, out: _Results, keep: torch.Tensor) -> None:
        """Write every row not in `keep` (local indices) to `out`; keep only the others."""
        leaving = torch.ones(self.x.shape[0], dtype=torch.bool)
        leaving[keep] = False
        ids = self.rows[leaving]
        out.x[ids] = self.x[leaving]
        out.loss[ids] = self.loss[leaving]
        out.grad_max[ids] = self.grad[leaving].abs().amax(1)
        out.iterations[ids] = self.iterations[leaving]
        if keep.numel() == 0:
            return
        for name in ("rows", "x", "loss", "grad", "fresh", "need_direction", "direction", "step"):
            setattr(self, name, getattr(self, name)[keep])
        for name in ("slope", "backtracks", "iterations", "active"):
            setattr(self, name, getattr(self, name)[keep])
        if self.precond is not None and self.precond.shape[0] > 1:
            self.precond = self.precond[keep]
        self.memory.select(keep)


@dataclass
class _Results:
    """Final values of rows that have left the working set."""

    x: torch.Tensor
    loss: torch.Tensor
    grad_max: torch.Tensor
    iterations: torch.Tensor

    @classmethod
    def like(cls, st: _State) -> _Results:
        return cls(
            torch.empty_like(st.x),
            torch.empty_like(st.loss),
            torch.empty_like(st.loss),
            torch.empty_like(st.iterations),
        )


class _Memory:
    """The last `history` curvature pairs of every problem, in one shared ring buffer.

    A problem that skips a pair (failed step, or non-positive curvature) gets a zero pair in that
    slot, which the two-loop recursion treats as absent (rho = 0).
    """

    def __init__(self, history: int, n: int, dim: int, like: torch.Tensor):
        # slots are only read once written (see `apply`), so they need no zeroing
        self.s = like.new_empty(history, n, dim)
        self.y = like.new_empty(history, n, dim)
        self.rho = like.new_zeros(history, n)
        self.gamma = like.new_ones(n)
        self.stored = 0

    def push(self, s, y, sy, yhy, good) -> None:
        slot = self.stored % self.s.shape[0]
        self.s[slot] = s
        self.y[slot] = y
        if not bool(good.all()):
            self.s[slot][~good] = 0.0
            self.y[slot][~good] = 0.0
        self.rho[slot] = torch.where(good, 1.0 / sy.where(good, 1.0), 0.0)
        self.gamma = torch.where(good, sy / yhy.where(good, 1.0), self.gamma)
        self.stored += 1

    def forget(self, rows: torch.Tensor) -> None:
        self.rho[:, rows] = 0.0
        self.gamma[rows] = 1.0

    def select(self, keep: torch.Tensor) -> None:
        self.s, self.y = self.s[:, keep], self.y[:, keep]
        self.rho, self.gamma = self.rho[:, keep], self.gamma[keep]

    def apply(self, grad: torch.Tensor, precond: torch.Tensor | None) -> torch.Tensor:
        """H @ grad for every problem (the two-loop recursion), newest pair first."""
        history = self.s.shape[0]
        order = [(self.stored - 1 - k) % history for k in range(min(self.stored, history))]
        q = grad.clone()
        alphas = {}
        for i in order:
            alphas[i] = self.rho[i] * _rowdot(self.s[i], q)
            q.addcmul_(alphas[i][:, None], self.y[i], value=-1.0)
        r = q.mul_(self.gamma[:, None])
        if precond is not None:
            r.mul_(precond)
        for i in reversed(order):
            beta = self.rho[i] * _rowdot(self.y[i], r)
            r.addcmul_((alphas[i] - beta)[:, None], self.s[i])
        return r


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)  # faster on CPU than linalg.vecdot / einsum for these shapes


def _update(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """`old` with the rows where mask holds taken from `new` (modifies `old` in place)."""
    if bool(mask.all()):
        return new
    if bool(mask.any()):
        old[mask] = new[mask]
    return old
