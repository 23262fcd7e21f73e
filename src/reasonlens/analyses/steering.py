"""Steering: add ``alpha * direction`` at one site, at every position, while generating.

:func:`steering` is the intervention: inside the block every forward pass, and every step of
`generate` with the KV cache on, has ``alpha * direction`` added at the site, at every
position of the call: the prompt's tokens in the first pass, then each new token (a cached
step is a call of length 1; nothing is indexed by absolute position, so nothing can fall off
the end of it, and no generated token is skipped).

:func:`alpha_sweep` measures it: one batched generation whose rows are prompts x alphas x
vectors (the direction and its controls: random directions of the same norm, and any others
given, such as the direction from shuffled contrast labels), never one generation per alpha.
Per alpha and vector: the caller's behaviour metric on each completion, the completion's
length in tokens, and KL(P_unsteered ‖ P_steered) of the next-token distribution at the
last token of control prompts, each a mean over prompts with a bootstrap interval; and the
direction against the mean of its random controls, paired on the same resamples.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reasonlens.analyses.effects import (
    Prompts,
    add_rows,
    check_direction,
    encode,
    estimate,
    kl,
    last_logits,
    mean_interval,
    paired_interval,
    random_directions,
    vector_site,
)
from reasonlens.errors import UserError
from reasonlens.evaluate.generation import generate_tokens
from reasonlens.models.loading import LoadedModel
from reasonlens.trace.hooks import site_hooks
from reasonlens.trace.interventions import Add, intervene


def _check_alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise UserError(f"alpha {alpha!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"alpha {alpha} is not finite")
    return value


@contextmanager
def steering(model: LoadedModel, site: str, direction, alpha: float = 1.0) -> Iterator[None]:
    """Add ``alpha * direction`` at `site` (e.g. ``layers.10.resid_post``) at every position of
    every forward pass and generation step inside the block."""
    ref = vector_site(model, site)
    vector = check_direction(model, direction)
    scale = _check_alpha(alpha)
    with intervene(model, Add(ref, vector=vector.to(model.dtype), scale=scale)):
        yield


@dataclass
class SteeringResult:
    """Per vector, alpha and prompt: the metric, the length of the completion; per control
    prompt: the KL to the unsteered next-token distribution."""

    site: str
    alphas: list[float]
    vectors: list[str]  # "direction", then the controls
    metric: torch.Tensor  # [vectors, alphas, prompts] float64
    length: torch.Tensor  # [vectors, alphas, prompts] new tokens
    kl: torch.Tensor | None  # [vectors, alphas, control prompts]; None without controls
    texts: list[list[list[str]]]  # [vectors][alphas][prompts]
    norm: float
    model: str = ""
    settings: dict = field(default_factory=dict)
    resamples: int = 1000
    seed: int = 0

    @property
    def random(self) -> list[int]:
        return [i for i, v in enumerate(self.vectors) if v.startswith("random")]

    def controls_at(self, alpha: float) -> bool:
        """Whether the random controls were swept at `alpha` (see ``control_alphas``)."""
        a = self.alphas.index(alpha)
        return bool(self.random) and bool(torch.isfinite(self.metric[self.random, a]).all())

    def summary(self) -> list[dict]:
        """Per alpha: each figure with its interval, for the direction, its random controls
        (their mean) and every other control, and direction minus random-control mean."""
        with warnings.catch_warnings():  # a control not swept at an alpha: NaN -> None
            warnings.simplefilter("ignore", RuntimeWarning)
            metric = mean_interval(self.metric.numpy(), self.resamples, self.seed)
            length = mean_interval(self.length.numpy(), self.resamples, self.seed)
            kls = (
                None
                if self.kl is None
                else mean_interval(self.kl.numpy(), self.resamples, self.seed)
            )
            rand = self.random
            if rand:
                rand_metric = mean_interval(
                    self.metric[rand].mean(0).numpy(), self.resamples, self.seed
                )
        out = []
        for a, alpha in enumerate(self.alphas):
            row: dict = {"alpha": alpha}
            for v, name in enumerate(self.vectors):
                entry = {
                    "metric": estimate(*(x[v, a] for x in metric[:3])),
                    "length": estimate(*(x[v, a] for x in length[:3])),
                }
                if kls is not None:
                    entry["kl"] = estimate(*(x[v, a] for x in kls[:3]))
                row[name] = entry
            if rand:
                row["random_mean"] = {"metric": estimate(*(x[a] for x in rand_metric[:3]))}
                row["direction_minus_random"] = (
                    paired_interval(
                        metric[3][0, a], rand_metric[3][a], metric[0][0, a] - rand_metric[0][a]
                    )
                    if self.controls_at(alpha)
                    else {"value": None, "low": None, "high": None, "share_higher": None}
                )
            out.append(row)
        return out

    def rescored(self, score: Callable[[int, str], float]) -> SteeringResult:
        """The same sweep with its metric from `score(prompt index, completion)`: for a
        checker that needs each prompt's own problem (the answer, the maze), which the
        sweep's `behaviour(text)` does not see."""
        values = [
            [[math.nan if t is None else score(i, t) for i, t in enumerate(row)] for row in v]
            for v in self.texts
        ]
        return dataclasses.replace(self, metric=torch.tensor(values, dtype=torch.float64))

    def monotone_share(self, expect: str = "increase", vectors: Sequence[int] = (0,)) -> float:
        """Share of bootstrap resamples of the prompts (the same prompts at every alpha) in
        which the mean metric of `vectors` (averaged: e.g. the random controls) never falls
        (`expect` increase; never rises: decrease) from one alpha to the next and ends higher
        (lower) than it starts: a dose-response, not a flat line."""
        from reasonlens.analyses.stats import resample_indices

        order = np.argsort(self.alphas)
        values = self.metric[list(vectors)].mean(0).numpy()[order]  # [alphas, prompts]
        values = values[np.isfinite(values).all(-1)]  # the alphas these vectors were swept at
        if len(values) < 2:
            return math.nan
        idx = resample_indices(values.shape[1], self.resamples, self.seed)
        means = values[:, idx].mean(-1)  # [alphas, resamples]
        sign = 1.0 if expect == "increase" else -1.0
        steps = sign * np.diff(means, axis=0)
        ok = (steps >= 0).all(axis=0) & (sign * (means[-1] - means[0]) > 0)
        return float(ok.mean())

    def versus_random(self, alpha: float, expect: str = "increase"):
        """Verdict on "at `alpha` the direction moves the metric further (`expect`: increase
        or decrease) than its random controls, with 95% confidence" (report.verdicts)."""
        from reasonlens.analyses.effects import versus_control

        if alpha not in self.alphas:
            raise UserError(f"alpha {alpha} was not swept; swept: {self.alphas}")
        if not self.random:
            raise UserError("the sweep has no random controls (n_random=0)")
        if not self.controls_at(alpha):
            raise UserError(f"the random controls were not swept at alpha {alpha}")
        row = self.summary()[self.alphas.index(alpha)]
        return versus_control(row["direction_minus_random"], expect)

    def to_dict(self) -> dict:
        return {
            "analysis": "steering_sweep",
            "model": self.model,
            "site": self.site,
            "direction_norm": self.norm,
            "alphas": list(self.alphas),
            "vectors": list(self.vectors),
            "n_prompts": int(self.metric.shape[-1]),
            "n_control_prompts": None if self.kl is None else int(self.kl.shape[-1]),
            "settings": self.settings,
            "interval": f"95% percentile bootstrap over prompts ({self.resamples} resamples)",
            "per_alpha": self.summary(),
        }

    def per_example(self) -> dict[str, torch.Tensor]:
        out = {"metric": self.metric.float(), "length": self.length.float()}
        if self.kl is not None:
            out["kl"] = self.kl.float()
        return out

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """Metric, length and KL against alpha: the direction with its interval, the random
        controls' mean with theirs."""
        from reasonlens.plots import new_figure, save_figure

        panels = [("metric", self.metric), ("length (tokens)", self.length)]
        if self.kl is not None:
            panels.append(("KL to unsteered", self.kl))
        fig = new_figure(figsize=(4 * len(panels), 3.6))
        axes = fig.subplots(1, len(panels))
        alphas = np.asarray(self.alphas)
        order = np.argsort(alphas)
        for ax, (name, values) in zip(axes, panels, strict=True):
            groups = [("direction", values[0])]
            if self.random:
                groups.append(("random (mean)", values[self.random].mean(0)))
            for label, v in groups:
                keep = order[torch.isfinite(v[order]).all(-1).numpy()]  # alphas it was swept at
                mean, low, high, _ = mean_interval(v[keep].numpy(), self.resamples, self.seed)
                line = ax.plot(alphas[keep], mean, marker=".", label=label)[0]
                ax.fill_between(alphas[keep], low, high, color=line.get_color(), alpha=0.2)
            ax.set_xlabel("alpha")
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(title or f"Steering at {self.site}: {self.model}", fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path, dpi=150)


def _steered_kl(model, ref, added: torch.Tensor, ids: list, batch_size: int) -> torch.Tensor:
    """KL(unsteered ‖ steered) at the last token of each prompt in `ids`, for each row of
    `added` (the vector added at every position): [len(added) * len(ids)], prompts fastest."""
    m = len(ids)
    base = last_logits(model, ids, None, batch_size)
    rows = added.repeat_interleave(m, dim=0)
    steered = last_logits(
        model,
        [x for _ in range(len(added)) for x in ids],
        lambda lo, hi: [(ref, add_rows(rows[lo:hi]))],
        batch_size,
    )
    return kl(base.repeat(len(added), 1), steered)


@dataclass(frozen=True)
class DoseGrid:
    """Alphas for a dose-response chosen on held-out prompts: the largest candidate whose
    steering (either sign) keeps the mean next-token KL on those prompts within a budget."""

    alphas: tuple[float, ...]
    largest: float
    kl_max: float
    candidates: tuple[float, ...]
    kl: tuple[tuple[float, float], ...]  # mean KL at (-alpha, +alpha) per candidate
    n_prompts: int = 0  # the prompts the KL is a mean over

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def kl_bounded_alphas(
    model: LoadedModel,
    direction,
    site: str,
    prompts: Prompts,
    candidates: Sequence[float],
    kl_max: float,
    steps: int = 2,
    chat: bool = True,
    batch_size: int = 32,
) -> DoseGrid:
    """The grid ``-a, ..., 0, ..., a`` (``steps`` doses a side, evenly spaced) where ``a`` is
    the largest of ``candidates`` whose steering at ``-a`` and ``+a`` moves the next-token
    distribution on ``prompts`` by a mean KL of at most ``kl_max`` nats (the smallest
    candidate when none does: the grid is then as gentle as offered, and its KL says so).

    Why: a fixed grid breaks the text of one model and does nothing to another (measured: on
    the maze warm-up model +2 raised backtracks, +4 broke the text at a KL of 3.5)."""
    ref = vector_site(model, site)
    vector = check_direction(model, direction)
    values = sorted({abs(_check_alpha(a)) for a in candidates} - {0.0})
    if not values:
        raise UserError("no non-zero candidate alphas given")
    if steps < 1:
        raise UserError("steps must be at least 1")
    ids = encode(model, prompts, chat, "control")
    signed = torch.tensor([s * a for a in values for s in (-1.0, 1.0)], dtype=model.dtype)
    added = signed[:, None] * vector.to(model.dtype)[None]
    means = _steered_kl(model, ref, added, ids, batch_size).view(len(values), 2, -1).mean(-1)
    within = [a for a, k in zip(values, means.tolist(), strict=True) if max(k) <= kl_max]
    top = max(within) if within else values[0]
    grid = [top * k / steps for k in range(-steps, steps + 1)]
    return DoseGrid(
        alphas=tuple(float(a) for a in grid),
        largest=float(top),
        kl_max=float(kl_max),
        candidates=tuple(float(a) for a in values),
        kl=tuple((float(lo), float(hi)) for lo, hi in means.tolist()),
        n_prompts=len(ids),
    )


def _swept(
    alphas: list[float], n_vectors: int, control_alphas: Sequence[float] | None, zero: int | None
) -> list[bool]:
    """Which (vector, alpha) pairs a sweep runs, vector-major: the direction at every alpha,
    the controls at `control_alphas` (every alpha when None) and at a shared greedy alpha 0."""
    if control_alphas is None:
        return [True] * (n_vectors * len(alphas))
    wanted = {_check_alpha(a) for a in control_alphas}
    if not wanted <= set(alphas):
        raise UserError(f"control alphas {sorted(wanted - set(alphas))} are not among {alphas}")
    return [
        v == 0 or a in wanted or i == zero for v in range(n_vectors) for i, a in enumerate(alphas)
    ]


def alpha_sweep(
    model: LoadedModel,
    prompts: Prompts,
    direction,
    site: str,
    alphas: Sequence[float],
    behaviour: Callable[[str], float],
    control_prompts: Prompts | None = None,
    max_new_tokens: int = 64,
    n_random: int = 3,
    controls: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    chat: bool = True,
    batch_size: int | None = None,
    temperature: float = 0.0,
    resamples: int = 1000,
    control_alphas: Sequence[float] | None = None,
) -> SteeringResult:
    """Steer with each alpha (and each control vector) in one batched generation.

    `behaviour(text)` scores a completion (e.g. "Wait"/"Hmm" per 100 words). `n_random` random
    directions of the direction's norm (seeded by `seed`) and the vectors in `controls` are
    swept with the same alphas, or only at `control_alphas` (a subset, e.g. the end doses
    where a verdict is judged; greedy rows at alpha 0 come free): the controls' figures at the
    other alphas are NaN (None in a record). `batch_size` caps the rows of one generate call
    (default: all rows at once); rows mix alphas whatever it is."""
    ref = vector_site(model, site)
    vector = check_direction(model, direction)
    if alphas is None or len(alphas) == 0:
        raise UserError("no alphas given")
    alpha_list = [_check_alpha(a) for a in alphas]
    if n_random < 0:
        raise UserError("n_random must be >= 0")
    if max_new_tokens < 1:
        raise UserError("max_new_tokens must be at least 1")
    ids = encode(model, prompts, chat)
    control = None if control_prompts is None else encode(model, control_prompts, chat, "control")
    names = ["direction"]
    vectors = [vector]
    for i, r in enumerate(random_directions(model.d_model, n_random, vector.norm(), seed)):
        names.append(f"random {i}")
        vectors.append(r)
    for name, v in (controls or {}).items():
        names.append(name)
        vectors.append(check_direction(model, v, f"control {name!r}"))
    stack = torch.stack(vectors).to(model.dtype)  # [V, d]
    scale = torch.tensor(alpha_list, dtype=model.dtype)  # [A]
    # Row r = (vector, alpha, prompt), prompts fastest; the added vector is alpha * vector,
    # computed in the model's dtype as `steering` computes it.
    per_row = (scale[None, :, None] * stack[:, None, :]).reshape(-1, model.d_model)
    n_v, n_a, n = len(vectors), len(alpha_list), len(ids)
    # Greedy rows at alpha 0 add nothing, whatever the vector: generated once (the
    # direction's) and shared by every control, which saves (V - 1) / (V * A) of the work.
    zero = alpha_list.index(0.0) if temperature == 0 and 0.0 in alpha_list else None
    swept = _swept(alpha_list, n_v, control_alphas, zero)  # [V * A] (vector, alpha) pairs run

    rows = per_row.repeat_interleave(n, dim=0)
    row_ids = [x for _ in range(n_v * n_a) for x in ids]

    def source_row(r: int) -> int | None:  # rows are (vector, alpha, prompt), prompts fastest
        block, prompt = divmod(r, n)
        if not swept[block]:
            return None
        return zero * n + prompt if zero is not None and block % n_a == zero else r

    source = [source_row(r) for r in range(len(row_ids))]
    todo = [r for r in range(len(row_ids)) if source[r] == r]
    size = len(todo) if batch_size is None else batch_size
    if size < 1:
        raise UserError("batch size must be at least 1")
    rows = rows[todo]
    current = {"rows": rows[:size]}

    def fn(x, ctx):
        return add_rows(current["rows"])(x, ctx)

    generated: list[list[int]] = []
    with site_hooks(model, [(ref, fn)]):
        for lo in range(0, len(todo), size):
            current["rows"] = rows[lo : lo + size]
            generated.extend(
                generate_tokens(
                    model,
                    [row_ids[r] for r in todo[lo : lo + size]],
                    max_new_tokens=max_new_tokens,
                    batch_size=size,
                    temperature=temperature,
                    seed=seed,
                )
            )
    at = {r: k for k, r in enumerate(todo)}
    decoded = model.tokenizer.batch_decode(generated, skip_special_tokens=True)
    texts_flat = [None if s is None else decoded[at[s]] for s in source]
    nan = float("nan")
    values = torch.tensor(
        [nan if t is None else float(behaviour(t)) for t in texts_flat], dtype=torch.float64
    )
    lengths = torch.tensor(
        [nan if s is None else len(generated[at[s]]) for s in source], dtype=torch.float64
    )
    texts = [
        [texts_flat[(v * n_a + a) * n : (v * n_a + a + 1) * n] for a in range(n_a)]
        for v in range(n_v)
    ]

    kls = None
    if control is not None:  # at alpha 0 nothing is added: KL 0 exactly, not computed
        moved = [k for k in range(n_v * n_a) if alpha_list[k % n_a] != 0.0 and swept[k]]
        kls = torch.zeros(n_v * n_a, len(control), dtype=torch.float64)
        kls[[k for k in range(n_v * n_a) if not swept[k]]] = nan
        if moved:
            got = _steered_kl(model, ref, per_row[moved], control, size)
            kls[moved] = got.view(len(moved), len(control)).to(kls.dtype)
        kls = kls.view(n_v, n_a, len(control))

    return SteeringResult(
        site=ref.name,
        alphas=alpha_list,
        vectors=names,
        metric=values.view(n_v, n_a, n),
        length=lengths.view(n_v, n_a, n),
        kl=kls,
        texts=texts,
        norm=float(vector.norm()),
        model=model.name,
        settings={
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "n_random": n_random,
            "seed": seed,
            "chat": chat,
            "rows": len(row_ids),
            "control_alphas": sorted(alpha_list[a] for a in range(n_a) if swept[n_a + a])
            if n_v > 1
            else [],
            "rows_generated": len(todo),
            "rows_per_generate": size,
        },
        resamples=resamples,
        seed=seed,
    )
