"""Classification metrics for many probes at once, with bootstrap confidence intervals.

Predictions and targets are [K, n] (K = probes x heads flattened, n = test rows); a target of -1
means "no label" and the row is left out of that head's score. Every metric is computed from
per-row weights, so a bootstrap resample is just a row of multiplicities
(:func:`reasonlens.analyses.stats.resample_weights`): all resamples of all probes are scored
with a few matrix products instead of a Python loop.
"""

from __future__ import annotations

import torch

METRICS = ("accuracy", "weighted_f1")


def weighted_scores(
    pred: torch.Tensor, target: torch.Tensor, n_classes: int, weight: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Accuracy and weighted F1 of [K, n] predictions under [B, n] row weights -> [B, K] each.

    Weighted F1 is scikit-learn's `f1_score(average="weighted")`: per-class F1 averaged with the
    true class counts as weights; a class never true nor predicted has no weight, and a class
    with no true positives scores 0. NaN where a head has no labelled row.
    """
    valid = (target >= 0).float()
    correct = (pred == target).float() * valid
    w = weight.float()
    labelled = w @ valid.T  # [B, K]
    acc = (w @ correct.T) / labelled
    true_1h = torch.nn.functional.one_hot(target.clamp(min=0), n_classes).float() * valid[..., None]
    pred_1h = torch.nn.functional.one_hot(pred.clamp(min=0), n_classes).float() * valid[..., None]
    k, n = pred.shape

    def weighted_counts(onehot: torch.Tensor) -> torch.Tensor:  # [K, n, C] -> [B, K, C]
        return (w @ onehot.permute(1, 0, 2).reshape(n, k * n_classes)).view(-1, k, n_classes)

    tp = weighted_counts(true_1h * pred_1h)
    support = weighted_counts(true_1h)
    predicted = weighted_counts(pred_1h)
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1e-12), 0.0)
    wf1 = (f1 * support).sum(-1) / support.sum(-1)
    return {"accuracy": acc, "weighted_f1": wf1}


def scores(pred: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict[str, torch.Tensor]:
    """Accuracy and weighted F1 of [K, n] predictions -> [K] each (NaN for no labelled row)."""
    ones = torch.ones(1, pred.shape[-1])
    return {k: v[0] for k, v in weighted_scores(pred, target, n_classes, ones).items()}


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of labelled rows (target >= 0) predicted right, over the last dim; NaN if none."""
    valid = target >= 0
    return ((pred == target) & valid).sum(-1) / valid.sum(-1)


def weighted_f1(pred: torch.Tensor, target: torch.Tensor, n_classes: int | None = None):
    """scikit-learn's weighted F1 over the last dim, vectorised over leading dims; -1 = ignore."""
    k = target.shape[:-1]
    flat_p, flat_t = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    if n_classes is None:
        n_classes = int(max(flat_p.max(), flat_t.max())) + 1
    return scores(flat_p, flat_t, n_classes)["weighted_f1"].view(k)


def bootstrap_scores(
    pred: torch.Tensor,
    target: torch.Tensor,
    n_classes: int,
    weight: torch.Tensor,
    groups: torch.Tensor | None = None,
    chunk: int = 100,
) -> dict[str, torch.Tensor]:
    """Metrics under each resample's weights: [B, K], or [B, G] averaged within `groups`.

    `groups` ([K] ints) averages heads of one probe inside each resample, which is what a
    confidence interval for "mean over heads" needs (the same resampled rows for all heads).
    """
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, weight.shape[0], chunk):
        part = weighted_scores(pred, target, n_classes, weight[start : start + chunk])
        for name, value in part.items():
            if groups is not None:
                value = group_nanmean(value, groups)
            out.setdefault(name, []).append(value)
    return {name: torch.cat(parts) for name, parts in out.items()}


def group_nanmean(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean over the last dim within each group id, ignoring NaN: [..., K] -> [..., G]."""
    n_groups = int(groups.max()) + 1
    finite = ~torch.isnan(values)
    shape = (*values.shape[:-1], n_groups)
    total = torch.zeros(shape).index_add_(-1, groups, torch.where(finite, values, 0.0))
    count = torch.zeros(shape).index_add_(-1, groups, finite.float())
    return total / count
