"""Binary metrics for many probes at once, with bootstrap intervals over chains.

Scores are ``[P, N]`` (P probes, N token rows of the scored chains, concatenated), targets
``[P, N]`` with 1/0 and -1 for "no target" (the lag runs off the chain), and ``chain[N]`` says
which chain each row came from. A bootstrap resample draws *chains* with replacement (rows of
one chain are not independent), so every metric is reduced to per-chain sufficient statistics
first and a resample is a weight vector over chains
(:func:`reasonlens.analyses.stats.resample_weights`):

- precision, recall, F1 from per-chain true/false positive and false negative counts:
  ``TP_b = w_b @ tp``;
- AUC exactly, from a per-probe *pair matrix* ``W[c', c]`` = the number of (positive of chain
  c, negative of chain c') pairs the probe orders right (ties count 1/2). A resample that takes
  chain c m_c times counts each pair m_c * m_c' times, so
  ``AUC_b = (m_b^T W m_b) / (P_b N_b)`` with P_b, N_b the resampled positive and negative
  counts. With all weights 1 this is the ordinary (Mann-Whitney) AUC, scikit-learn's
  ``roc_auc_score``.

**Chance F1.** A predictor that ignores the input and flags a random share q of tokens, at a
positive rate p, expects TP = pqN, FP = (1-p)qN, FN = p(1-q)N, so
``F1 = 2TP / (2TP + FP + FN) = 2pq / (p + q)``. It rises with q; its maximum, at q = 1 (flag
every token), is ``2p / (1 + p)``: the F1 any label-blind predictor can reach. That is the
``chance_f1`` reported (per resample, from that resample's p). Flagging at the positive rate
(q = p) gives F1 = p, reported as ``chance_f1_at_rate``; the seed's "chance F1 about 0.02" at
2.2% positives is this one. AUC's chance level is 0.5.

Conventions where a ratio is 0/0: precision is 0 when nothing is predicted positive (as
scikit-learn's ``zero_division=0``), recall and F1 are NaN when a resample has no positive.
"""

from __future__ import annotations

import torch

__all__ = [
    "auc_samples",
    "best_f1_threshold",
    "chain_counts",
    "pair_matrix",
    "rates",
]


def chain_counts(
    pred: torch.Tensor, target: torch.Tensor, chain: torch.Tensor, n_chains: int
) -> dict[str, torch.Tensor]:
    """Per-chain ``tp``, ``fp``, ``fn``, ``pos``, ``neg`` counts ``[C, P]`` of boolean
    predictions ``[P, N]`` against targets ``[P, N]`` (-1 = none)."""
    valid = target >= 0
    pos = target == 1
    neg = valid & ~pos
    out = {}
    for name, mask in (
        ("tp", pred & pos),
        ("fp", pred & neg),
        ("fn", ~pred & pos),
        ("pos", pos),
        ("neg", neg),
    ):
        counts = torch.zeros(n_chains, mask.shape[0], dtype=torch.float64, device=mask.device)
        counts.index_add_(0, chain, mask.T.double())
        out[name] = counts
    return out


def rates(tp, fp, fn, pos, neg) -> dict[str, torch.Tensor]:
    """Precision, recall, F1, positive rate and both chance F1s from (resampled) counts."""
    predicted = tp + fp
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1e-12), 0.0)
    has_pos = pos > 0
    recall = torch.where(has_pos, tp / pos.clamp(min=1e-12), torch.nan)
    f1 = torch.where(has_pos, 2 * tp / (2 * tp + fp + fn).clamp(min=1e-12), torch.nan)
    total = pos + neg
    p = torch.where(total > 0, pos / total.clamp(min=1e-12), torch.nan)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positive_rate": p,
        "chance_f1": 2 * p / (1 + p),
        "chance_f1_at_rate": p,
    }


def pair_matrix(
    scores: torch.Tensor, target: torch.Tensor, chain: torch.Tensor, n_chains: int
) -> torch.Tensor:
    """``[C, C]`` float64: entry ``[c', c]`` counts the (positive in chain c, negative in chain
    c') pairs of one probe's scores ``[N]`` ordered right, ties 1/2 (see the module doc)."""
    neg, pos = target == 0, target == 1
    device = scores.device
    s_neg, c_neg = scores[neg], chain[neg]
    order = torch.argsort(s_neg)
    order = order[torch.argsort(c_neg[order], stable=True)]  # by chain, scores ascending
    s_sorted, c_sorted = s_neg[order], c_neg[order]
    counts = torch.bincount(c_sorted, minlength=n_chains)
    out = torch.zeros(n_chains, n_chains, dtype=torch.float64, device=device)
    if not bool(pos.any()) or s_sorted.numel() == 0:
        return out
    first = torch.cumsum(counts, 0) - counts
    col = torch.arange(len(c_sorted), device=device) - first[c_sorted]
    padded = torch.full((n_chains, int(counts.max())), torch.inf, device=device)
    padded[c_sorted, col] = s_sorted.float()
    s_pos = scores[pos].float()[None].expand(n_chains, -1).contiguous()
    below = torch.searchsorted(padded, s_pos, right=False)
    upto = torch.searchsorted(padded, s_pos, right=True)
    wins = below.double() + 0.5 * (upto - below).double()  # [C', N_pos]
    out.index_add_(1, chain[pos], wins)
    return out


def auc_samples(
    pairs: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """AUC ``[B, P]`` under chain weights ``[B, C]``, from pair matrices ``[P, C, C]`` and
    per-chain positive / negative counts ``[C, P]``."""
    w = weight.double()
    num = ((w[None] @ pairs) * w[None]).sum(-1).T  # [B, P]
    den = (w @ pos) * (w @ neg)
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.nan)


def best_f1_threshold(
    scores: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per probe, the threshold on ``scores [P, N]`` that maximises F1 against ``target``
    (-1 = none; a row is predicted positive when its score >= the threshold), and that F1.
    Only thresholds between distinct scores are tried (tied rows go together). A probe with no
    positive gets threshold +inf and F1 NaN."""
    valid = target >= 0
    s = torch.where(valid, scores.float(), -torch.inf)
    order = torch.argsort(s, dim=1, descending=True)
    s_sorted = s.gather(1, order)
    t_sorted = (target == 1).gather(1, order).double()
    v_sorted = valid.gather(1, order).double()
    tp = torch.cumsum(t_sorted, 1)
    flagged = torch.cumsum(v_sorted, 1)
    n_pos = tp[:, -1:]
    f1 = 2 * tp / (flagged + n_pos).clamp(min=1e-12)
    cut_ok = torch.ones_like(s_sorted, dtype=torch.bool)
    cut_ok[:, :-1] = s_sorted[:, :-1] > s_sorted[:, 1:]  # the next row scores strictly lower
    cut_ok &= v_sorted > 0
    f1 = torch.where(cut_ok, f1, -1.0)
    best = f1.argmax(1)
    best_f1 = f1.gather(1, best[:, None]).squeeze(1)
    threshold = s_sorted.gather(1, best[:, None]).squeeze(1)
    none = n_pos.squeeze(1) == 0
    return (
        torch.where(none, torch.inf, threshold),
        torch.where(none, torch.nan, best_f1).float(),
    )
