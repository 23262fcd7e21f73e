"""Extraction rate (Geva et al. 2023; Men et al. 2024 §5.1): when does a sublayer write the answer?

At each readout position r (the last token before a blank), for every layer and each of the
attention output, the MLP output and the layer output h, an *extraction event* is
argmax(E·h) == e*, where E is the unembedding matrix and e* the model's own top-1 token at r.
The rate is the fraction of examples with an event, per readout step and layer.

The paper projects the raw vector, with no final norm (its layer-output curve ends at 0.92,
not 1.0). Three projections (`projection`), and the result says which one it is:

* ``raw``: E·h, the paper's choice;
* ``gain``: E·(g ⊙ h), the final norm's per-dimension gain g without the normalisation. On a
  model whose residual stream has an outlier dimension that the final norm's gain shrinks or
  flips (SmolLM2: gain -1.26 on one dimension), the raw projection picks the same token at
  every readout for a reason that has nothing to do with the task; the gain alone removes it;
* ``final_norm``: E·final_norm(h), the classic logit lens.

The result also keeps the mean |h| of every dimension of the last layer's output at the
readouts, so a report can name the outlier dimensions (:meth:`ExtractionResult.outliers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reasonlens.analyses.common import (
    check_inputs,
    check_position,
    length_batches,
)
from reasonlens.errors import UserError, one_of
from reasonlens.models.loading import LoadedModel
from reasonlens.progress import Progress
from reasonlens.runs.files import jsonable
from reasonlens.trace import TraceInput, capture
from reasonlens.trace.sites import site_ref

COMPONENTS: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")
PROJECTIONS = {
    "raw": "E·h (raw sublayer output, no final norm; as in the paper)",
    "gain": "E·(g ⊙ h) (the final norm's gain g only, no normalisation)",
    "final_norm": "E·final_norm(h) (logit lens, final norm applied)",
}
COMPONENT_LABELS = {"attn_out": "MHSA", "mlp_out": "MLP", "resid_post": "Layer"}


@dataclass
class ExtractionResult:
    """Extraction events of every example, readout step, layer and component.

    `hits[e, s, l, c]` is meaningful only where `valid[e, s]` (examples may have fewer steps).
    """

    hits: torch.Tensor  # bool [examples, steps, layers, components]
    valid: torch.Tensor  # bool [examples, steps]
    predictions: torch.Tensor  # long [examples, steps]: e*, -1 where not valid
    variant: str  # one of PROJECTIONS
    model: str = ""
    components: tuple[str, ...] = field(default=COMPONENTS)
    scale: torch.Tensor | None = None  # [d]: mean |h| of the last layer's output at readouts
    gain: torch.Tensor | None = None  # [d]: the final norm's gain

    @property
    def final_norm(self) -> bool:
        return self.variant == "final_norm"

    @property
    def projection(self) -> str:
        return PROJECTIONS[self.variant]

    def outliers(self, ratio: float = 20.0) -> list[dict]:
        """Residual dimensions whose mean |h| at the readouts is over `ratio` times the median
        dimension's, largest first, with the final norm's gain there."""
        if self.scale is None:
            return []
        median = float(self.scale.median().clamp_min(torch.finfo(torch.float32).tiny))
        dims = [int(d) for d in torch.argsort(self.scale, descending=True)]
        out = []
        for d in dims:
            r = float(self.scale[d]) / median
            if r < ratio:
                break
            gain = None if self.gain is None else round(float(self.gain[d]), 4)
            out.append({"dim": d, "ratio_to_median": round(r, 1), "gain": gain})
        return out

    @property
    def counts(self) -> torch.Tensor:
        """Examples that have each readout step: [steps]."""
        return self.valid.sum(0)

    @property
    def rates(self) -> torch.Tensor:
        """Fraction of examples with an extraction event: [steps, layers, components]."""
        rates = weighted_rates(self.hits.numpy(), self.valid.numpy())
        return torch.from_numpy(rates).float()

    @property
    def mean(self) -> torch.Tensor:
        """Rate averaged over steps: [layers, components]."""
        return self.rates.mean(0)

    @property
    def std(self) -> torch.Tensor:
        """Spread of the rate over steps (population std): [layers, components]."""
        return self.rates.std(0, correction=0)

    def per_example(self) -> dict[str, torch.Tensor]:
        return {"hits": self.hits.to(torch.uint8), "valid": self.valid.to(torch.uint8)}

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        return plot_extraction(self, path, title)

    def to_dict(self) -> dict:
        return {
            "analysis": "extraction_rate",
            "model": self.model,
            "projection": self.projection,
            "final_norm": self.final_norm,
            "variant": self.variant,
            "outlier_dims": self.outliers(),
            "components": list(self.components),
            "component_labels": [COMPONENT_LABELS[c] for c in self.components],
            "n_examples": int(self.valid.shape[0]),
            "examples_per_step": jsonable(self.counts),
            "rates": jsonable(self.rates),  # [steps][layers][components]
            "mean": jsonable(self.mean),  # [layers][components]
            "std": jsonable(self.std),
        }


def weighted_rates(hits: np.ndarray, valid: np.ndarray, weights: np.ndarray | None = None):
    """Rates [steps, layers, components] with example e counted `weights[e]` times (a
    bootstrap resample; None: once each). hits [e, s, l, c] and valid [e, s] as 0/1 arrays."""
    valid = valid.astype(np.float64)
    if weights is not None:
        valid = valid * weights[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        kept = np.einsum("es,eslc->slc", valid, hits.astype(np.float64))
        return kept / valid.sum(0)[:, None, None]


def extraction_rates(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    readouts: Sequence[Sequence[int]],
    projection: str = "raw",
    batch_size: int = 8,
    progress: bool = False,
) -> ExtractionResult:
    """Extraction events at `readouts[e]` (token positions, one per step) of each example.

    One forward pass per example covers all its readouts; only the readout rows are kept.
    Tokens after an example's last readout cannot change it (causal attention), so they are
    not run.
    """
    return extraction_rates_by_projection(
        model, input_ids, readouts, (projection,), batch_size, progress
    )[projection]


def extraction_rates_by_projection(
    model: LoadedModel,
    input_ids: Sequence[Sequence[int]],
    readouts: Sequence[Sequence[int]],
    projections: Sequence[str] = ("raw", "final_norm"),
    batch_size: int = 8,
    progress: bool = False,
) -> dict[str, ExtractionResult]:
    """:func:`extraction_rates` for several projections from the same forward passes (the
    activations are the same; only the projection of the kept rows differs)."""
    for projection in projections:
        if projection not in PROJECTIONS:
            raise one_of("projection", projection, PROJECTIONS)
    if not projections:
        raise UserError("no projection given")
    check_inputs(model, input_ids, readouts, "readouts")
    n_steps = max((len(r) for r in readouts), default=0)
    if n_steps == 0:
        raise UserError("no readout positions given")
    for e, (ids, rows) in enumerate(zip(input_ids, readouts, strict=True)):
        for pos in rows:
            check_position(e, pos, len(ids), "readout position")

    n, n_layers = len(input_ids), model.n_layers
    hits = {
        p: torch.zeros(n, n_steps, n_layers, len(COMPONENTS), dtype=torch.bool) for p in projections
    }
    valid = torch.zeros(n, n_steps, dtype=torch.bool)
    predictions = torch.full((n, n_steps), -1, dtype=torch.long)
    gain = norm_gain(model)
    scale_sum, rows = torch.zeros(model.d_model), 0
    sites = [site_ref(layer, c) for layer in range(n_layers) for c in COMPONENTS]
    ends = [max(r) + 1 if r else 1 for r in readouts]

    with Progress(progress, n, "extraction rate") as bar:
        for batch in length_batches(ends, batch_size):
            batch = [e for e in batch if readouts[e]]
            if not batch:
                continue
            inputs = [
                TraceInput(input_ids=tuple(input_ids[e][: ends[e]]), positions=tuple(readouts[e]))
                for e in batch
            ]
            acts = capture(
                model, inputs, sites, positions="given", batch_size=len(batch), progress=False
            )
            events = {p: _events(model, acts, p, gain) for p in projections}
            batch_pred = events[projections[0]][1]
            last = acts.get(f"layers.{model.n_layers - 1}.resid_post").float()
            scale_sum += last.abs().sum(0)
            rows += last.shape[0]
            row = 0
            for e in batch:
                k = len(readouts[e])
                for p in projections:
                    hits[p][e, :k] = events[p][0][row : row + k]
                predictions[e, :k] = batch_pred[row : row + k]
                valid[e, :k] = True
                row += k
            bar.advance(len(batch))
    return {
        p: ExtractionResult(
            hits[p],
            valid.clone(),
            predictions.clone(),
            p,
            model=model.name,
            scale=scale_sum / max(rows, 1),
            gain=gain,
        )
        for p in projections
    }


@torch.inference_mode()
def norm_gain(model: LoadedModel) -> torch.Tensor:
    """The final norm's per-dimension gain g: its output for a vector of RMS 1 (an RMSNorm,
    whatever its parametrisation, e.g. Gemma's 1 + w) or its weight (a LayerNorm)."""
    norm = model.final_norm
    if isinstance(norm, torch.nn.LayerNorm):
        return norm.weight.detach().float().cpu()
    ones = torch.ones(1, model.d_model, device=model.device, dtype=model.dtype)
    return norm(ones)[0].float().cpu()


@torch.inference_mode()
def _events(
    model: LoadedModel, acts, projection: str, gain: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hits [rows, layers, components] and e* [rows] for the captured readout rows."""
    device = model.device
    weight = model.unembed.weight  # E: [vocab, d]
    last = acts.get(f"layers.{model.n_layers - 1}.resid_post").to(device)
    # The model's own logits at the readout: final norm then the unembedding module. Any later
    # transform HF applies (Gemma's logit soft-capping) is monotonic, so the argmax is the same.
    target = model.unembed(model.final_norm(last)).argmax(-1)
    per_layer = []
    for layer in range(model.n_layers):
        h = torch.stack([acts.get(f"layers.{layer}.{c}") for c in COMPONENTS]).to(device)
        if projection == "final_norm":
            h = model.final_norm(h)
        elif projection == "gain":
            h = h * gain.to(device=device, dtype=h.dtype)
        guess = (h @ weight.T).argmax(-1)  # [components, rows]
        per_layer.append((guess == target).T)
    return torch.stack(per_layer, dim=1).cpu(), target.cpu()


def plot_extraction(result: ExtractionResult, path: str | Path, title: str | None = None) -> Path:
    """Mean extraction rate per component over layers, with a ±std band over steps (Fig 3/4)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from reasonlens.plots import save_figure

    mean, std = result.mean.numpy(), result.std.numpy()
    layers = range(mean.shape[0])
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for c, name in enumerate(result.components):
        line = ax.plot(layers, mean[:, c], marker=".", label=COMPONENT_LABELS[name])[0]
        low, high = (mean[:, c] - std[:, c]).clip(0, 1), (mean[:, c] + std[:, c]).clip(0, 1)
        ax.fill_between(layers, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel("extraction rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(-0.5, mean.shape[0] - 0.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    heading = title or f"Extraction rate: {result.model}"
    steps = result.rates.shape[0]
    ax.set_title(f"{heading}\n{result.projection}; mean ± std over {steps} step(s)", fontsize=9)
    fig.tight_layout()
    out = save_figure(fig, path, dpi=150)
    return out
