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
from reasonlens.report.builder import Claim, Figure, Section, Table
from reasonlens.report.builder import Claims as ClaimTable
from reasonlens.report.claims import (
    MIN_PROBLEMS,
    Claims,
    Control,
    Degenerate,
    verdicts,
    weighted_nanmean,
)
from reasonlens.report.document import fmt
from reasonlens.report.verdicts import Verdict
from reasonlens.studies.planning import files, paper
from reasonlens.studies.planning.future_matrix import plot_future_matrix


def _sample_size(n: int, what: str = "problems") -> list[str]:
    """Say plainly when n is too small to judge."""
    if n >= MIN_PROBLEMS:
        return []
    return [
        f"**Only {n} {what}**: too few to support or refute the paper's claims, so no "
        "verdict is given; the numbers show what the analysis computes. A model that solves "
        "more test problems (fine-tuned on more data: `--preset cpu` on a CPU, `paper` or "
        "`full` on a GPU) gives a larger analysis set."
    ]


def _array(values) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # JSON null (NaN) -> nan


def _nan_peak(values: np.ndarray) -> float | None:
    return None if np.isnan(values).all() else float(np.nanmax(values))


# Claims beside their control ------------------------------------------------------------------


def _claims(*rows: tuple[str, str, str, str, Verdict]) -> ClaimTable:
    """Claims beside the paper (Llama-2-7b) and the base model before fine-tuning."""
    return ClaimTable(
        [
            Claim(text, value, said, control, reference)
            for text, reference, value, control, said in rows
        ],
        reference="paper (Llama-2-7b)",
        control="before fine-tuning",
    )


def _judge(
    n: int,
    observed: Claims,
    directory: Path,
    name: str,
    claims,
    control: dict | None,
    control_observed: Claims | None,
    view=None,
) -> dict[str, Verdict]:
    """Verdicts on `observed`, each learned claim checked against the base model's values;
    `view` picks what the claims read from a per-problem file (the same for both models)."""

    def load(where: Path) -> dict | None:
        data = load_per_example(where, name)
        return data if data is None or view is None else view(data)

    checked = None
    if control is not None and control_observed is not None:
        checked = Control(control_observed, load(directory / files.CONTROL))
    return verdicts(n, observed, load(directory), claims, control=checked)


def _value(value) -> str:
    """A claim's observed value as a cell: yes / no / not measurable / –."""
    if isinstance(value, Degenerate):
        return "not measurable"
    return "–" if value is None else ("yes" if value else "no")


# Extraction rate ------------------------------------------------------------------------------

# the paper's layer output first reaches 0.5 between layers 15 and 20 of 32 (spec §3)
SETTLE_WINDOW = (15 / 32, 20 / 32)
RARE = 0.01  # a component extracting in under 1% of readouts has nothing to compare


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
    both_rare = s["attn_upper"] < RARE and s["mlp_upper"] < RARE
    one_rare = min(s["attn_upper"], s["mlp_upper"]) < RARE
    low, high = SETTLE_WINDOW
    return {
        "mhsa": Degenerate("MHSA and MLP both extract in under 1% of readouts")
        if both_rare
        else s["attn_upper"] > s["mlp_upper"],
        "settle": s["settle"] is not None and low <= s["settle"] / s["layers"] <= high,
        "steady": Degenerate("a component that almost never extracts has no spread to compare")
        if one_rare
        else s["attn_std"] < s["mlp_std"],
    }


def _extraction_resampled(comps: list[str]):
    from reasonlens.analyses.extraction import weighted_rates

    def claims(data: dict, w: np.ndarray) -> Claims:
        rates = weighted_rates(data["hits"], data["valid"], w)
        return _extraction_claims(_extraction_stats(rates.mean(0), rates.std(0), comps))

    return claims


def _judged_projection(result: dict) -> tuple[str, str | None]:
    """The projection the claims are judged on: the paper's raw one, unless it is degenerate
    on this model (its last layer's output extracts far less than the logit lens's, which is
    1.0 by construction); then the logit lens, with the reason and the outlier dimensions."""
    raw, lens = result["raw"], result["logit_lens"]
    r = raw["components"].index("resid_post")
    raw_last, lens_last = raw["mean"][-1][r], lens["mean"][-1][r]
    if raw_last is None or lens_last is None or not (lens_last >= 0.5 and raw_last < lens_last / 2):
        return "raw", None
    dims = raw.get("outlier_dims") or []
    named = ", ".join(
        f"dimension {d['dim']} (mean |h| {d['ratio_to_median']}x the median, final-norm gain "
        f"{d['gain']})"
        for d in dims[:3]
    )
    return "logit_lens", (
        f"**The raw projection is degenerate on this model**: its last layer's output "
        f"extracts the answer in {raw_last:.2f} of readouts, against {lens_last:.2f} with the "
        "final norm"
        + (f", because the residual stream is dominated by {named}" if named else "")
        + ". That failure has nothing to do with planning, so the claims below are judged on "
        "the projection through the final norm's gain (for an RMSNorm its events are exactly "
        "the logit lens's: the normalisation is a positive scalar). The raw curves are shown "
        "too."
    )


def _lens_events(data: dict) -> dict:
    """The per-problem extraction events of the logit lens, in place of the raw ones."""
    return {**data, "hits": data["lens_hits"]}


def _extraction_view(result: dict, variant: str) -> tuple[dict, dict]:
    stats_of = result[variant]
    mean, std = _array(stats_of["mean"]), _array(stats_of["std"])
    return stats_of, _extraction_stats(mean, std, stats_of["components"])


def extraction_section(result: dict, directory: Path, control: dict | None = None) -> Section:
    variant, degenerate = _judged_projection(result)
    judged, stats = _extraction_view(result, variant)
    comps = judged["components"]
    c_stats = _extraction_view(control, variant)[1] if control else None
    p_settle = next(i for i, v in enumerate(paper.EXTRACTION_LLAMA["resid_post"]) if v >= 0.5)
    p_attn = sum(paper.EXTRACTION_LLAMA["attn_out"][16:]) / 16
    p_mlp = sum(paper.EXTRACTION_LLAMA["mlp_out"][16:]) / 16
    n = result["n_examples"]
    blocks: list = _sample_size(n)
    blocks.append(
        f"Share of problems where argmax(E·h) equals the model's own answer at the last token "
        f"before each blank. Mean over the plan's steps; the band is the spread over steps. "
        f"{result['n_examples']} problems. Judged on: {judged['projection']}."
    )
    if degenerate:
        blocks.append(degenerate)
    observed = _extraction_claims(stats)
    c_observed = _extraction_claims(c_stats) if c_stats else None
    said = _judge(
        n,
        observed,
        directory,
        "extraction",
        _extraction_resampled(comps),
        control,
        c_observed,
        view=_lens_events if variant == "logit_lens" else None,
    )

    def pair(s: dict | None, a: str, b: str, digits: int = 2) -> str:
        return "–" if s is None else f"{s[a]:.{digits}f} vs {s[b]:.{digits}f}"

    def where(s: dict | None) -> str:
        if s is None:
            return "–"
        if s["settle"] is None:
            return "never"
        return f"layer {s['settle']} of {s['layers']} ({s['settle'] / s['layers']:.2f})"

    low, high = SETTLE_WINDOW
    raw_stats = _extraction_view(result, "raw")[1]
    blocks += [
        _claims(
            (
                "MHSA extracts the answer more than MLP (mean rate, upper half of layers)",
                f"{p_attn:.2f} vs {p_mlp:.2f}",
                pair(stats, "attn_upper", "mlp_upper"),
                pair(c_stats, "attn_upper", "mlp_upper"),
                said["mhsa"],
            ),
            (
                "the layer output settles on the answer in the middle layers (first layer with "
                f"rate >= 0.5 at relative depth {low:.3f}-{high:.3f}, the paper's layers 15-20)",
                f"layer {p_settle} of 32 ({p_settle / 32:.2f})",
                where(stats),
                where(c_stats),
                said["settle"],
            ),
            (
                "MHSA varies less across steps than MLP (mean spread, upper half)",
                "yes",
                pair(stats, "attn_std", "mlp_std", 3),
                pair(c_stats, "attn_std", "mlp_std", 3),
                said["steady"],
            ),
        ),
        f"The raw projection's last layer: {raw_stats['last']:.2f} (paper, no norm: "
        f"{paper.EXTRACTION_LLAMA['resid_post'][-1]:.2f}).",
        Figure(str(directory / files.EXTRACTION_PNG), "Extraction rate by layer (no final norm)"),
        Figure(
            str(directory / files.EXTRACTION_LENS_PNG),
            "Variant: logit lens with the final norm applied (not the paper's choice)",
        ),
    ]
    return Section("Extraction rate (§5.1)", blocks)


# Information flow -----------------------------------------------------------------------------

# the paper's goal-state read-out (spec §4): peak flow at the steps it gives
PAPER_GOAL_FLOW = {1: 0.63, 3: 0.53, 5: 0.39, 6: 1.00}
GOAL_FLOW = min(PAPER_GOAL_FLOW.values())  # the lowest the paper shows: 0.39


def _flow_peaks(norm: np.ndarray, chunks: list[str]):
    def peak(step: int, chunk: str) -> float | None:
        if chunk not in chunks or step >= norm.shape[0]:
            return None
        return _nan_peak(norm[step, chunks.index(chunk)])

    return peak


def _flow_claims(norm: np.ndarray, chunks: list[str]) -> Claims:
    peak = _flow_peaks(norm, chunks)
    n_steps = norm.shape[0]
    goal = [peak(t - 1, "goal state") for t in PAPER_GOAL_FLOW if t <= n_steps]
    recent = None
    if n_steps >= 5:
        old = [v for v in (peak(4, "history 1"), peak(4, "history 2")) if v is not None]
        new = [v for v in (peak(4, "history 3"), peak(4, "history 4")) if v is not None]
        recent = None if not old or not new else max(new) > max(old)
    init = [peak(t, "init state") or 0.0 for t in range(n_steps)]
    stacks = [init[t] for t in range(1, n_steps, 2)]  # steps 2, 4, 6 (0-based 1, 3, 5)
    return {
        "goal": bool(goal) and all(g is not None and g >= GOAL_FLOW for g in goal),
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


def flow_section(result: dict, directory: Path, control: dict | None = None) -> Section:
    chunks = result["chunks"]
    norm = _array(result["normalized"])  # [steps][chunks][layers]
    c_norm = _array(control["normalized"]) if control else None
    n_steps = norm.shape[0]
    observed = _flow_claims(norm, chunks)
    c_observed = _flow_claims(c_norm, control["chunks"]) if control else None
    n = result["n_examples"]
    intro = _sample_size(n) + [
        "Attention × gradient saliency |Σ_heads A ⊙ ∂L/∂A| (Wang et al. 2023), L the "
        "cross-entropy of the gold answer at the last token, averaged over each chunk's tokens; "
        f"each step's map is scaled to a maximum of 1. {result['n_examples']} problems."
    ]
    said = _judge(n, observed, directory, "flow", _flow_resampled(chunks), control, c_observed)
    steps = [t for t in PAPER_GOAL_FLOW if t <= n_steps]

    def goal(values) -> str:
        if values is None:
            return "–"
        peak = _flow_peaks(values, chunks)
        return ", ".join(f"{t}: {fmt(peak(t - 1, 'goal state'))}" for t in steps) or "–"

    def init(values) -> str:
        if values is None:
            return "–"
        peak = _flow_peaks(values, chunks)
        return ", ".join(fmt(peak(t, "init state") or 0.0) for t in range(values.shape[0]))

    claims = _claims(
        (
            f"the goal state receives flow at every step (peak >= {GOAL_FLOW:.2f}, the "
            "lowest the paper shows, at the steps it gives)",
            ", ".join(f"{t}: {v:.2f}" for t, v in PAPER_GOAL_FLOW.items()),
            goal(norm),
            goal(c_norm),
            said["goal"],
        ),
        (
            "at step 5, recent history (3, 4) outweighs old history (1, 2)",
            "0.45, 0.33 vs <= 0.15",
            _value(observed["recent"]),
            "–" if c_observed is None else _value(c_observed["recent"]),
            said["recent"],
        ),
        (
            "the init state matters more at step 1 than at any stack step (2, 4, 6)",
            "0.60 at step 1, ~0 at stack steps",
            init(norm),
            init(c_norm),
            said["init"],
        ),
    )
    figure = Figure(str(directory / files.FLOW_PNG), "Flow from each chunk into the last token")
    return Section("Information flow (§5.2)", [*intro, claims, figure])


# History intervention -------------------------------------------------------------------------

FLAT = 0.01  # unmasking no step moves p(gold) by more than this: nothing to rank


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
    if np.isnan(impact).all() or np.nanmax(np.abs(impact)) < FLAT:
        flat = Degenerate(f"unmasking any one step changes p(gold) by under {FLAT}")
        return {"stack": flat if stack else None, "pick": flat if pick else None}
    return {
        "stack": all(_argmax_row(impact, t) == t - 1 for t in stack) if stack else None,
        "pick": all(_argmax_row(impact, t) == t - 2 for t in pick) if pick else None,
    }


def _masking_resampled(data: dict, w: np.ndarray) -> Claims:
    return _masking_claims(weighted_nanmean(data["impact"], w))


HOW = {
    "masking": "keys of the history's colour tokens zeroed in every layer (the paper's soft "
    "mask: a zero key still gets weight exp(0), and its value is still read)",
    "knockout": "attention to the history's colour tokens cut before the softmax in every "
    "layer (Geva et al. 2023: exactly zero weight)",
}


def masking_section(
    result: dict, directory: Path, control: dict | None = None, name: str = "masking"
) -> Section:
    impact = _array(result["impact"])  # [steps][groups]
    c_impact = _array(control["impact"]) if control else None
    n_steps = impact.shape[0]

    def cells(values: np.ndarray | None, t: int) -> str:  # 1-based step t, visible 1..t-1
        if values is None or t - 1 >= values.shape[0]:
            return "–"
        row = values[t - 1, : t - 1]
        return " ".join(fmt(None if np.isnan(v) else float(v)) for v in row)

    rows = []
    for t in range(2, n_steps + 1):
        theirs = " ".join(f"{v:.2f}" for v in paper.IMPACT_LLAMA.get(t, {}).values())
        rows.append([f"step {t}", theirs or "–", cells(impact, t), cells(c_impact, t)])
    title = "History intervention (§6.2)" if name == "masking" else "History knockout"
    n = result["n_examples"]
    blocks: list = _sample_size(n)
    blocks += [
        f"{HOW[name][0].upper()}{HOW[name][1:]}, then one history step made visible at a time; "
        "impact = "
        f"change in p(gold answer). {result['n_examples']} problems.",
        Table(
            ["step predicted", "paper: impact of steps 1..t-1", "fine-tuned", "before fine-tuning"],
            rows,
        ),
    ]
    mass = result.get("history_mass")
    if mass:
        blocks.append(
            "Attention the readout still pays to the hidden history's colour tokens (summed over "
            f"them, mean over heads, layers and steps, first {mass['n_examples']} problems): "
            f"{mass['hidden']:.3f} with the history hidden, against {mass['unmasked']:.3f} "
            "with nothing hidden."
        )
    observed = _masking_claims(impact)
    c_observed = _masking_claims(c_impact) if c_impact is not None else None
    said = _judge(n, observed, directory, name, _masking_resampled, control, c_observed)
    stack = [t for t in (4, 6) if t <= n_steps]
    pick = [t for t in (3, 5) if t <= n_steps]

    def argmax(values: np.ndarray | None, steps: list[int]) -> str:
        if values is None:
            return "–"
        return ", ".join(f"step {t}: step {_argmax_row(values, t)}" for t in steps) or "–"

    figure = files.MASKING_PNG if name == "masking" else files.KNOCKOUT_PNG
    blocks += [
        _claims(
            (
                "stack steps (4, 6) depend most on their own pick-up (t-1)",
                "yes",
                argmax(impact, stack),
                argmax(c_impact, stack),
                said["stack"],
            ),
            (
                "pick-up steps (3, 5) depend most on the previous pick-up (t-2)",
                "yes",
                argmax(impact, pick),
                argmax(c_impact, pick),
                said["pick"],
            ),
        ),
        Figure(str(directory / figure), "Impact of unmasking one history step"),
    ]
    return Section(title, blocks)


def knockout_section(result: dict, directory: Path, control: dict | None = None) -> Section:
    return masking_section(result, directory, control, name="knockout")


# Probes ---------------------------------------------------------------------------------------


def probes_section(result: dict, directory: Path, control: None = None) -> Section:
    layers = result["layers"]
    mid = len(layers) // 2  # declared before looking: the middle probed layer
    # a probe is scored on the test split only: that is the sample its claims rest on
    n = result["n_test"]
    blocks: list = _sample_size(n, "test problems for the probes")
    blocks.append(
        f"Linear (softmax(Wx)) probes at {_layer_list(layers)} and one-hidden-layer MLP "
        f"probes at {_layer_list(result.get('state_mlp', {}).get('layers', layers))} on "
        f"{result['representation']}, "
        + (
            f"cross-fitted over {result['cross_fit_folds']} folds: every one of the "
            f"{result['n_test']} problems is scored once, by probes trained on the other "
            f"{result['n_train']} "
            if "cross_fit_folds" in result
            else f"trained on {result['n_train']} problems and scored on {result['n_test']} "
        )
        + "(intervals: 95% bootstrap over the scored problems). Every number sits beside its "
        "majority-class baseline and a control probe trained on shuffled labels."
    )
    state = result.get("state_linear")
    if state:
        positions = state["positions"]
        header = ["position", *(f"L{layer}" for layer in layers), "baseline", "control"]
        rows = []
        for name, stats in positions.items():
            rows.append([name, *stats["value"], min(stats["baseline"]), max(stats["control"])])
            theirs = paper.STATE_PROBE_LLAMA.get(name)
            if theirs:
                rows.append([f"paper {name}", *theirs[: len(layers)], "–", "–"])
        deep = {n: s["value"][mid] for n, s in positions.items()}
        shallow = {n: s["value"][0] for n, s in positions.items()}
        early, late = _pair(deep, ("s2-act", "s2-col"), ("s6-act", "s6-col"))
        lin = _mean_at(result.get("state_linear"), layers[mid], layers)
        mlp = _mean_at(result.get("state_mlp"), layers[mid], layers)
        base = _mean_at(result.get("state_linear"), layers[mid], layers, "baseline")
        similar: bool | Degenerate | None = None if mlp is None else abs(lin - mlp) <= 0.05
        if mlp is not None and max(lin, mlp) <= base + 0.05:
            similar = Degenerate("both probes are within 0.05 of the majority baseline")
        data = load_per_example(directory, "probes")
        n_classes = len(result["palette"]) + 2  # the palette, sky and table
        resampled = _probe_resampled(list(positions), n_classes, base)
        observed = resampled(data, np.ones(n)) if data is not None else None
        if observed is None:  # a run written before per-problem predictions were kept
            observed = {"rises": _mean(deep.values()) > _mean(shallow.values())}
            observed["harder"] = None if early is None else late < early
            observed["similar"] = similar
        if mid == 0:
            observed["rises"] = Degenerate("only one layer was probed")
        control = None
        if data is not None and "state_control" in data:
            shuffled = {**data, "state_linear": data["state_control"]}
            control = Control(resampled(shuffled, np.ones(n)), shuffled, "shuffled labels")
        said = verdicts(n, observed, data, resampled, control=control, learned=frozenset({"rises"}))
        claims = [
            Claim(
                f"accuracy rises with depth (layer {layers[0]} vs layer {layers[mid]}, "
                "the middle probed layer, declared in advance; mean over positions)",
                f"{_mean(shallow.values()):.2f} -> {_mean(deep.values()):.2f}",
                said["rises"],
                reference="yes",
            ),
            Claim(
                f"step 6 states are harder than step 2 (layer {layers[mid]})",
                "–" if early is None else f"{late:.2f} vs {early:.2f}",
                said["harder"],
                reference="0.71-0.76 vs 0.97",
            ),
            Claim(
                f"linear ≈ nonlinear (mean F1 at layer {layers[mid]}; within 0.05, and "
                "above the majority baseline)",
                "–" if mlp is None else f"{lin:.2f} vs {mlp:.2f} (baseline {base:.2f})",
                said["similar"],
                reference="within ~0.03",
            ),
        ]
        figure = directory / files.probe_png("state", "linear")
        blocks.append(
            Section(
                "Current block states (weighted F1, linear)",
                [
                    Table(header, rows),
                    ClaimTable(claims, reference="paper", control=None),
                    Figure(str(figure), "Block-state probes by layer (linear)"),
                ],
                level=3,
            )
        )
    matrix = result.get("future_matrix_linear")
    if matrix:
        steps = sorted(int(r) for r in matrix["probe"])
        rows = []
        shuffled = matrix.get("control", {})
        for r in steps:
            ours = matrix["probe"][str(r)]
            base = matrix["baseline"][str(r)]
            ctrl = shuffled.get(str(r), {})
            rows.append(
                [
                    f"step {r}",
                    " ".join(f"{ours[c]:.2f}" for c in sorted(ours, key=int)),
                    " ".join(f"{base[c]:.2f}" for c in sorted(base, key=int)),
                    " ".join(fmt(ctrl.get(c)) for c in sorted(ours, key=int)) or "–",
                    " ".join(f"{v:.2f}" for v in paper.FUTURE_MATRIX_LLAMA.get(r, {}).values()),
                ]
            )
        future: list = [
            Table(
                [
                    "future step",
                    "this run (from steps 1..r-1)",
                    "majority baseline",
                    "shuffled-label control (max, selected the same way)",
                    "paper",
                ],
                rows,
            )
        ]
        far = matrix["probe"].get(str(max(steps)), {}).get("1")
        far_base = matrix["baseline"].get(str(max(steps)), {}).get("1")
        if far is not None:
            future.append(
                f"The last step decoded from step 1's position: {far:.2f} (majority baseline "
                f"{far_base:.2f}; paper: step 6 from step 1, 0.51, no baseline reported)."
            )
        future.append(
            "Each cell is the best of the layers and of the step's two positions (action and "
            f"colour), as in the paper, scored on {result['n_test']} problems by cross-fitting. "
            "That maximum is an optimistic estimate; the shuffled-label control's maximum over the "
            "same layers and positions is just as optimistic, so a cell says something only where "
            "it clears its control."
        )
        figure = plot_future_matrix(
            matrix,
            paper.FUTURE_MATRIX_LLAMA,
            directory / files.FUTURE_MATRIX_PNG,
            "Future decisions: accuracy (majority baseline), max over layers",
        )
        future += [
            Figure(str(figure), "Current step x future step, beside the paper's"),
            Figure(
                str(directory / files.probe_png("future", "linear")),
                "Future-decision probes by layer",
            ),
        ]
        blocks.append(
            Section("Future decisions (accuracy, linear, max over layers)", future, level=3)
        )
    return Section("Probes (§6.1)", blocks)


def _probe_resampled(positions: list[str], n_classes: int, baseline: float | None):
    """The state-probe claims on resampled problems, from the kept out-of-fold predictions
    at the two declared layers (layer 0 and the middle one)."""
    import torch

    from reasonlens.analyses.probes.metrics import weighted_scores

    def f1(pred: np.ndarray, target: np.ndarray, w: np.ndarray) -> np.ndarray:
        """[S, L, H, N] predictions -> [S, L] weighted F1, mean over heads."""
        t = np.broadcast_to(target[:, None], pred.shape)
        flat = lambda a: torch.from_numpy(np.ascontiguousarray(a).reshape(-1, a.shape[-1]))  # noqa: E731
        score = weighted_scores(
            flat(pred).long(), flat(t).long(), n_classes, torch.from_numpy(w[None]).float()
        )["weighted_f1"][0]
        return np.nanmean(score.numpy().reshape(pred.shape[:3]), axis=2)

    def mean_of(values: np.ndarray, names: tuple[str, ...]) -> float | None:
        rows = [positions.index(x) for x in names if x in positions]
        return float(np.mean(values[rows])) if rows else None

    def claims(data: dict, w: np.ndarray) -> Claims:
        lin = f1(data["state_linear"], data["state_target"], w)
        out: Claims = {"rises": bool(lin[:, 1].mean() > lin[:, 0].mean())}
        early = mean_of(lin[:, 1], ("s2-act", "s2-col"))
        late = mean_of(lin[:, 1], ("s6-act", "s6-col"))
        out["harder"] = None if early is None or late is None else late < early
        if "state_mlp" in data:
            mlp = float(f1(data["state_mlp"], data["state_target"], w)[:, 1].mean())
            mid = float(lin[:, 1].mean())
            out["similar"] = abs(mid - mlp) <= 0.05
            if baseline is not None and max(mid, mlp) <= baseline + 0.05:
                out["similar"] = Degenerate("both probes are within 0.05 of the majority baseline")
        return out

    return claims


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _pair(best: dict, early: tuple, late: tuple) -> tuple[float | None, float | None]:
    e = [best[n] for n in early if n in best]
    lt = [best[n] for n in late if n in best]
    if not e or not lt:
        return None, None
    return _mean(e), _mean(lt)


def _layer_list(layers: list[int]) -> str:
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(map(str, layers))


def _mean_at(
    summary: dict | None, layer: int, layers: list[int], key: str = "value"
) -> float | None:
    """Mean over positions of `key` at `layer` (a summary names the layers it probed; one
    written before the MLP probes were limited to the declared layers probed `layers`)."""
    if not summary:
        return None
    index = summary.get("layers", layers).index(layer)
    return _mean(s[key][index] for s in summary["positions"].values())
