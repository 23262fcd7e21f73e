"""fit_probes: many probes, one call, with baselines, controls and confidence intervals."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence

import torch

from reasonlens.analyses.probes import metrics as M
from reasonlens.analyses.probes.lbfgs import HISTORY
from reasonlens.analyses.probes.result import ProbeResult, Score
from reasonlens.analyses.probes.train import Features, ProbeSpec, fit
from reasonlens.analyses.stats import percentile_interval, resample_weights
from reasonlens.errors import UserError, one_of
from reasonlens.progress import Progress
from reasonlens.threads import torch_threads

KINDS = ("linear", "mlp")
CLASS_WEIGHTS = (None, "balanced")
_CHUNK_BYTES = 256 * 2**20  # working memory per chunk of probes

FeatureInput = torch.Tensor | Sequence[torch.Tensor] | Mapping[Hashable, torch.Tensor]


def train_test_split(
    n: int, test_fraction: float = 0.2, seed: int = 0, groups: Sequence[Hashable] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of rows 0..n-1 into sorted (train, test) index tensors.

    With `groups` (one label per row, e.g. the prompt or template a row came from) whole groups
    go to one side, so no group leaks from training into testing; the test side then holds
    about `test_fraction` of the rows.
    """
    if n < 2:
        raise UserError(f"need at least 2 rows to split, got {n}")
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    gen = torch.Generator().manual_seed(seed)
    target = max(1, min(n - 1, round(test_fraction * n)))
    if groups is None:
        order = torch.randperm(n, generator=gen)
        return order[target:].sort().values, order[:target].sort().values
    if len(groups) != n:
        raise UserError(f"groups has {len(groups)} entries for {n} rows")
    names = list(dict.fromkeys(groups))
    if len(names) < 2:
        raise UserError("a grouped split needs at least 2 distinct groups")
    ids = torch.tensor([names.index(g) for g in groups])
    sizes = torch.bincount(ids, minlength=len(names))
    test_groups, count = [], 0
    for g in torch.randperm(len(names), generator=gen).tolist():
        if count >= target or len(test_groups) == len(names) - 1:
            break
        test_groups.append(g)
        count += int(sizes[g])
    in_test = torch.isin(ids, torch.tensor(test_groups))
    return torch.nonzero(~in_test).squeeze(1), torch.nonzero(in_test).squeeze(1)


def fit_probes(
    features: FeatureInput,
    labels: torch.Tensor | Mapping[Hashable, torch.Tensor],
    train_idx: Sequence[int] | torch.Tensor,
    test_idx: Sequence[int] | torch.Tensor,
    *,
    kind: str = "linear",
    n_classes: int | None = None,
    heads: Sequence[str] | None = None,
    metric: str = "accuracy",
    l2: float = 1e-2,
    hidden: int = 128,
    max_iter: int | None = None,
    tol: float = 1e-4,
    class_weight: str | None = None,
    control: bool = True,
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    chunk_size: int | None = None,
    keep_weights: bool = True,
    threads: int | None = None,
) -> ProbeResult:
    """Train one probe per feature set (e.g. per (layer, position)), all in batched tensors.

    features: [P, N, d] or [*grid, N, d] (keys: grid indices), a list of [N, d] (keys: 0..P-1),
        or a dict key -> [N, d]; N rows (examples), d features; any float dtype.
    labels: [N] (one head), [N, H] shared by every probe, or per probe [P, N, H] /
        [*grid, N, H] / dict key -> [N] or [N, H]. Class ids 0..n_classes-1; -1 = no label for
        that (row, head), left out of training and scoring.
    train_idx / test_idx: row indices (see train_test_split).
    kind: "linear" (softmax(Wx + b), one multinomial logistic regression per head) or "mlp"
        (softmax(W1 ReLU(W2 x + b2) + b1), `hidden` units shared by the heads).
    l2: penalty (l2 / 2) * ||W||^2 on the mean training loss (biases unpenalised): for a linear
        head it equals scikit-learn's LogisticRegression(C = 1 / (l2 * n_labelled_train)).
    max_iter / tol: L-BFGS budget per probe (default 500 linear, 300 mlp) and stopping test
        (largest gradient entry <= tol).
    class_weight: None or "balanced" (scikit-learn's weighting, per head).
    control: also train each probe on shuffled training labels (seeded, same shuffle for all).
    bootstrap: test-row resamples for the confidence intervals (0: none, bounds are NaN).
    chunk_size: probes per batched problem (default: fits ~256 MB of working memory); results
        do not depend on it.
    threads: CPU threads for torch during the fit (None: leave the current setting). On a busy
        machine, 1 can be many times faster than an oversubscribed pool; the thread count can
        change float rounding, so fix it when numbers must match across machines.
    """
    keys, get, n_rows, dim, y, head_names, spec = _setup(
        features, labels, kind, n_classes, heads, metric, l2, hidden, max_iter, tol,
        class_weight, ci, bootstrap, seed, keep_weights,
    )  # fmt: skip
    train, test = _indices(train_idx, n_rows, "train_idx"), _indices(test_idx, n_rows, "test_idx")
    if bool(torch.isin(train, test).any()):
        raise UserError("train_idx and test_idx share rows; a probe must be scored on unseen rows")
    y_train, y_test = y[:, train], y[:, test]
    if not bool((y_train >= 0).any()):
        raise UserError("no training row has a label")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    chunk = chunk_size or _auto_chunk(spec, len(train), len(test), dim, y.shape[-1])
    with torch_threads(threads):
        out = _train_chunks(get, len(keys), chunk, train, test, y_train, spec, perm, control)
        return _result(out, keys, head_names, y_train, y_test, spec, metric, bootstrap, ci, seed)


def cross_fit_probes(
    features: FeatureInput,
    labels: torch.Tensor | Mapping[Hashable, torch.Tensor],
    folds: int = 5,
    *,
    kind: str = "linear",
    n_classes: int | None = None,
    heads: Sequence[str] | None = None,
    metric: str = "accuracy",
    l2: float = 1e-2,
    hidden: int = 128,
    max_iter: int | None = None,
    tol: float = 1e-4,
    class_weight: str | None = None,
    control: bool = True,
    bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    chunk_size: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    label: str = "probes",
) -> ProbeResult:
    """`fit_probes` by cross-fitting: the rows are split into `folds` seeded folds, each fold is
    predicted by probes (and controls, and the majority baseline) trained on the others, and
    every row is scored once, so a small data set still gives scores on all of its rows.
    Intervals resample all rows. `train` holds the mean training score over the folds;
    `n_train` the mean number of training rows; no weights are kept (one set per fold)."""
    keys, get, n_rows, dim, y, head_names, spec = _setup(
        features, labels, kind, n_classes, heads, metric, l2, hidden, max_iter, tol,
        class_weight, ci, bootstrap, seed, False,
    )  # fmt: skip
    if not 2 <= folds <= n_rows:
        raise UserError(f"cross-fitting needs 2 to {n_rows} folds (one row each at least)")
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    p, h = len(keys), y.shape[-1]
    pred = torch.full((p, h, n_rows), -1, dtype=torch.long)
    shuffled = torch.full_like(pred, -1)
    majority = torch.full_like(pred, -1)
    train_scores: dict[str, list[torch.Tensor]] = {}
    n_train, iterations, converged = [], [], []
    with torch_threads(threads), Progress(progress, folds, f"{label}: folds") as bar:
        for fold in order.tensor_split(folds):
            bar.advance()
            test = fold.sort().values
            train = order[~torch.isin(order, test)].sort().values
            y_train = y[:, train]
            perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
            chunk = chunk_size or _auto_chunk(spec, len(train), len(test), dim, h)
            out = _train_chunks(get, p, chunk, train, test, y_train, spec, perm, control)
            pred[:, :, test] = out.cat("pred")
            if control:
                shuffled[:, :, test] = out.cat("control")
            majority[:, :, test] = _majority(y_train, spec.n_classes).expand(p, h)[..., None]
            target = y_train.expand(p, -1, -1).transpose(1, 2).reshape(p * h, -1)
            fold_train = M.scores(out.cat("train_pred").reshape(p * h, -1), target, spec.n_classes)
            for name, value in fold_train.items():
                train_scores.setdefault(name, []).append(value.view(p, h))
            n_train.append((y_train >= 0).sum(1).expand(p, h).double())
            iterations.append(out.cat("iterations"))
            converged.append(out.cat("converged"))
    collected = _Collected(pred=[pred], iterations=[torch.stack(iterations).amax(0)])
    collected["converged"] = [torch.stack(converged).all(0)]
    if control:
        collected["control"] = [shuffled]
    result = _result(
        collected, keys, head_names, y, y, spec, metric, bootstrap, ci, seed,
        baseline_pred=majority,
        train_scores={k: torch.stack(v).nanmean(0) for k, v in train_scores.items()},
    )  # fmt: skip
    result.n_train = torch.stack(n_train).mean(0).round().long()
    result.predictions, result.targets = pred, y
    result.control_predictions = shuffled if control else None
    result.config.update(cross_fit_folds=folds, n_train_rows=None, n_test_rows=n_rows)
    return result


def _setup(
    features, labels, kind, n_classes, heads, metric, l2, hidden, max_iter, tol, class_weight,
    ci, bootstrap, seed, keep_weights,
):  # fmt: skip
    """Checked inputs shared by the fitting entry points."""
    if kind not in KINDS:
        raise one_of("probe kind", kind, KINDS)
    if metric not in M.METRICS:
        raise one_of("metric", metric, M.METRICS)
    if class_weight not in CLASS_WEIGHTS:
        raise one_of("class_weight", str(class_weight), ["balanced"])
    if l2 < 0 or hidden < 1 or not 0 < ci < 1 or bootstrap < 0:
        raise UserError("need l2 >= 0, hidden >= 1, 0 < ci < 1 and bootstrap >= 0")
    keys, get, n_rows, dim = _features(features)
    y = _labels(labels, keys, n_rows)  # [P or 1, N, H]
    n_cls = _n_classes(y, n_classes)
    n_heads = y.shape[-1]
    head_names = [str(h) for h in range(n_heads)] if heads is None else list(heads)
    if len(head_names) != n_heads:
        raise UserError(f"{len(head_names)} head names for {n_heads} label columns")
    spec = ProbeSpec(
        kind=kind,
        n_classes=n_cls,
        hidden=hidden,
        l2=l2,
        max_iter=max_iter or (500 if kind == "linear" else 300),
        tol=tol,
        class_weight=class_weight,
        seed=seed,
        keep_weights=keep_weights,
    )
    return keys, get, n_rows, dim, y, head_names, spec


def _train_chunks(get, n_probes, chunk, train, test, y_train, spec, perm, control) -> _Collected:
    """Fit probe (and control) chunk by chunk; collect predictions and weights."""
    out = _Collected()
    for start in range(0, n_probes, chunk):
        idx = list(range(start, min(start + chunk, n_probes)))
        x = get(idx)
        yt = y_train if y_train.shape[0] == 1 else y_train[idx]
        feats = Features.build(x[:, train])
        f_test = feats.project(x[:, test])
        del x
        fitted = fit(feats, yt, spec)
        out.add("pred", fitted.logits(f_test).argmax(-2).transpose(1, 2))
        out.add("train_pred", fitted.predict())
        out.add("iterations", fitted.iterations)
        out.add("converged", fitted.converged)
        if spec.kind == "linear" and spec.keep_weights:
            w, b = fitted.activation_weights()
            out.add("weight", w)
            out.add("bias", b)
        if control:
            shuffled = fit(feats, yt[:, perm], spec)
            out.add("control", shuffled.logits(f_test).argmax(-2).transpose(1, 2))
    return out


class _Collected(dict):
    """Lists of tensors per name, concatenated over chunks of probes."""

    def add(self, name: str, value: torch.Tensor) -> None:
        self.setdefault(name, []).append(value)

    def cat(self, name: str) -> torch.Tensor | None:
        return torch.cat(self[name]) if name in self else None


def _result(
    out, keys, heads, y_train, y_test, spec, metric, bootstrap, ci, seed,
    baseline_pred: torch.Tensor | None = None,
    train_scores: dict[str, torch.Tensor] | None = None,
) -> ProbeResult:  # fmt: skip
    p, h = len(keys), len(heads)
    target = y_test.expand(p, -1, -1).transpose(1, 2).reshape(p * h, -1)  # [K, n_test]
    weights = _resamples(target.shape[1], bootstrap, seed + 1) if bootstrap else None
    groups = torch.arange(p).repeat_interleave(h)

    def scored(pred: torch.Tensor) -> dict[str, Score]:
        return _scores(pred.reshape(p * h, -1), target, spec.n_classes, weights, groups, ci, p, h)

    if train_scores is None:
        train_target = y_train.expand(p, -1, -1).transpose(1, 2).reshape(p * h, -1)
        train_pred = out.cat("train_pred").reshape(p * h, -1)
        train_scores = M.scores(train_pred, train_target, spec.n_classes)
    if baseline_pred is None:
        majority = _majority(y_train, spec.n_classes).expand(p, h)
        baseline_pred = majority[..., None].expand(p, h, y_test.shape[1])
    config = {
        "kind": spec.kind,
        "n_classes": spec.n_classes,
        "hidden": spec.hidden if spec.kind == "mlp" else None,
        "l2": spec.l2,
        "max_iter": spec.max_iter,
        "tol": spec.tol,
        "class_weight": spec.class_weight,
        "seed": seed,
        "bootstrap": bootstrap,
        "ci": ci,
        "n_train_rows": y_train.shape[1],
        "n_test_rows": y_test.shape[1],
    }
    return ProbeResult(
        keys=keys,
        heads=heads,
        kind=spec.kind,
        metric=metric,
        probe=scored(out.cat("pred")),
        baseline=scored(baseline_pred),
        control=scored(out.cat("control")) if "control" in out else None,
        train={k: v.view(p, h) for k, v in train_scores.items()},
        n_train=(y_train >= 0).sum(1).expand(p, h).clone(),
        n_test=(y_test >= 0).sum(1).expand(p, h).clone(),
        iterations=out.cat("iterations"),
        converged=out.cat("converged"),
        weight=out.cat("weight"),
        bias=out.cat("bias"),
        config=config,
    )


def _scores(pred, target, n_classes, weights, groups, ci, p, h) -> dict[str, Score]:
    """Point values, per-head intervals and head-mean intervals for both metrics."""
    point = M.scores(pred, target, n_classes)
    samples = None if weights is None else M.bootstrap_scores(pred, target, n_classes, weights)
    out = {}
    for name, value in point.items():
        mean = M.group_nanmean(value, groups)
        if samples is None:
            nan = torch.full_like(value, float("nan"))
            low = high = nan
            mean_low = mean_high = torch.full_like(mean, float("nan"))
        else:
            low, high = percentile_interval(samples[name], ci)
            means = M.group_nanmean(samples[name], groups)
            mean_low, mean_high = percentile_interval(means, ci)
        out[name] = Score(
            value.view(p, h), low.view(p, h), high.view(p, h), mean, mean_low, mean_high
        )
    return out


def _resamples(n: int, resamples: int, seed: int) -> torch.Tensor:
    """Bootstrap multiplicities of the n test rows [resamples, n] (the torch draw: the stream
    the recorded intervals were made with)."""
    return torch.from_numpy(resample_weights(n, resamples, seed, draw="torch"))


def _majority(y_train: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Most frequent training label per (probe, head) [P or 1, H]; ties go to the lower id."""
    valid = y_train >= 0
    onehot = torch.nn.functional.one_hot(y_train.clamp(min=0), n_classes) * valid[..., None]
    return onehot.sum(1).argmax(-1)


def _features(features: FeatureInput):
    """(keys, get(list of probe indices) -> [p, N, d], N, d) for any accepted input."""
    if isinstance(features, torch.Tensor):
        if features.dim() < 2 or not features.is_floating_point():
            raise UserError("features must be a float tensor [N, d], [P, N, d] or [*grid, N, d]")
        grid = tuple(features.shape[:-2])
        flat = features.reshape(-1, *features.shape[-2:])
        if len(grid) <= 1:
            keys: list[Hashable] = list(range(flat.shape[0]))
        else:
            keys = list(itertools.product(*[range(s) for s in grid]))
        return keys, lambda idx: flat[idx[0] : idx[-1] + 1], flat.shape[1], flat.shape[2]
    if isinstance(features, Mapping):
        keys, items = list(features.keys()), list(features.values())
    else:
        keys, items = list(range(len(features))), list(features)
    if not items:
        raise UserError("no feature sets given")
    shapes = {tuple(t.shape) for t in items}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise UserError(f"every feature set must be [N, d] with the same N and d; got {shapes}")
    if not all(t.is_floating_point() for t in items):
        raise UserError("features must be float tensors")
    n, d = next(iter(shapes))
    return keys, lambda idx: torch.stack([items[i] for i in idx]), n, d


def _labels(labels, keys: list[Hashable], n_rows: int) -> torch.Tensor:
    """Labels as a long tensor [1 or P, N, H]."""
    if isinstance(labels, Mapping):
        missing = [k for k in keys if k not in labels]
        if missing:
            raise UserError(f"labels has no entry for feature key {missing[0]!r}")
        per = [_as_2d(torch.as_tensor(labels[k]), n_rows) for k in keys]
        if len({t.shape for t in per}) != 1:
            raise UserError("every probe's labels must have the same number of heads")
        return torch.stack(per)
    y = torch.as_tensor(labels)
    if y.dim() <= 2:
        return _as_2d(y, n_rows)[None]
    flat = y.reshape(-1, *y.shape[-2:])
    if flat.shape[0] != len(keys) or flat.shape[1] != n_rows:
        raise UserError(
            f"per-probe labels must be [P, N, H] with P={len(keys)} probes and N={n_rows} rows; "
            f"got {tuple(y.shape)}"
        )
    return _check_ids(flat)


def _as_2d(y: torch.Tensor, n_rows: int) -> torch.Tensor:
    y = y[:, None] if y.dim() == 1 else y
    if y.dim() != 2 or y.shape[0] != n_rows:
        raise UserError(f"labels must be [N] or [N, H] with N={n_rows} rows; got {tuple(y.shape)}")
    return _check_ids(y)


def _check_ids(y: torch.Tensor) -> torch.Tensor:
    if y.is_floating_point() or y.dtype == torch.bool:
        raise UserError("labels must be integer class ids (-1 = no label)")
    y = y.long()
    if y.numel() and int(y.min()) < -1:
        raise UserError(f"label {int(y.min())} is invalid: class ids are >= 0, -1 = no label")
    return y


def _n_classes(y: torch.Tensor, n_classes: int | None) -> int:
    top = int(y.max()) + 1 if y.numel() else 0
    if n_classes is None:
        return max(2, top)
    if top > n_classes:
        raise UserError(f"label {top - 1} is out of range for n_classes={n_classes}")
    return n_classes


def _indices(idx, n_rows: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
    if t.numel() == 0:
        raise UserError(f"{what} is empty")
    if int(t.min()) < 0 or int(t.max()) >= n_rows:
        raise UserError(f"{what} has rows outside 0..{n_rows - 1}")
    if len(torch.unique(t)) != len(t):
        raise UserError(f"{what} repeats rows")
    return t


def _auto_chunk(spec: ProbeSpec, n_train: int, n_test: int, dim: int, heads: int) -> int:
    """Probes per chunk so that features, basis and optimiser state fit _CHUNK_BYTES."""
    r = min(n_train, dim)
    k = heads * spec.n_classes
    if spec.kind == "linear":
        params = (r + 1) * k
    else:
        params = r * spec.hidden + spec.hidden + spec.hidden * k + k
    floats = (2 * HISTORY + 8) * params  # L-BFGS history and state
    floats += 2 * (n_train + n_test) * dim + 3 * r * r + n_train * k * 4
    return max(1, _CHUNK_BYTES // (4 * floats))
