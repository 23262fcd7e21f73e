"""Ablation: of a direction (by hooks, or by editing weights), and of whole layers.

* :func:`directional_ablation`: ``x - r̂ r̂ᵀ x`` at every layer's residual input, attention
  output and MLP output, at every position of every call (generated tokens included), so the
  direction never enters the residual stream (Arditi et al. 2024).
* :func:`orthogonalized`: the same by weights: ``W - r̂ r̂ᵀ W`` for every matrix that writes
  into the residual stream (the token embedding, learned position embeddings, each attention
  output projection and MLP down projection, their biases too), on fresh parameters that are
  put back on exit (a tied unembedding keeps its weights). Refused where a norm sits between
  those projections and the stream (Gemma's sandwich norms): no weight edit is equivalent there.
* :func:`layer_ablation`: layers over a range made to contribute nothing (``zero``), their
  mean over a reference set (``mean``), or bypassed, output = input (``skip``). For the
  pre-norm residual blocks of every supported architecture, zeroing both sublayers *is*
  skipping the block; ``component`` ablates the attention or the MLP alone.

:func:`ablation_effect` and :func:`layer_ablation_effect` measure them: a metric at the last
token of each prompt, every condition a set of rows of one batched pass, with bootstrap
intervals over prompts; a direction is compared with random directions (seeded), and any other
controls given, ablated the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reasonlens.analyses.effects import (
    Metric,
    Prompts,
    apply_metric,
    check_direction,
    encode,
    estimate,
    kl,
    last_logits,
    mean_interval,
    paired_interval,
    project_rows,
    random_directions,
)
from reasonlens.errors import UserError, one_of
from reasonlens.models.loading import LoadedModel
from reasonlens.models.prompts import pad_batch
from reasonlens.trace.hooks import ForwardContext, site_hooks
from reasonlens.trace.interventions import ProjectOut, intervene
from reasonlens.trace.sites import site_ref

ABLATED_SITES = ("resid_pre", "attn_out", "mlp_out")
MODES = ("zero", "mean", "skip")
COMPONENTS = {"layer": ("attn_out", "mlp_out"), "attn": ("attn_out",), "mlp": ("mlp_out",)}


def _unit(model: LoadedModel, direction) -> torch.Tensor:
    vector = check_direction(model, direction)
    return vector / vector.norm()


def _layers(model: LoadedModel, layers: Sequence[int] | None) -> list[int]:
    if layers is None:
        return list(range(model.n_layers))
    chosen = [int(x) for x in layers]
    if not chosen:
        raise UserError("no layers given")
    bad = [x for x in chosen if not 0 <= x < model.n_layers]
    if bad:
        raise UserError(
            f"layer {bad[0]} does not exist: {model.name} has {model.n_layers} layers "
            f"(0-{model.n_layers - 1})"
        )
    return chosen


@contextmanager
def directional_ablation(
    model: LoadedModel, direction, layers: Sequence[int] | None = None
) -> Iterator[None]:
    """Project `direction` out of every layer's resid_pre, attn_out and mlp_out (of `layers`,
    all by default), every position, inside the block."""
    unit = _unit(model, direction).to(model.dtype)
    chosen = _layers(model, layers)
    with intervene(
        model,
        *[ProjectOut(site_ref(x, s), direction=unit) for x in chosen for s in ABLATED_SITES],
    ):
        yield


def _orthogonal(weight: torch.Tensor, unit: torch.Tensor, out_dim: int) -> torch.Tensor:
    """``weight`` with the component along `unit` removed from its output axis `out_dim`."""
    w = weight.detach().to(torch.float64)
    u = unit.to(w.device)
    if w.dim() == 1:
        return (w - (w @ u) * u).to(weight.dtype)
    if out_dim == 0:  # nn.Linear [out, in]
        return (w - u[:, None] * (u @ w)[None, :]).to(weight.dtype)
    return (w - (w @ u)[:, None] * u[None, :]).to(weight.dtype)  # [in, out]


@contextmanager
def orthogonalized(model: LoadedModel, direction) -> Iterator[None]:
    """Remove `direction` from every weight that writes into the residual stream, inside the
    block; the original parameters are put back on exit."""
    arch = model.arch
    if not arch.direct_writes:
        raise UserError(
            f"{arch.name}: a norm sits between the attention/MLP output projections and the "
            "residual stream, so no weight edit removes a direction from it; use "
            "directional_ablation (hooks) instead"
        )
    unit = _unit(model, direction)
    edits: list[tuple[torch.nn.Module, str, torch.Tensor]] = []
    embeddings = [arch.embed] + ([arch.pos_embed] if arch.pos_embed else [])
    for path in embeddings:
        module = model.hf.get_submodule(path)
        edits.append((module, "weight", _orthogonal(module.weight, unit, 1)))
    for layer in model.layers:
        for path in (arch.attn_proj, arch.mlp_proj):
            module = layer.get_submodule(path)
            out_dim = 0 if isinstance(module, torch.nn.Linear) else 1  # GPT-2's Conv1D: [in, out]
            edits.append((module, "weight", _orthogonal(module.weight, unit, out_dim)))
            if getattr(module, "bias", None) is not None:
                edits.append((module, "bias", _orthogonal(module.bias, unit, 0)))
    originals = [(module, name, getattr(module, name)) for module, name, _ in edits]
    try:
        for module, name, value in edits:
            setattr(module, name, torch.nn.Parameter(value, requires_grad=False))
        yield
    finally:
        for module, name, value in originals:
            setattr(module, name, value)


@torch.inference_mode()
def mean_activations(
    model: LoadedModel,
    prompts: Prompts,
    sites: Sequence[str],
    chat: bool = True,
    batch_size: int = 16,
) -> dict[str, torch.Tensor]:
    """The float64 mean [d] of each site over every token of `prompts` (padding excluded)."""
    ids = encode(model, prompts, chat, "reference prompts")
    refs = [site_ref(int(s.split(".")[1]), s.split(".")[2]) for s in sites]
    sums = {r.name: torch.zeros(model.d_model, dtype=torch.float64) for r in refs}
    count = 0
    for lo in range(0, len(ids), batch_size):
        batch = pad_batch(ids[lo : lo + batch_size], model.tokenizer.pad_token_id or 0, "right")
        batch = {k: v.to(model.device) for k, v in batch.items()}
        mask = batch["attention_mask"].bool()

        def keep(name: str, mask: torch.Tensor):
            def fn(x: torch.Tensor, _ctx: ForwardContext) -> None:
                sums[name] += x[mask].to(torch.float64).sum(0).cpu()

            return fn

        with site_hooks(model, [(r, keep(r.name, mask)) for r in refs]):
            model.hf(**batch, use_cache=False)
        count += int(mask.sum())
    return {name: total / count for name, total in sums.items()}


def _layer_hooks(
    model: LoadedModel,
    masks: dict[int, torch.Tensor | None],
    mode: str,
    component: str,
    means: dict[str, torch.Tensor] | None,
):
    """Site hooks ablating each layer of `masks` in the rows its mask marks (None: all)."""
    hooks = []

    def where(mask: torch.Tensor | None, new: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if mask is None:
            return new
        return torch.where(mask.to(x.device).view(-1, *([1] * (x.dim() - 1))), new, x)

    for layer, mask in masks.items():
        if mode == "skip":
            stored: dict[str, torch.Tensor] = {}

            def remember(x, _ctx, stored=stored):
                stored["x"] = x

            def restore(x, _ctx, stored=stored, mask=mask):
                return where(mask, stored.pop("x"), x)

            hooks.append((site_ref(layer, "resid_pre"), remember))
            hooks.append((site_ref(layer, "resid_post"), restore))
            continue
        for site in COMPONENTS[component]:
            if mode == "zero":

                def fn(x, _ctx, mask=mask):
                    return where(mask, torch.zeros_like(x), x)

            else:
                value = means[f"layers.{layer}.{site}"]

                def fn(x, _ctx, mask=mask, value=value):
                    return where(mask, value.to(x.device, x.dtype).expand_as(x), x)

            hooks.append((site_ref(layer, site), fn))
    return hooks


def _check_layer_mode(
    model: LoadedModel,
    mode: str,
    component: str,
    layers: list[int],
    reference: Prompts | None,
    chat: bool,
    batch_size: int,
    means: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor] | None:
    """The means mean ablation of `layers` puts in place (None for another mode): `means` when
    given (taken once for several calls), else over `reference`."""
    if mode not in MODES:
        raise one_of("layer ablation mode", mode, MODES)
    if component not in COMPONENTS:
        raise one_of("component", component, COMPONENTS)
    if mode == "skip" and component != "layer":
        raise UserError("skip bypasses a whole layer: use component='layer' (or mode='zero')")
    if mode != "mean":
        return None
    sites = [f"layers.{x}.{s}" for x in sorted(set(layers)) for s in COMPONENTS[component]]
    if means is not None:
        missing = sorted(set(sites) - set(means))
        if missing:
            raise UserError(f"the reference means lack {missing[0]}: take them for these layers")
        return means
    if reference is None:
        raise UserError("mean ablation needs reference prompts to take the mean over")
    return mean_activations(model, reference, sites, chat, batch_size)


def layer_means(
    model: LoadedModel,
    reference: Prompts,
    layers: Sequence[int] | None = None,
    component: str = "layer",
    chat: bool = True,
    batch_size: int = 32,
) -> dict[str, torch.Tensor]:
    """The mean outputs over every token of `reference` that mean ablation of `layers` puts
    in place, for :func:`layer_ablation_effect`'s `reference_means`."""
    chosen = _layers(model, layers)
    means = _check_layer_mode(model, "mean", component, chosen, reference, chat, batch_size)
    assert means is not None
    return means


@contextmanager
def layer_ablation(
    model: LoadedModel,
    layers: Sequence[int],
    mode: str = "zero",
    reference: Prompts | None = None,
    component: str = "layer",
    chat: bool = True,
    batch_size: int = 16,
) -> Iterator[None]:
    """Ablate `layers` inside the block: ``zero`` (their attention and/or MLP output is 0),
    ``mean`` (it is its mean over every token of `reference`), or ``skip`` (the layer's output
    is its input)."""
    chosen = _layers(model, layers)
    means = _check_layer_mode(model, mode, component, chosen, reference, chat, batch_size)
    with site_hooks(model, _layer_hooks(model, dict.fromkeys(chosen), mode, component, means)):
        yield


# ------------------------------------------------------------------------------ measured effects


@dataclass
class AblationResult:
    """The metric per prompt with nothing ablated and with each vector ablated; the KL of the
    next-token distribution on control prompts."""

    vectors: list[str]  # "direction", then the controls
    base: torch.Tensor  # [prompts] float64
    ablated: torch.Tensor  # [vectors, prompts]
    kl: torch.Tensor | None  # [vectors, control prompts]
    norm: float
    model: str = ""
    settings: dict = field(default_factory=dict)
    resamples: int = 1000
    seed: int = 0

    @property
    def random(self) -> list[int]:
        return [i for i, v in enumerate(self.vectors) if v.startswith("random")]

    @property
    def effect(self) -> torch.Tensor:
        """Ablated minus unablated metric, per vector and prompt."""
        return self.ablated - self.base

    def to_dict(self) -> dict:
        base = mean_interval(self.base.numpy(), self.resamples, self.seed)
        effect = mean_interval(self.effect.numpy(), self.resamples, self.seed)
        ablated = mean_interval(self.ablated.numpy(), self.resamples, self.seed)
        kls = None if self.kl is None else mean_interval(self.kl.numpy(), self.resamples, self.seed)
        per_vector = {}
        for v, name in enumerate(self.vectors):
            entry = {
                "metric": estimate(*(x[v] for x in ablated[:3])),
                "effect": estimate(*(x[v] for x in effect[:3])),
            }
            if kls is not None:
                entry["kl"] = estimate(*(x[v] for x in kls[:3]))
            per_vector[name] = entry
        out = {
            "analysis": "directional_ablation",
            "model": self.model,
            "direction_norm": self.norm,
            "ablated_at": "every layer's " + ", ".join(ABLATED_SITES) + ", every position",
            "n_prompts": int(self.base.shape[0]),
            "settings": self.settings,
            "interval": f"95% percentile bootstrap over prompts ({self.resamples} resamples)",
            "baseline": estimate(*base[:3]),
            "vectors": per_vector,
        }
        rand = self.random
        if rand:
            rand_effect = mean_interval(
                self.effect[rand].mean(0).numpy(), self.resamples, self.seed
            )
            out["random_mean_effect"] = estimate(*rand_effect[:3])
            out["direction_minus_random"] = paired_interval(
                effect[3][0], rand_effect[3], effect[0][0] - rand_effect[0]
            )
        return out

    def versus_random(self, expect: str = "decrease"):
        """Verdict on "ablating the direction moves the metric further (`expect`: decrease or
        increase) than ablating its random controls, with 95% confidence" (report.verdicts)."""
        from reasonlens.analyses.effects import versus_control

        record = self.to_dict()
        if "direction_minus_random" not in record:
            raise UserError("the result has no random controls (n_random=0)")
        return versus_control(record["direction_minus_random"], expect)

    def per_example(self) -> dict[str, torch.Tensor]:
        out = {"base": self.base.float(), "ablated": self.ablated.float()}
        if self.kl is not None:
            out["kl"] = self.kl.float()
        return out

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Effect on the metric of ablating each vector, with its interval."""
        from reasonlens.plots import new_figure, save_figure

        mean, low, high, _ = mean_interval(self.effect.numpy(), self.resamples, self.seed)
        fig = new_figure(figsize=(max(4, 0.8 * len(self.vectors) + 2), 3.6))
        ax = fig.subplots()
        x = range(len(self.vectors))
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="o", capsize=3)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(list(x), self.vectors, rotation=30, fontsize=7)
        ax.set_ylabel("metric change when ablated")
        ax.set_title(title or f"Directional ablation: {self.model}", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, path, dpi=150)


def ablation_effect(
    model: LoadedModel,
    direction,
    prompts: Prompts,
    metric: Metric,
    control_prompts: Prompts | None = None,
    n_random: int = 3,
    controls: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    chat: bool = True,
    batch_size: int = 32,
    resamples: int = 1000,
) -> AblationResult:
    """The metric at the last token of `prompts` with `direction` ablated (every layer, every
    position), beside `n_random` random directions and `controls` ablated the same way, and
    the KL to the unablated next-token distribution on `control_prompts`."""
    vector = check_direction(model, direction)
    if n_random < 0:
        raise UserError("n_random must be >= 0")
    ids = encode(model, prompts, chat)
    control = None if control_prompts is None else encode(model, control_prompts, chat, "control")
    names, vectors = ["direction"], [vector]
    for i, r in enumerate(random_directions(model.d_model, n_random, vector.norm(), seed)):
        names.append(f"random {i}")
        vectors.append(r)
    for name, v in (controls or {}).items():
        names.append(name)
        vectors.append(check_direction(model, v, f"control {name!r}"))
    units = torch.stack([v / v.norm() for v in vectors])
    # Row blocks: no ablation (a zero unit leaves a row exactly as it is), then each vector.
    units = torch.cat([torch.zeros(1, model.d_model, dtype=torch.float64), units])

    def run(rows_ids: list[list[int]], n: int) -> torch.Tensor:
        per_row = units.repeat_interleave(n, dim=0).to(model.dtype)

        def hooks(lo: int, hi: int):
            fn = project_rows(per_row[lo:hi])
            return [(site_ref(x, s), fn) for x in range(model.n_layers) for s in ABLATED_SITES]

        return last_logits(
            model, [x for _ in range(len(units)) for x in rows_ids], hooks, batch_size
        )

    logits = run(ids, len(ids))
    example = torch.arange(len(ids)).repeat(len(units))
    values = apply_metric(metric, logits, example).view(len(units), len(ids))
    kls = None
    if control is not None:
        ctrl = run(control, len(control)).view(len(units), len(control), -1)
        kls = torch.stack([kl(ctrl[0], ctrl[v]) for v in range(1, len(units))]).clamp_min(0)
    return AblationResult(
        vectors=names,
        base=values[0],
        ablated=values[1:],
        kl=kls,
        norm=float(vector.norm()),
        model=model.name,
        settings={"n_random": n_random, "seed": seed, "chat": chat},
        resamples=resamples,
        seed=seed,
    )


@dataclass
class LayerAblationResult:
    """The metric per prompt with nothing ablated and with each window of layers ablated."""

    windows: list[list[int]]  # the layers ablated together, per condition
    mode: str
    component: str
    base: torch.Tensor  # [prompts]
    ablated: torch.Tensor  # [windows, prompts]
    model: str = ""
    resamples: int = 1000
    seed: int = 0

    @property
    def effect(self) -> torch.Tensor:
        return self.ablated - self.base

    def to_dict(self) -> dict:
        effect = mean_interval(self.effect.numpy(), self.resamples, self.seed)
        ablated = mean_interval(self.ablated.numpy(), self.resamples, self.seed)
        base = mean_interval(self.base.numpy(), self.resamples, self.seed)
        return {
            "analysis": "layer_ablation",
            "model": self.model,
            "mode": self.mode,
            "component": self.component,
            "n_prompts": int(self.base.shape[0]),
            "interval": f"95% percentile bootstrap over prompts ({self.resamples} resamples)",
            "baseline": estimate(*base[:3]),
            "windows": [
                {
                    "layers": w,
                    "metric": estimate(*(x[i] for x in ablated[:3])),
                    "effect": estimate(*(x[i] for x in effect[:3])),
                }
                for i, w in enumerate(self.windows)
            ],
        }

    def per_example(self) -> dict[str, torch.Tensor]:
        return {"base": self.base.float(), "ablated": self.ablated.float()}

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        from reasonlens.plots import new_figure, save_figure

        mean, low, high, _ = mean_interval(self.effect.numpy(), self.resamples, self.seed)
        first = [w[0] for w in self.windows]
        fig = new_figure(figsize=(7, 3.6))
        ax = fig.subplots()
        ax.plot(first, mean, marker=".")
        ax.fill_between(first, low, high, alpha=0.2)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("first ablated layer")
        ax.set_ylabel("metric change")
        ax.set_title(title or f"Layer ablation ({self.mode}, {self.component}): {self.model}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return save_figure(fig, path, dpi=150)


def layer_ablation_effect(
    model: LoadedModel,
    prompts: Prompts,
    metric: Metric,
    layers: Sequence[int] | None = None,
    mode: str = "zero",
    window: int = 1,
    reference: Prompts | None = None,
    component: str = "layer",
    chat: bool = True,
    batch_size: int = 32,
    resamples: int = 1000,
    seed: int = 0,
    reference_means: dict[str, torch.Tensor] | None = None,
) -> LayerAblationResult:
    """The metric at the last token with each window of `window` consecutive layers ablated,
    one window starting at each of `layers` (all by default), all windows as rows of one
    batched pass. Mean ablation takes its means over `reference`, or `reference_means` (from
    :func:`layer_means`: one pass over the reference for several calls)."""
    chosen = _layers(model, layers)
    if window < 1:
        raise UserError("window must be at least 1")
    windows = [list(range(x, min(x + window, model.n_layers))) for x in chosen]
    used = sorted({x for w in windows for x in w})
    means = _check_layer_mode(
        model, mode, component, used, reference, chat, batch_size, reference_means
    )
    ids = encode(model, prompts, chat)
    n, n_cond = len(ids), len(windows) + 1
    # condition 0: nothing ablated; condition i: window i - 1
    member = torch.zeros(n_cond, model.n_layers, dtype=torch.bool)
    for i, w in enumerate(windows):
        member[i + 1, w] = True
    row_cond = torch.arange(n_cond).repeat_interleave(n)

    def hooks(lo: int, hi: int):
        rows = member[row_cond[lo:hi]]  # [rows, layers]
        masks = {x: rows[:, x] for x in used if rows[:, x].any()}
        return _layer_hooks(model, masks, mode, component, means)

    logits = last_logits(model, [x for _ in range(n_cond) for x in ids], hooks, batch_size)
    values = apply_metric(metric, logits, torch.arange(n).repeat(n_cond)).view(n_cond, n)
    return LayerAblationResult(
        windows=windows,
        mode=mode,
        component=component,
        base=values[0],
        ablated=values[1:],
        model=model.name,
        resamples=resamples,
        seed=seed,
    )
