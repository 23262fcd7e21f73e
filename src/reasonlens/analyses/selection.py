"""Choosing a direction among candidates by its measured effect on a validation split.

The rule of Arditi et al. 2024 (refusal_direction ``select_direction.py``), generalised to any
behaviour a caller can score. For every candidate (site, position) of a :class:`Directions`:

* **ablation score**: the mean metric on `ablate_prompts` (where the behaviour is present) with
  the unit direction projected out at every layer's residual input, attention output and MLP
  output, at every position;
* **addition score**: the mean metric on `add_prompts` (where it is absent) with the *raw*
  direction added (coefficient 1) at the candidate's own site, at every position;
* **KL**: the mean KL(P_base ‖ P_ablated) of the next-token distribution at the last token of
  `control_prompts` (default: `add_prompts`).

A candidate is discarded when any score is NaN, when its layer is in the last
`exclude_last` share of layers (``layer >= int(n_layers * (1 - exclude_last))``), when its KL
exceeds `kl_max`, or when its addition score is below `add_min`; among the rest the lowest
ablation score wins. Every candidate's scores are kept, with the reasons it was discarded,
the chosen one and why. Score the validation split, never the one the directions came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reasonlens.analyses.directions import Candidate, Directions
from reasonlens.analyses.effects import (
    Metric,
    Prompts,
    add_rows,
    apply_metric,
    encode,
    kl,
    last_logits,
    project_rows,
)
from reasonlens.errors import UserError
from reasonlens.models.loading import LoadedModel
from reasonlens.progress import Progress
from reasonlens.trace.sites import site_ref

ABLATED_SITES = ("resid_pre", "attn_out", "mlp_out")


@dataclass
class Selection:
    """Every candidate's scores, the filters it failed, and the chosen candidate."""

    candidates: list[Candidate]
    ablation: torch.Tensor  # [candidates, ablate prompts] metric with the direction ablated
    addition: torch.Tensor  # [candidates, add prompts] metric with the raw direction added
    kl: torch.Tensor  # [candidates, control prompts] KL(base ‖ ablated) at the last token
    base_ablate: torch.Tensor  # [ablate prompts] metric with no intervention
    base_add: torch.Tensor  # [add prompts]
    rejected: list[list[str]]  # per candidate: why it was discarded (empty: kept)
    chosen: int | None
    why: str
    rule: dict = field(default_factory=dict)
    direction: torch.Tensor | None = None  # the chosen raw direction, float64 [d]
    model: str = ""

    @property
    def scores(self) -> dict[str, torch.Tensor]:
        """Mean scores per candidate."""
        return {
            "ablation": self.ablation.mean(1),
            "addition": self.addition.mean(1),
            "kl": self.kl.mean(1),
        }

    @property
    def chosen_candidate(self) -> Candidate | None:
        return None if self.chosen is None else self.candidates[self.chosen]

    def to_dict(self) -> dict:
        scores = self.scores
        rows = []
        for i, c in enumerate(self.candidates):
            rows.append(
                {
                    "site": c.site,
                    "layer": c.layer,
                    "position": c.position,
                    "ablation_score": _num(scores["ablation"][i]),
                    "addition_score": _num(scores["addition"][i]),
                    "kl": _num(scores["kl"][i]),
                    "kept": not self.rejected[i],
                    "rejected_because": self.rejected[i],
                }
            )
        chosen = None
        if self.chosen is not None:
            chosen = dict(rows[self.chosen])
            chosen["norm"] = float(self.direction.norm()) if self.direction is not None else None
        return {
            "analysis": "direction_selection",
            "model": self.model,
            "rule": self.rule,
            "baseline": {
                "ablate_prompts": _num(self.base_ablate.mean()),
                "add_prompts": _num(self.base_add.mean()),
            },
            "n_candidates": len(self.candidates),
            "n_kept": sum(1 for r in self.rejected if not r),
            "chosen": chosen,
            "why": self.why,
            "candidates": rows,
        }

    def per_example(self) -> dict[str, torch.Tensor]:
        return {
            "ablation": self.ablation.float(),
            "addition": self.addition.float(),
            "kl": self.kl.float(),
            "base_ablate": self.base_ablate.float(),
            "base_add": self.base_add.float(),
        }

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Ablation and addition scores against layer, per position; the chosen one circled."""
        from reasonlens.plots import new_figure, save_figure

        fig = new_figure(figsize=(9, 4))
        axes = fig.subplots(1, 2)
        scores = self.scores
        positions = sorted({c.position for c in self.candidates}, key=lambda p: (p is None, p))
        for key, ax, base in (
            ("ablation", axes[0], self.base_ablate.mean()),
            ("addition", axes[1], self.base_add.mean()),
        ):
            for pos in positions:
                idx = [i for i, c in enumerate(self.candidates) if c.position == pos]
                layers = [self.candidates[i].layer for i in idx]
                ax.plot(layers, scores[key][idx].numpy(), marker=".", label=f"position {pos}")
            ax.axhline(float(base), color="grey", linestyle=":", label="no intervention")
            if self.chosen is not None:
                c = self.candidates[self.chosen]
                ax.plot([c.layer], [float(scores[key][self.chosen])], "o", mfc="none", ms=12)
            ax.set_xlabel("layer")
            ax.set_title(f"{key} score", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(title or f"Direction selection: {self.model}", fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path, dpi=150)


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _ablation_hooks(model: LoadedModel, units: torch.Tensor):
    fn = project_rows(units)
    return [(site_ref(layer, s), fn) for layer in range(model.n_layers) for s in ABLATED_SITES]


def _scores(
    model: LoadedModel,
    ids: list[list[int]],
    metric: Metric,
    per_candidate: torch.Tensor,  # [C, d]: the vector of each candidate
    hooks_for,  # (rows' vectors [rows, d], rows' candidates [rows]) -> hooks
    batch_size: int,
    bar: Progress,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Metric values [C, prompts] and the logits [C * prompts, vocab] with each candidate's
    intervention, candidates x prompts as the rows of one batched pass."""
    n, c = len(ids), per_candidate.shape[0]
    rows_ids = [x for _ in range(c) for x in ids]
    cand = torch.arange(c).repeat_interleave(n)
    example = torch.arange(n).repeat(c)

    def hooks(lo: int, hi: int):
        bar.advance(hi - lo)
        return hooks_for(per_candidate[cand[lo:hi]], cand[lo:hi])

    logits = last_logits(model, rows_ids, hooks, batch_size)
    return apply_metric(metric, logits, example).view(c, n), logits


def select_direction(
    model: LoadedModel,
    directions: Directions,
    metric: Metric,
    ablate_prompts: Prompts,
    add_prompts: Prompts,
    control_prompts: Prompts | None = None,
    kl_max: float = 0.1,
    add_min: float | None = 0.0,
    exclude_last: float = 0.2,
    chat: bool = True,
    batch_size: int = 32,
    progress: bool = False,
) -> Selection:
    """Score every candidate of `directions` and choose one (see the module doc).

    `metric(logits, example)` scores the behaviour from the last token's logits (higher = more
    of it, e.g. :func:`~reasonlens.analyses.effects.token_logodds` of refusal tokens)."""
    if directions.d != model.d_model:
        raise UserError(
            f"the directions have width {directions.d} but {model.name} has width {model.d_model}"
        )
    if not 0 <= exclude_last < 1:
        raise UserError(f"exclude_last must be in [0, 1), got {exclude_last}")
    candidates = directions.candidates()
    for c in candidates:
        if not 0 <= c.layer < model.n_layers:
            raise UserError(f"{c.site}: the model has {model.n_layers} layers")
    ablate = encode(model, ablate_prompts, chat, "ablation prompts")
    add = encode(model, add_prompts, chat, "addition prompts")
    control = add if control_prompts is None else encode(model, control_prompts, chat, "control")
    raw = torch.stack([directions.raw[c.index] for c in candidates])
    unit = torch.stack([directions.unit[c.index] for c in candidates])
    sites = sorted({c.site for c in candidates})
    site_of = torch.tensor([sites.index(c.site) for c in candidates])

    def ablation_hooks(vectors: torch.Tensor, _cand: torch.Tensor):
        return _ablation_hooks(model, vectors)

    def addition_hooks(vectors: torch.Tensor, cand: torch.Tensor):
        hooks = []
        for s, site in enumerate(sites):
            mask = (site_of[cand] == s).to(vectors.dtype)[:, None]
            if mask.any():
                layer, kind = int(site.split(".")[1]), site.split(".")[2]
                hooks.append((site_ref(layer, kind), add_rows(vectors * mask)))
        return hooks

    total = len(candidates) * (len(ablate) + len(add) + len(control)) + 2 * len(control)
    with Progress(progress, total, "selecting a direction") as bar:
        base_ablate, _ = _scores(
            model, ablate, metric, torch.zeros(1, model.d_model), lambda v, c: [], batch_size, bar
        )
        base_add, _ = _scores(
            model, add, metric, torch.zeros(1, model.d_model), lambda v, c: [], batch_size, bar
        )
        ablation, _ = _scores(model, ablate, metric, unit, ablation_hooks, batch_size, bar)
        addition, _ = _scores(model, add, metric, raw, addition_hooks, batch_size, bar)
        base_logits = last_logits(model, control, None, batch_size)
        _, ablated_logits = _scores(model, control, metric, unit, ablation_hooks, batch_size, bar)
    n_ctrl = len(control)
    kls = kl(base_logits.repeat(len(candidates), 1), ablated_logits).view(-1, n_ctrl)

    max_layer = int(model.n_layers * (1 - exclude_last))
    rejected: list[list[str]] = []
    means = {"ablation": ablation.mean(1), "addition": addition.mean(1), "kl": kls.mean(1)}
    for i, c in enumerate(candidates):
        why = []
        nan = [k for k, v in means.items() if math.isnan(float(v[i]))]
        if nan:
            why.append(f"{', '.join(nan)} score is NaN")
        if float(directions.norms[c.index]) == 0.0:
            why.append("the direction is zero")
        if c.layer >= max_layer:
            why.append(
                f"layer {c.layer} is in the last {exclude_last:.0%} of layers (>= {max_layer})"
            )
        if float(means["kl"][i]) > kl_max:
            why.append(f"KL {float(means['kl'][i]):.4g} > {kl_max:g}")
        if add_min is not None and float(means["addition"][i]) < add_min:
            why.append(f"addition score {float(means['addition'][i]):.4g} < {add_min:g}")
        rejected.append(why)
    kept = [i for i, why in enumerate(rejected) if not why]
    if kept:
        chosen = min(kept, key=lambda i: float(means["ablation"][i]))
        c = candidates[chosen]
        why = (
            f"lowest ablation score ({float(means['ablation'][chosen]):.4g}; no intervention: "
            f"{float(base_ablate.mean()):.4g}) among {len(kept)} of {len(candidates)} candidates "
            f"that pass the filters: {c.site} at position {c.position}"
        )
        direction = raw[chosen].clone()
    else:
        chosen, direction = None, None
        why = f"no candidate passes the filters ({len(candidates)} scored)"
    rule = {
        "kl_max": kl_max,
        "add_min": add_min,
        "exclude_last": exclude_last,
        "max_layer": max_layer - 1,
        "ablation": "unit direction projected out at every layer's "
        + ", ".join(ABLATED_SITES)
        + ", every position",
        "addition": "raw direction added (coefficient 1) at the candidate's site, every position",
        "kl": "mean KL(base ‖ ablated) at the last token of the control prompts",
        "choose": "lowest ablation score",
        "prompts": {"ablate": len(ablate), "add": len(add), "control": n_ctrl},
    }
    return Selection(
        candidates=candidates,
        ablation=ablation,
        addition=addition,
        kl=kls,
        base_ablate=base_ablate[0],
        base_add=base_add[0],
        rejected=rejected,
        chosen=chosen,
        why=why,
        rule=rule,
        direction=direction,
        model=model.name,
    )
