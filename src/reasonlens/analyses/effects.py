"""What the causal analyses share: checked inputs, per-row interventions, read-outs and intervals.

Directions, steering, ablation and patching all measure an effect the same way: run many
conditions (a direction per row, an alpha per row, a patch per row) in *one* batched forward
pass or generation, read the logits at one position, and put a bootstrap interval over the
prompts on the mean. The pieces:

* :func:`check_direction`, :func:`vector_site`, :func:`encode`: inputs refused as a
  UserError (one line) before anything runs;
* :func:`add_rows`, :func:`project_rows`: site functions for `site_hooks` that add a vector,
  or project one out, with a different vector for every row of the batch (a zero row leaves
  that row exactly as it was), at every position of every call, cached decoding steps included;
* :func:`last_logits`: the logits at the last token of left-padded prompts, many rows at once;
* :func:`kl`, :func:`mean_interval`, :func:`paired_interval`: KL between next-token
  distributions, and intervals from the one bootstrap module (`analyses.stats`).

A *metric* is a callable ``metric(logits, example) -> values``: ``logits`` [rows, vocab] at
the read position, ``example`` [rows] the index of the prompt (or clean/corrupt pair) each row
belongs to, ``values`` [rows]. :func:`logit_difference`, :func:`answer_logprob` and
:func:`token_logodds` build the usual ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from reasonlens.analyses import stats
from reasonlens.errors import UserError
from reasonlens.models.loading import LoadedModel
from reasonlens.models.prompts import format_prompt, pad_batch, tokenize
from reasonlens.trace.hooks import ForwardContext, SiteFn, site_hooks
from reasonlens.trace.sites import SiteRef, resolve_sites

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Prompts = Sequence[str] | Sequence[Sequence[int]]
#: Sites whose tensor is a residual-stream vector (the width of a direction).
VECTOR_SITES = ("resid_pre", "attn_out", "mlp_out", "resid_post")


def check_direction(model: LoadedModel, direction, what: str = "direction") -> torch.Tensor:
    """`direction` as a float64 [d_model] tensor on the CPU; UserError if its width is not the
    model's, or it is not finite, or it is zero."""
    vector = torch.as_tensor(direction).detach().to("cpu", torch.float64)
    if vector.dim() != 1:
        raise UserError(f"{what} must be one vector [d], got shape {tuple(vector.shape)}")
    if vector.shape[0] != model.d_model:
        raise UserError(
            f"{what} has width {vector.shape[0]} but {model.name} has width {model.d_model}"
        )
    if not torch.isfinite(vector).all():
        raise UserError(f"{what} has non-finite values")
    if float(vector.norm()) == 0.0:
        raise UserError(f"{what} is the zero vector")
    return vector


def vector_site(model: LoadedModel, site: str) -> SiteRef:
    """The one residual-width site an address names (e.g. ``layers.10.resid_post``)."""
    refs = resolve_sites(model, [site] if isinstance(site, str) else site)
    if len(refs) != 1:
        raise UserError(
            f"{site!r} names {len(refs)} sites; give exactly one, e.g. layers.3.resid_pre"
        )
    if refs[0].site not in VECTOR_SITES:
        raise UserError(
            f"{refs[0].name}: a direction is added at a residual-width site "
            f"({', '.join(VECTOR_SITES)}), not {refs[0].site!r}"
        )
    return refs[0]


def encode(
    model: LoadedModel, prompts: Prompts, chat: bool, what: str = "prompts"
) -> list[list[int]]:
    """Token ids of each prompt: text goes through the chat template (if `chat` and the
    tokenizer has one) and the tokenizer; a list of ints is taken as token ids."""
    if prompts is None or len(prompts) == 0:
        raise UserError(f"no {what} given")
    vocab = model.vocab_size
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            ids = tokenize(model.tokenizer, format_prompt(model.tokenizer, prompt, chat))
        else:
            ids = [int(t) for t in prompt]
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise UserError(
                    f"{what} {i}: token id {bad[0]} is outside the vocabulary ({vocab})"
                )
        if not ids:
            raise UserError(f"{what} {i} is empty (no tokens)")
        out.append(ids)
    return out


def _rows_like(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if values.shape[0] != x.shape[0]:
        raise RuntimeError(f"per-row values for {values.shape[0]} rows, batch has {x.shape[0]}")
    return values.to(x.device, x.dtype).view(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])


def add_rows(vectors: torch.Tensor) -> SiteFn:
    """A site function adding ``vectors[b]`` to every position of batch row b."""

    def fn(x: torch.Tensor, _ctx: ForwardContext) -> torch.Tensor:
        return x + _rows_like(vectors, x)

    return fn


def project_rows(units: torch.Tensor) -> SiteFn:
    """A site function removing the component along ``units[b]`` (a unit vector, or zero to
    leave the row unchanged) at every position of batch row b: ``x - (x·u) u``."""

    def fn(x: torch.Tensor, _ctx: ForwardContext) -> torch.Tensor:
        u = _rows_like(units, x)
        return x - (x * u).sum(-1, keepdim=True) * u

    return fn


Hooks = list[tuple[SiteRef, SiteFn]]


@torch.inference_mode()
def last_logits(
    model: LoadedModel,
    ids: Sequence[Sequence[int]],
    hooks: Callable[[int, int], Hooks] | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """Float32 logits [rows, vocab] at the last token of each row, left-padded batches of
    `batch_size` rows; ``hooks(lo, hi)`` gives the site hooks for rows lo..hi-1."""
    if batch_size < 1:
        raise UserError("batch size must be at least 1")
    out = []
    for lo in range(0, len(ids), batch_size):
        hi = min(lo + batch_size, len(ids))
        batch = pad_batch(ids[lo:hi], model.tokenizer.pad_token_id or 0, "left")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        with site_hooks(model, hooks(lo, hi) if hooks is not None else []):
            logits = model.hf(**batch, use_cache=False, logits_to_keep=1).logits[:, -1]
        out.append(logits.float().cpu())
    return torch.cat(out)


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(P ‖ Q) in nats per row, from logits [rows, vocab], computed in float64."""
    logp = torch.log_softmax(p_logits.double(), -1)
    logq = torch.log_softmax(q_logits.double(), -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def random_directions(d: int, n: int, norm: float | torch.Tensor, seed: int = 0) -> torch.Tensor:
    """[n, d] float64 Gaussian directions, each scaled to `norm` (the control for a direction:
    random directions of equal norm), from a private seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return vectors / vectors.norm(dim=-1, keepdim=True) * float(norm)


def mean_interval(
    values, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means over the last axis (the prompts) and their percentile bootstrap interval.

    Returns ``(mean, low, high, samples)``; ``samples`` [..., resamples] are the resampled
    means, drawn with the same resamples for every leading index (so two of them can be
    compared pairwise)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    idx = stats.resample_indices(n, resamples, seed)
    samples = np.nanmean(values[..., idx], axis=-1) if resamples else values[..., :0]
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(values, axis=-1)
    low, high = stats.percentile_interval(samples, level, axis=-1)
    return mean, low, high, samples


def estimate(mean, low, high) -> dict:
    """A figure and its interval as a result stores it (NaN becomes None)."""

    def num(x):
        x = float(x)
        return None if math.isnan(x) else x

    return {"value": num(mean), "low": num(low), "high": num(high)}


def paired_interval(a_samples: np.ndarray, b_samples: np.ndarray, value: float) -> dict:
    """A minus B (`value`, from the data) on the same bootstrap resamples: the interval of the
    difference and the share of resamples in which A is higher."""
    result = stats.paired(np.asarray(a_samples), np.asarray(b_samples))
    return {
        "value": float(value),
        "low": result.low,
        "high": result.high,
        "share_higher": result.share_a_higher,
    }


def versus_control(paired: dict, expect: str, control: str = "its random-direction controls"):
    """The verdict (report.verdicts vocabulary) on "the effect beats `control` in the expected
    direction with 95% confidence", from a :func:`paired_interval` (effect minus control)."""
    from reasonlens.report.verdicts import Estimate, by_interval

    if expect not in ("increase", "decrease"):
        raise UserError(f"expect must be 'increase' or 'decrease', not {expect!r}")
    sign = 1.0 if expect == "increase" else -1.0
    low, high = sign * paired["low"], sign * paired["high"]
    estimate = Estimate(sign * paired["value"], min(low, high), max(low, high))
    verdict = by_interval(estimate, threshold=0.0)
    what = "above" if expect == "increase" else "below"
    return verdict.labelled(f"{what} {control}")


def logit_difference(correct: Sequence[int], wrong: Sequence[int]) -> Metric:
    """logit(correct[e]) - logit(wrong[e]) for each row of example e."""
    good, bad = torch.as_tensor(correct), torch.as_tensor(wrong)

    def metric(logits: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(example))
        return logits[rows, good[example]] - logits[rows, bad[example]]

    return metric


def answer_logprob(answers: Sequence[int]) -> Metric:
    """log p(answers[e]) for each row of example e."""
    target = torch.as_tensor(answers)

    def metric(logits: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.double(), -1)
        return logp[torch.arange(len(example)), target[example]].float()

    return metric


def token_logodds(tokens: Sequence[int]) -> Metric:
    """log P - log(1 - P), P the probability of any of `tokens` (the refusal score of Arditi et
    al. 2024, in float64 with their 1e-8 guard)."""
    ids = torch.as_tensor(list(tokens))

    def metric(logits: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits.double(), -1)[:, ids].sum(-1)
        return (torch.log(p + 1e-8) - torch.log(1 - p + 1e-8)).float()

    return metric


def apply_metric(metric: Metric, logits: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
    """The metric's values [rows] as float64, checked for shape."""
    values = torch.as_tensor(metric(logits, example)).detach().to("cpu", torch.float64)
    if values.shape != (logits.shape[0],):
        raise UserError(
            f"the metric returned shape {tuple(values.shape)}; it must return one value per row "
            f"({logits.shape[0]})"
        )
    return values
