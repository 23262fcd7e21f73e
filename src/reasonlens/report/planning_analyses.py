"""Report sections for the planning analyses: this run beside the paper, claim by claim.

Each section states the paper's claim, measures the same thing here, and says whether the two
agree. Comparisons use relative depth (layer / layers), since the models differ in depth.
"""

from __future__ import annotations

import math
from pathlib import Path

from reasonlens.report import paper_planning as paper
from reasonlens.report.document import Document, fmt

# Below this many analysed problems a verdict would be noise: the report says so instead.
MIN_PROBLEMS = 30


def _agree(n: int, ours: bool | None, theirs: bool = True) -> str:
    if ours is None:
        return "not measurable here"
    if n < MIN_PROBLEMS:
        return f"inconclusive (n={n})"
    return "agrees" if ours == theirs else "differs"


def _sample_size(doc: Document, n: int) -> int:
    """Say plainly when n is too small to judge; returns n for the verdicts."""
    if n < MIN_PROBLEMS:
        doc.paragraph(
            f"**Only {n} problems**: too few to support or refute the paper's claims, so no "
            "verdict is given; the numbers show what the analysis computes. A stronger model "
            "(more fine-tuning, `--preset paper` or `full` on a GPU) gives a larger analysis set."
        )
    return n


def _nan_max(values: list) -> float | None:
    clean = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return max(clean) if clean else None


def extraction_section(doc: Document, result: dict, directory: Path) -> None:
    raw = result["raw"]
    comps = raw["components"]
    mean = raw["mean"]  # [layers][components]
    std = raw["std"]
    layers = len(mean)
    a, m, r = (comps.index(c) for c in ("attn_out", "mlp_out", "resid_post"))
    upper = range(layers // 2, layers)
    attn_upper = sum(mean[i][a] for i in upper) / len(upper)
    mlp_upper = sum(mean[i][m] for i in upper) / len(upper)
    settle = next((i for i in range(layers) if mean[i][r] >= 0.5), None)
    p_settle = next(i for i, v in enumerate(paper.EXTRACTION_LLAMA["resid_post"]) if v >= 0.5)
    attn_std = sum(std[i][a] for i in upper) / len(upper)
    mlp_std = sum(std[i][m] for i in upper) / len(upper)
    p_attn = sum(paper.EXTRACTION_LLAMA["attn_out"][16:]) / 16
    p_mlp = sum(paper.EXTRACTION_LLAMA["mlp_out"][16:]) / 16
    doc.heading("Extraction rate (§5.1)")
    n = _sample_size(doc, result["n_examples"])
    doc.paragraph(
        f"Share of problems where argmax(E·h) equals the model's own answer at the last token "
        f"before each blank; {raw['projection']}. Mean over the plan's steps; the band is the "
        f"spread over steps. {result['n_examples']} problems."
    )
    doc.table(
        ["claim", "paper (Llama-2-7b)", "this run", "verdict"],
        [
            [
                "MHSA extracts the answer more than MLP (mean rate, upper half of layers)",
                f"{p_attn:.2f} vs {p_mlp:.2f}",
                f"{attn_upper:.2f} vs {mlp_upper:.2f}",
                _agree(n, attn_upper > mlp_upper),
            ],
            [
                "the layer output settles on the answer in the middle layers "
                "(first layer with rate >= 0.5, relative depth)",
                f"layer {p_settle} of 32 ({p_settle / 32:.2f})",
                "never"
                if settle is None
                else f"layer {settle} of {layers} ({settle / layers:.2f})",
                _agree(n, settle is not None and 0.3 <= settle / layers <= 0.8),
            ],
            [
                "MHSA varies less across steps than MLP (mean spread, upper half)",
                "yes",
                f"{attn_std:.3f} vs {mlp_std:.3f}",
                _agree(n, attn_std < mlp_std),
            ],
            [
                "last layer's output without the final norm (not 1.0 because no norm)",
                f"{paper.EXTRACTION_LLAMA['resid_post'][-1]:.2f}",
                f"{mean[-1][r]:.2f}",
                "compare",
            ],
        ],
    )
    doc.image(directory / "extraction_rate.png", "Extraction rate by layer (no final norm)")
    doc.image(
        directory / "extraction_rate_logit_lens.png",
        "Variant: logit lens with the final norm applied (not the paper's choice)",
    )


def flow_section(doc: Document, result: dict, directory: Path) -> None:
    chunks = result["chunks"]
    norm = result["normalized"]  # [steps][chunks][layers]
    n_steps = len(norm)

    def peak(step: int, chunk: str) -> float | None:
        if chunk not in chunks:
            return None
        return _nan_max(norm[step][chunks.index(chunk)])

    goal = [peak(t, "goal state") for t in range(n_steps)]
    goal_every = all(g is not None and g >= 0.1 for g in goal)
    recent = None
    if n_steps >= 5:
        old = _nan_max([peak(4, "history 1"), peak(4, "history 2")])
        new = _nan_max([peak(4, "history 3"), peak(4, "history 4")])
        recent = None if old is None or new is None else new > old
    init = [peak(t, "init state") or 0.0 for t in range(n_steps)]
    init_first = n_steps > 1 and init[0] >= max(init[1:])
    doc.heading("Information flow (§5.2)")
    n = _sample_size(doc, result["n_examples"])
    doc.paragraph(
        "Attention × gradient saliency |Σ_heads A ⊙ ∂L/∂A| (Wang et al. 2023), L the "
        "cross-entropy of the gold answer at the last token, averaged over each chunk's tokens; "
        f"each step's map is scaled to a maximum of 1. {result['n_examples']} problems."
    )
    doc.table(
        ["claim", "paper (Llama-2-7b)", "this run", "verdict"],
        [
            [
                "the goal state receives flow at every step (peak >= 0.1)",
                "0.39-1.00 per step",
                ", ".join(fmt(g) for g in goal),
                _agree(n, goal_every),
            ],
            [
                "at step 5, recent history (3, 4) outweighs old history (1, 2)",
                "0.45, 0.33 vs <= 0.15",
                "–" if recent is None else ("yes" if recent else "no"),
                _agree(n, recent),
            ],
            [
                "the init state matters most at step 1",
                "0.60 at step 1, ~0 at stack steps",
                ", ".join(fmt(v) for v in init),
                _agree(n, init_first),
            ],
        ],
    )
    doc.image(directory / "information_flow.png", "Flow from each chunk into the last token")


def masking_section(doc: Document, result: dict, directory: Path) -> None:
    impact = result["impact"]  # [steps][groups]
    n = len(impact)

    def cell(t: int, i: int) -> float | None:  # 1-based step t, visible step i
        v = impact[t - 1][i - 1] if t - 1 < n and i - 1 < len(impact[t - 1]) else None
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    def argmax_row(t: int) -> int | None:
        row = [(cell(t, i), i) for i in range(1, t)]
        row = [(v, i) for v, i in row if v is not None]
        return max(row)[1] if row else None

    stack_own = [t for t in (4, 6) if t <= n]
    pick_prev = [t for t in (3, 5) if t <= n]
    stack_ok = all(argmax_row(t) == t - 1 for t in stack_own) if stack_own else None
    pick_ok = all(argmax_row(t) == t - 2 for t in pick_prev) if pick_prev else None
    rows = []
    for t in range(2, n + 1):
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
    doc.table(
        ["claim", "paper", "this run", "verdict"],
        [
            [
                "stack steps (4, 6) depend most on their own pick-up (t-1)",
                "yes",
                ", ".join(f"step {t}: step {argmax_row(t)}" for t in stack_own) or "–",
                _agree(n, stack_ok),
            ],
            [
                "pick-up steps (3, 5) depend most on the previous pick-up (t-2)",
                "yes",
                ", ".join(f"step {t}: step {argmax_row(t)}" for t in pick_prev) or "–",
                _agree(n, pick_ok),
            ],
        ],
    )
    doc.image(directory / "history_intervention.png", "Impact of unmasking one history step")


def probes_section(doc: Document, result: dict, directory: Path) -> None:
    layers = result["layers"]
    doc.heading("Probes (§6.1)")
    n = _sample_size(doc, result["n_examples"])
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
                    _agree(n, _mean(deep.values()) > _mean(shallow.values())),
                ],
                [
                    "step 6 states are harder than step 2 (best layer)",
                    "0.71-0.76 vs 0.97",
                    "–" if early is None else f"{late:.2f} vs {early:.2f}",
                    _agree(n, None if early is None else late < early),
                ],
                [
                    "linear ≈ nonlinear (mean best F1; within 0.05)",
                    "within ~0.03",
                    "–" if mlp is None else f"{lin:.2f} vs {mlp:.2f}",
                    _agree(n, None if mlp is None else abs(lin - mlp) <= 0.05),
                ],
            ],
        )
        doc.image(directory / "probe_state_linear.png", "Block-state probes by layer (linear)")
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
        doc.image(directory / "probe_future_linear.png", "Future-decision probes by layer")


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
