"""Report sections for the planning analyses: this run beside the paper, claim by claim.

Each section states the paper's claim, measures the same thing here, and says whether the two
agree, with the share of bootstrap resamples of the problems in which the claim holds
(`reasonlens.report.claims`). Comparisons use relative depth (layer / layers), since the models
differ in depth. Probe claims rest on the probes' test split and are point estimates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reasonlens.analyses.result import load_per_example
from reasonlens.report.claims import MIN_PROBLEMS, Claims, verdict, verdicts, weighted_nanmean
from reasonlens.report.document import Document, fmt
from reasonlens.studies.planning import files, paper
from reasonlens.studies.planning.future_matrix import plot_future_matrix


def _sample_size(doc: Document, n: int, what: str = "problems") -> int:
    """Say plainly when n is too small to judge; returns n for the verdicts."""
    if n < MIN_PROBLEMS:
        doc.paragraph(
            f"**Only {n} {what}**: too few to support or refute the paper's claims, so no "
            "verdict is given; the numbers show what the analysis computes. A model that solves "
            "more test problems (fine-tuned on more data: `--preset cpu` on a CPU, `paper` or "
            "`full` on a GPU) gives a larger analysis set."
        )
    return n


def _array(values) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # JSON null (NaN) -> nan


def _nan_peak(values: np.ndarray) -> float | None:
    return None if np.isnan(values).all() else float(np.nanmax(values))


# Extraction rate ------------------------------------------------------------------------------


def _extraction_stats(mean: np.ndarray, std: np.ndarray, comps: list[str]) -> dict:
    """What the claims compare: upper-half means and spreads, and where the layer output
    first reaches 0.5 (None: never)."""
    layers = mean.shape[0]
    a, m, r = (comps.index(c) for c in ("attn_out", "mlp_out", "resid_post"))
    upper = slice(layers // 2, layers)
    settled = np.flatnonzero(mean[:, r] >= 0.5)
    return {
        "layers": layers,
        "attn_upper": float(mean[upper, a].mean()),
        "mlp_upper": float(mean[upper, m].mean()),
        "attn_std": float(std[upper, a].mean()),
        "mlp_std": float(std[upper, m].mean()),
        "settle": int(settled[0]) if settled.size else None,
        "last": float(mean[-1, r]),
    }


def _extraction_claims(s: dict) -> Claims:
    return {
        "mhsa": s["attn_upper"] > s["mlp_upper"],
        "settle": s["settle"] is not None and 0.3 <= s["settle"] / s["layers"] <= 0.8,
        "steady": s["attn_std"] < s["mlp_std"],
    }


def _extraction_resampled(comps: list[str]):
    from reasonlens.analyses.extraction import weighted_rates

    def claims(data: dict, w: np.ndarray) -> Claims:
        rates = weighted_rates(data["hits"], data["valid"], w)
        return _extraction_claims(_extraction_stats(rates.mean(0), rates.std(0), comps))

    return claims


def extraction_section(doc: Document, result: dict, directory: Path) -> None:
    raw = result["raw"]
    comps = raw["components"]
    mean, std = _array(raw["mean"]), _array(raw["std"])  # [layers][components]
    stats = _extraction_stats(mean, std, comps)
    layers, settle = stats["layers"], stats["settle"]
    p_settle = next(i for i, v in enumerate(paper.EXTRACTION_LLAMA["resid_post"]) if v >= 0.5)
    p_attn = sum(paper.EXTRACTION_LLAMA["attn_out"][16:]) / 16
    p_mlp = sum(paper.EXTRACTION_LLAMA["mlp_out"][16:]) / 16
    doc.heading("Extraction rate (§5.1)")
    n = _sample_size(doc, result["n_examples"])
    doc.paragraph(
        f"Share of problems where argmax(E·h) equals the model's own answer at the last token "
        f"before each blank; {raw['projection']}. Mean over the plan's steps; the band is the "
        f"spread over steps. {result['n_examples']} problems."
    )
    said = verdicts(
        n,
        _extraction_claims(stats),
        load_per_example(directory, "extraction"),
        _extraction_resampled(comps),
    )
    doc.table(
        ["claim", "paper (Llama-2-7b)", "this run", "verdict"],
        [
            [
                "MHSA extracts the answer more than MLP (mean rate, upper half of layers)",
                f"{p_attn:.2f} vs {p_mlp:.2f}",
                f"{stats['attn_upper']:.2f} vs {stats['mlp_upper']:.2f}",
                said["mhsa"],
            ],
            [
                "the layer output settles on the answer in the middle layers "
                "(first layer with rate >= 0.5, relative depth)",
                f"layer {p_settle} of 32 ({p_settle / 32:.2f})",
                "never"
                if settle is None
                else f"layer {settle} of {layers} ({settle / layers:.2f})",
                said["settle"],
            ],
            [
                "MHSA varies less across steps than MLP (mean spread, upper half)",
                "yes",
                f"{stats['attn_std']:.3f} vs {stats['mlp_std']:.3f}",
                said["steady"],
            ],
            [
                "last layer's output without the final norm (not 1.0 because no norm)",
                f"{paper.EXTRACTION_LLAMA['resid_post'][-1]:.2f}",
                f"{stats['last']:.2f}",
                "compare",
            ],
        ],
    )
    doc.image(directory / files.EXTRACTION_PNG, "Extraction rate by layer (no final norm)")
    doc.image(
        directory / files.EXTRACTION_LENS_PNG,
        "Variant: logit lens with the final norm applied (not the paper's choice)",
    )


# Information flow -----------------------------------------------------------------------------


def _flow_peaks(norm: np.ndarray, chunks: list[str]):
    def peak(step: int, chunk: str) -> float | None:
        if chunk not in chunks or step >= norm.shape[0]:
            return None
        return _nan_peak(norm[step, chunks.index(chunk)])

    return peak


def _flow_claims(norm: np.ndarray, chunks: list[str]) -> Claims:
    peak = _flow_peaks(norm, chunks)
    n_steps = norm.shape[0]
    goal = [peak(t, "goal state") for t in range(n_steps)]
    recent = None
    if n_steps >= 5:
        old = [v for v in (peak(4, "history 1"), peak(4, "history 2")) if v is not None]
        new = [v for v in (peak(4, "history 3"), peak(4, "history 4")) if v is not None]
        recent = None if not old or not new else max(new) > max(old)
    init = [peak(t, "init state") or 0.0 for t in range(n_steps)]
    stacks = [init[t] for t in range(1, n_steps, 2)]  # steps 2, 4, 6 (0-based 1, 3, 5)
    return {
        "goal": all(g is not None and g >= 0.1 for g in goal),
        "recent": recent,
        "init": bool(stacks) and init[0] > max(stacks),
    }


def _flow_resampled(chunks: list[str]):
    def claims(data: dict, w: np.ndarray) -> Claims:
        import torch

        from reasonlens.analyses.flow import step_normalized

        mean = torch.from_numpy(weighted_nanmean(data["flow"], w))
        return _flow_claims(step_normalized(mean).numpy(), chunks)

    return claims


def flow_section(doc: Document, result: dict, directory: Path) -> None:
    chunks = result["chunks"]
    norm = _array(result["normalized"])  # [steps][chunks][layers]
    peak = _flow_peaks(norm, chunks)
    n_steps = norm.shape[0]
    observed = _flow_claims(norm, chunks)
    doc.heading("Information flow (§5.2)")
    n = _sample_size(doc, result["n_examples"])
    doc.paragraph(
        "Attention × gradient saliency |Σ_heads A ⊙ ∂L/∂A| (Wang et al. 2023), L the "
        "cross-entropy of the gold answer at the last token, averaged over each chunk's tokens; "
        f"each step's map is scaled to a maximum of 1. {result['n_examples']} problems."
    )
    said = verdicts(
        n,
        observed,
        load_per_example(directory, "flow"),
        _flow_resampled(chunks),
    )
    recent = observed["recent"]
    doc.table(
        ["claim", "paper (Llama-2-7b)", "this run", "verdict"],
        [
            [
                "the goal state receives flow at every step (peak >= 0.1)",
                "0.39-1.00 per step",
                ", ".join(fmt(peak(t, "goal state")) for t in range(n_steps)),
                said["goal"],
            ],
            [
                "at step 5, recent history (3, 4) outweighs old history (1, 2)",
                "0.45, 0.33 vs <= 0.15",
                "–" if recent is None else ("yes" if recent else "no"),
                said["recent"],
            ],
            [
                "the init state matters more at step 1 than at any stack step (2, 4, 6)",
                "0.60 at step 1, ~0 at stack steps",
                ", ".join(fmt(peak(t, "init state") or 0.0) for t in range(n_steps)),
                said["init"],
            ],
        ],
    )
    doc.image(directory / files.FLOW_PNG, "Flow from each chunk into the last token")


# History intervention -------------------------------------------------------------------------


def _argmax_row(impact: np.ndarray, t: int) -> int | None:
    """The history step whose unmasking helps step t (1-based) most; None if undefined."""
    if t - 1 >= impact.shape[0]:
        return None
    row = impact[t - 1, : t - 1]
    return None if row.size == 0 or np.isnan(row).all() else int(np.nanargmax(row)) + 1


def _masking_claims(impact: np.ndarray) -> Claims:
    n = impact.shape[0]
    stack = [t for t in (4, 6) if t <= n]
    pick = [t for t in (3, 5) if t <= n]
    return {
        "stack": all(_argmax_row(impact, t) == t - 1 for t in stack) if stack else None,
        "pick": all(_argmax_row(impact, t) == t - 2 for t in pick) if pick else None,
    }


def _masking_resampled(data: dict, w: np.ndarray) -> Claims:
    return _masking_claims(weighted_nanmean(data["impact"], w))


def masking_section(doc: Document, result: dict, directory: Path) -> None:
    impact = _array(result["impact"])  # [steps][groups]
    n_steps = impact.shape[0]

    def cell(t: int, i: int) -> float | None:  # 1-based step t, visible step i
        if t - 1 >= n_steps or i - 1 >= impact.shape[1]:
            return None
        v = impact[t - 1, i - 1]
        return None if np.isnan(v) else float(v)

    rows = []
    for t in range(2, n_steps + 1):
        ours = " ".join(fmt(cell(t, i)) for i in range(1, t))
        theirs = " ".join(f"{v:.2f}" for v in paper.IMPACT_LLAMA.get(t, {}).values())
        rows.append([f"step {t}", theirs or "–", ours])
    doc.heading("History intervention (§6.2)")
    n = _sample_size(doc, result["n_examples"])
    doc.paragraph(
        "Keys of the history's colour tokens zeroed in every layer, then one history step "
        "unmasked at a time; impact = change in p(gold answer). "
        f"{result['n_examples']} problems."
    )
    doc.table(["step predicted", "paper: impact of steps 1..t-1", "this run"], rows)
    said = verdicts(
        n,
        _masking_claims(impact),
        load_per_example(directory, "masking"),
        _masking_resampled,
    )
    stack = [t for t in (4, 6) if t <= n_steps]
    pick = [t for t in (3, 5) if t <= n_steps]
    doc.table(
        ["claim", "paper", "this run", "verdict"],
        [
            [
                "stack steps (4, 6) depend most on their own pick-up (t-1)",
                "yes",
                ", ".join(f"step {t}: step {_argmax_row(impact, t)}" for t in stack) or "–",
                said["stack"],
            ],
            [
                "pick-up steps (3, 5) depend most on the previous pick-up (t-2)",
                "yes",
                ", ".join(f"step {t}: step {_argmax_row(impact, t)}" for t in pick) or "–",
                said["pick"],
            ],
        ],
    )
    doc.image(directory / files.MASKING_PNG, "Impact of unmasking one history step")


# Probes ---------------------------------------------------------------------------------------


def probes_section(doc: Document, result: dict, directory: Path) -> None:
    layers = result["layers"]
    doc.heading("Probes (§6.1)")
    # a probe is scored on the test split only: that is the sample its claims rest on
    n = _sample_size(doc, result["n_test"], "test problems for the probes")
    doc.paragraph(
        f"Linear (softmax(Wx)) and one-hidden-layer MLP probes on {result['representation']}, "
        f"trained on {result['n_train']} problems and scored on {result['n_test']} "
        "(intervals: 95% bootstrap over test problems). Every number sits beside its "
        "majority-class baseline and a control probe trained on shuffled labels."
    )
    state = result.get("state_linear")
    if state:
        positions = state["positions"]
        doc.heading("Current block states (weighted F1, linear)", 3)
        header = ["position", *(f"L{layer}" for layer in layers), "baseline", "control"]
        rows = []
        for name, stats in positions.items():
            rows.append([name, *stats["value"], min(stats["baseline"]), max(stats["control"])])
            theirs = paper.STATE_PROBE_LLAMA.get(name)
            if theirs:
                rows.append([f"paper {name}", *theirs[: len(layers)], "–", "–"])
        doc.table(header, rows)
        deep = {n: max(s["value"]) for n, s in positions.items()}
        shallow = {n: s["value"][0] for n, s in positions.items()}
        early, late = _pair(deep, ("s2-act", "s2-col"), ("s6-act", "s6-col"))
        lin = _mean_best(result.get("state_linear"))
        mlp = _mean_best(result.get("state_mlp"))
        doc.table(
            ["claim", "paper", "this run", "verdict"],
            [
                [
                    "accuracy rises with depth (first vs best layer, mean over positions)",
                    "yes",
                    f"{_mean(shallow.values()):.2f} -> {_mean(deep.values()):.2f}",
                    verdict(n, _mean(deep.values()) > _mean(shallow.values()), None),
                ],
                [
                    "step 6 states are harder than step 2 (best layer)",
                    "0.71-0.76 vs 0.97",
                    "–" if early is None else f"{late:.2f} vs {early:.2f}",
                    verdict(n, None if early is None else late < early, None),
                ],
                [
                    "linear ≈ nonlinear (mean best F1; within 0.05)",
                    "within ~0.03",
                    "–" if mlp is None else f"{lin:.2f} vs {mlp:.2f}",
                    verdict(n, None if mlp is None else abs(lin - mlp) <= 0.05, None),
                ],
            ],
        )
        doc.image(
            directory / files.probe_png("state", "linear"), "Block-state probes by layer (linear)"
        )
    matrix = result.get("future_matrix_linear")
    if matrix:
        doc.heading("Future decisions (accuracy, linear, max over layers)", 3)
        steps = sorted(int(r) for r in matrix["probe"])
        rows = []
        for r in steps:
            ours = matrix["probe"][str(r)]
            base = matrix["baseline"][str(r)]
            rows.append(
                [
                    f"step {r}",
                    " ".join(f"{ours[c]:.2f}" for c in sorted(ours, key=int)),
                    " ".join(f"{base[c]:.2f}" for c in sorted(base, key=int)),
                    " ".join(f"{v:.2f}" for v in paper.FUTURE_MATRIX_LLAMA.get(r, {}).values()),
                ]
            )
        doc.table(
            ["future step", "this run (from steps 1..r-1)", "majority baseline", "paper"], rows
        )
        far = matrix["probe"].get(str(max(steps)), {}).get("1")
        far_base = matrix["baseline"].get(str(max(steps)), {}).get("1")
        if far is not None:
            doc.paragraph(
                f"The last step decoded from step 1's position: {far:.2f} (majority baseline "
                f"{far_base:.2f}; paper: step 6 from step 1, 0.51, no baseline reported)."
            )
        doc.paragraph(
            "Each cell is the best of the layers and of the step's two positions (action and "
            f"colour), as in the paper; on {result['n_test']} test problems that maximum is an "
            "optimistic estimate, so read it against its baseline."
        )
        figure = plot_future_matrix(
            matrix,
            paper.FUTURE_MATRIX_LLAMA,
            directory / files.FUTURE_MATRIX_PNG,
            "Future decisions: accuracy (majority baseline), max over layers",
        )
        doc.image(figure, "Current step x future step, beside the paper's")
        doc.image(
            directory / files.probe_png("future", "linear"), "Future-decision probes by layer"
        )


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _pair(best: dict, early: tuple, late: tuple) -> tuple[float | None, float | None]:
    e = [best[n] for n in early if n in best]
    lt = [best[n] for n in late if n in best]
    if not e or not lt:
        return None, None
    return _mean(e), _mean(lt)


def _mean_best(summary: dict | None) -> float | None:
    if not summary:
        return None
    return _mean(max(s["value"]) for s in summary["positions"].values())
