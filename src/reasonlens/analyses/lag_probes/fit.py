"""Lag probes: for every (layer, lag), a linear probe predicting label[t + lag] from
activation[t], all trained together in batched tensors while the chains stream past.

The probes of one fit share everything but their weights: one weight tensor ``[F, K, d]`` (F
feature sets, e.g. layers; K lags) and biases ``[F, K]``. A batch of chains becomes features
``[F, N, d]`` (N scored tokens) and targets ``[N, K]`` (the label ``lag`` tokens later, -1 where
that runs off the chain or into the prompt), and one batched matrix product gives every
probe's logits ``[F, N, K]``.

Objective of each probe: class-weighted binary cross-entropy (the weights of scikit-learn's
``class_weight="balanced"``: n / (2 n_pos) on positives, n / (2 n_neg) on negatives, per lag,
from the training chains), averaged over the batch's labelled rows, plus ``(l2 / 2) ||w||^2``
on standardised features (train mean and std from the first ``norm_chains`` training
chains). Adam on minibatches of chains. The probes' losses are summed, and Adam acts
element-wise, so each probe follows exactly the path it would follow alone: fitting the grid
together is the same as fitting the probes one at a time, only faster.

Early stopping on validation F1, per probe: after each epoch every probe is scored on the
validation chains (F1 at its best threshold there, or at probability 0.5); a probe keeps its
best epoch's weights and is done once it has not improved for ``patience`` epochs; the fit
ends when every probe is done or after ``max_epochs``. Chains are split into train /
validation / test by chain, never by token.

Memory: only a batch of chains is read at a time (a background thread reads the next while
the current one trains). Standardised rows are kept between epochs for as many chains as fit
in ``cache_bytes`` (all of them for small data); the rest are read again each epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from reasonlens.analyses.lag_probes import metrics as M
from reasonlens.analyses.lag_probes.result import LagProbeResult, LagProbes
from reasonlens.analyses.lag_probes.rows import RowReader, Rows, probe_logits, score_chains
from reasonlens.analyses.lag_probes.sources import ChainSource
from reasonlens.analyses.probes.fit import train_test_split
from reasonlens.errors import UserError
from reasonlens.progress import Progress
from reasonlens.threads import torch_threads

#: The seed study's lags: -8 to +48 tokens by 4.
DEFAULT_LAGS = tuple(range(-8, 49, 4))
THRESHOLDS = ("tuned", "fixed")
#: "all": every token t+lag is a target (the seed's measure); "onset": anticipation only
#: (rows inside a span left out; see ``rows``).
TARGETS = ("all", "onset")


@dataclass(frozen=True)
class ChainSplit:
    """Chain indices of each side of the split."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}


def split_chains(
    n: int, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> ChainSplit:
    """Seeded split of chains 0..n-1 (each side at least one chain)."""
    if n < 3:
        raise UserError(f"need at least 3 chains to split into train, validation and test; got {n}")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError("val_fraction and test_fraction must be in (0, 1) with a sum below 1")
    rest, test = train_test_split(n, test_fraction, seed=seed)
    share = val_fraction / (1 - test_fraction)
    train_i, val_i = train_test_split(len(rest), share, seed=seed + 1)
    return ChainSplit(
        tuple(rest[train_i].tolist()), tuple(rest[val_i].tolist()), tuple(test.tolist())
    )


@dataclass(frozen=True)
class LagProbeConfig:
    """How lag probes are fitted (see the module docstring); every field has a default."""

    lags: tuple[int, ...] = DEFAULT_LAGS
    l2: float = 1e-4
    lr: float = 1e-3
    batch_tokens: int = 4096
    min_steps: int = 16  # steps per epoch at least (small data: smaller batches)
    max_epochs: int = 50
    patience: int = 3
    threshold: str = "tuned"  # "tuned": the F1-best threshold on validation; "fixed": p = 0.5
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    norm_chains: int = 64
    cache_bytes: int = 2 * 2**30
    device: str | None = None  # None: CUDA when available
    threads: int | None = None  # CPU threads for torch during the fit (None: as set)
    targets: str = "all"  # "all" (the seed's measure) or "onset" (positive lags only)

    def __post_init__(self) -> None:
        lags = tuple(int(k) for k in self.lags)
        if not lags or len(set(lags)) != len(lags):
            raise UserError("lags must be a non-empty list of distinct integers")
        object.__setattr__(self, "lags", lags)
        if self.threshold not in THRESHOLDS:
            raise UserError(f"threshold must be one of {', '.join(THRESHOLDS)}")
        sizes = (self.batch_tokens, self.min_steps, self.max_epochs)
        if self.l2 < 0 or self.lr <= 0 or min(sizes) < 1:
            raise UserError("need l2 >= 0, lr > 0, and batch_tokens, min_steps, max_epochs >= 1")
        if self.patience < 1 or self.bootstrap < 0 or not 0 < self.ci < 1:
            raise UserError("need patience >= 1, bootstrap >= 0 and 0 < ci < 1")
        if self.targets not in TARGETS:
            raise UserError(f"targets must be one of {', '.join(TARGETS)}")
        if self.targets == "onset" and min(lags) <= 0:
            raise UserError("onset targets measure anticipation: every lag must be positive")

    @property
    def onset(self) -> bool:
        return self.targets == "onset"

    @property
    def max_lag(self) -> int:
        """The largest |lag|: chains need more tokens than this to score every lag."""
        return max(abs(k) for k in self.lags)

    def to_dict(self) -> dict:
        return asdict(self)


def fit_lag_probes(
    source: ChainSource,
    config: LagProbeConfig | None = None,
    *,
    split: ChainSplit | None = None,
    progress: bool = False,
    label: str = "lag probes",
    **overrides,
) -> LagProbeResult:
    """Fit every (feature set, lag) probe of ``source`` together; score them on the test
    chains with bootstrap intervals over chains. ``overrides`` replace config fields;
    ``progress`` shows the epochs under ``label``."""
    config = config or LagProbeConfig()
    if not isinstance(config, LagProbeConfig):
        raise TypeError(f"config must be a LagProbeConfig, not {type(config).__name__}")
    if overrides:
        config = LagProbeConfig(**{**config.to_dict(), **overrides})
    started = time.perf_counter()
    n = len(source.ids)
    split = split or split_chains(n, config.val_fraction, config.test_fraction, config.seed)
    _check_split(split, n)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with torch_threads(config.threads):
        fitter = _Fitter(source, config, split, device)
        with Progress(progress, config.max_epochs, f"{label}: epochs") as bar:
            probes, history, best_epoch = fitter.train(bar.advance)
        opts = {"batch_tokens": config.batch_tokens, "reader": fitter.rows, "seed": config.seed}
        val = probes.evaluate(source, split.val, bootstrap=0, **opts)
        test = probes.evaluate(source, split.test, bootstrap=config.bootstrap, ci=config.ci, **opts)
    return LagProbeResult(
        layers=list(source.layers),
        lags=list(config.lags),
        split=split,
        probes=probes,
        val=val,
        test=test,
        best_epoch=best_epoch,
        epochs=len(history),
        history=history,
        config={**config.to_dict(), "device": str(device)},
        seconds=time.perf_counter() - started,
    )


def _check_split(split: ChainSplit, n: int) -> None:
    sides = (split.train, split.val, split.test)
    if not all(sides):
        raise UserError("every side of the split (train, val, test) needs at least one chain")
    every = [i for side in sides for i in side]
    if len(set(every)) != len(every):
        raise UserError("the split puts a chain on two sides")
    if min(every) < 0 or max(every) >= n:
        raise UserError(f"the split names chains outside 0..{n - 1}")


class _Fitter:
    """One fit of a grid; with ``label_sets``, one fit per label set at once (their probes
    are columns of the same tensors, each following its own path: see the module doc)."""

    def __init__(
        self,
        source: ChainSource,
        config: LagProbeConfig,
        split: ChainSplit,
        device,
        label_sets: Sequence[Sequence[torch.Tensor]] | None = None,
    ):
        self.source, self.config, self.split, self.device = source, config, split, device
        self.lags = config.lags
        self.label_sets = label_sets
        labels = source.labels
        for i in (*split.train, *split.val, *split.test):
            if int((labels[i] >= 0).sum()) == 0:
                raise UserError(f"chain {source.ids[i]}: no scored tokens")
        mean, scale = self._standardisation()
        self.dim = mean.shape[1]
        self.rows = RowReader(
            source, self.lags, device, mean, scale, config.cache_bytes, config.onset, label_sets
        )
        self.width = self.rows.width
        self.w_pos, self.w_neg = self._class_weights()

    def _standardisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Train mean and std per feature set, from the first ``norm_chains`` training chains
        in a seeded order."""
        gen = torch.Generator().manual_seed(self.config.seed)
        order = torch.randperm(len(self.split.train), generator=gen)
        pick = [self.split.train[i] for i in order[: self.config.norm_chains].tolist()]
        total = total_sq = None
        count = 0
        for start in range(0, len(pick), 8):
            chunk = pick[start : start + 8]
            for i, f in zip(chunk, self.source.features(chunk), strict=True):
                x = f[:, (self.source.labels[i] >= 0).to(f.device)].to(self.device, torch.float64)
                s, s2 = x.sum(1), (x * x).sum(1)
                total = s if total is None else total + s
                total_sq = s2 if total_sq is None else total_sq + s2
                count += x.shape[1]
        mean = total / count
        var = (total_sq / count - mean * mean).clamp(min=0)
        std = var.sqrt()
        scale = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
        return mean.float(), scale.float()

    def _class_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per target column; a label set (a null draw) whose training chains have one class
        at a lag gets weight 0 there: its probe learns nothing and scores chance."""
        pos = torch.zeros(self.width, dtype=torch.float64)
        n = torch.zeros(self.width, dtype=torch.float64)
        for i in self.split.train:
            y = self.rows.targets(i)
            pos += (y == 1).sum(0).double()
            n += (y >= 0).sum(0).double()
        one_class = (pos == 0) | (pos == n)
        if bool(one_class.any()) and self.label_sets is None:
            lag = self.lags[int(one_class.nonzero()[0]) % len(self.lags)]
            raise UserError(
                f"at lag {lag} the training chains have only one class of label; use "
                "more chains, smaller lags, or a label that occurs"
            )
        w_pos = torch.where(one_class, 0.0, n / (2 * pos).clamp(min=1)).float().to(self.device)
        w_neg = torch.where(one_class, 0.0, n / (2 * (n - pos)).clamp(min=1))
        return w_pos, w_neg.float().to(self.device)

    def train(self, on_epoch=lambda: None) -> tuple[LagProbes, list[dict], torch.Tensor]:
        cfg, device = self.config, self.device
        n_f, n_k = len(self.source.layers), self.width
        torch.manual_seed(cfg.seed)
        weight = torch.zeros(n_f, n_k, self.dim, device=device)
        bias = torch.zeros(n_f, n_k, device=device)
        adam = _Adam([weight, bias], cfg.lr)
        batch = self._batch_tokens()
        best = torch.full((n_f, n_k), -math.inf, device=device)
        best_w = torch.zeros(n_f, n_k, self.dim, device=device)
        best_b = torch.zeros(n_f, n_k, device=device)
        best_t = torch.zeros(n_f, n_k, device=device)
        best_epoch = torch.zeros(n_f, n_k, dtype=torch.long)
        stale = torch.zeros(n_f, n_k, dtype=torch.long, device=device)
        history: list[dict] = []
        gen = torch.Generator().manual_seed(cfg.seed + 2)
        for epoch in range(1, cfg.max_epochs + 1):
            t0 = time.perf_counter()
            perm = torch.randperm(len(self.split.train), generator=gen).tolist()
            order = [self.split.train[i] for i in perm]
            total, steps = 0.0, 0
            for _, rows in self.rows.batches(order, batch):
                loss, grads = self._loss_and_grads(weight, bias, rows)
                adam.step(grads)
                total += float(loss) / (n_f * n_k)
                steps += 1
            with torch.no_grad():
                scores, target, _ = score_chains(
                    weight, bias, self.rows, list(self.split.val), cfg.batch_tokens
                )
                scores = scores.reshape(n_f * n_k, -1)
                target = target.long().repeat(n_f, 1)
                if cfg.threshold == "tuned":
                    thr, f1 = M.best_f1_threshold(scores, target)
                else:
                    thr = torch.zeros(n_f * n_k, device=device)
                    f1 = _f1_at(scores, target, thr)
                f1 = torch.nan_to_num(f1.view(n_f, n_k), nan=-1.0)
                thr = thr.view(n_f, n_k)
                live = stale < cfg.patience
                better = live & (f1 > best)
                best = torch.where(better, f1, best)
                best_w[better] = weight[better]
                best_b[better] = bias[better]
                best_t[better] = thr[better]
                best_epoch[better.cpu()] = epoch
                stale = torch.where(better, 0, stale + live.long())
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / max(steps, 1),
                    "val_f1_mean": float(torch.where(best > -1, best, torch.nan).nanmean()),
                    "probes_live": int((stale < cfg.patience).sum()),
                    "seconds": time.perf_counter() - t0,
                }
            )
            on_epoch()
            if not bool((stale < cfg.patience).any()):
                break
        probes = LagProbes(
            layers=list(self.source.layers),
            lags=list(self.lags) * (len(self.label_sets) if self.label_sets else 1),
            weight=best_w.cpu(),
            bias=best_b.cpu(),
            mean=self.rows.mean.cpu(),
            scale=self.rows.scale.cpu(),
            threshold=best_t.cpu(),
            val_f1=best.cpu(),
            onset=cfg.onset,
        )
        return probes, history, best_epoch

    def _batch_tokens(self) -> int:
        """``batch_tokens``, lowered so that an epoch has at least ``min_steps`` steps."""
        rows = sum(int((self.source.labels[i] >= 0).sum()) for i in self.split.train)
        return max(1, min(self.config.batch_tokens, math.ceil(rows / self.config.min_steps)))

    @torch.no_grad()
    def _loss_and_grads(
        self, weight: torch.Tensor, bias: torch.Tensor, rows: Rows
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The summed objective of every probe and its gradients (analytic: for class-weighted
        BCE, d loss / d logit = w (sigmoid(logit) - y) / sum w)."""
        logits = probe_logits(weight, bias, rows.x)  # [F, N, K]
        y = rows.y.long()
        target = y.clamp(min=0).float()
        w = torch.where(y == 1, self.w_pos, self.w_neg) * (y >= 0)  # [N, K]
        w = w / w.sum(0).clamp(min=1e-12)
        bce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
        l2 = self.config.l2
        loss = (bce * w).sum() + 0.5 * l2 * weight.pow(2).sum()
        g = (torch.sigmoid(logits) - target) * w  # [F, N, K]
        grad_w = torch.bmm(g.transpose(1, 2), rows.x).add_(weight, alpha=l2)
        return loss, [grad_w, g.sum(1)]


class _Adam:
    """Adam (Kingma & Ba; torch.optim.Adam's defaults) on a few tensors, element-wise, so every
    probe's update depends on its own gradients only. (torch.optim would import torch._dynamo:
    seconds of start-up for a few lines of arithmetic.)"""

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / c1)


def _f1_at(scores: torch.Tensor, target: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    pred = scores >= thr[:, None]
    pos = target == 1
    tp = (pred & pos).sum(1).double()
    fp = (pred & (target == 0)).sum(1).double()
    fn = (~pred & pos).sum(1).double()
    n_pos = pos.sum(1)
    return torch.where(n_pos > 0, 2 * tp / (2 * tp + fp + fn).clamp(min=1e-12), torch.nan).float()
