"""The planning study's report: this run's numbers beside the paper's, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonlens.report.claims import EXPLANATION, MIN_PROBLEMS, multiplicity
from reasonlens.report.document import Document, fmt
from reasonlens.report.provenance import provenance
from reasonlens.runs import RunDir
from reasonlens.studies.planning import files, paper

METRICS = ("S_step", "S_plan", "parsed", "legal", "goal_reached", "optimal", "exact_match")


def write_planning_summary(
    run: RunDir, results: dict[str, Any], analyses: dict[str, dict] | None = None
) -> None:
    """summary.md (short), report.md and report.html (everything), accuracy.png."""
    from reasonlens.studies.planning import report_analyses as sections

    evals = results["eval"]
    plot = plot_accuracy(evals, run.file("accuracy.png"))
    doc = Document(f"Planning study — {results['model']} ({results['preset']} preset)")
    _behaviour(doc, results, plot)
    analyses = analyses or {}
    if analyses:
        chosen = results.get("analysis_set", {})
        doc.heading("Analyses")
        doc.paragraph(
            f"Analysis set: {chosen.get('chosen')} test problems the fine-tuned model solves "
            f"under teacher forcing ({chosen.get('solved')} solved of "
            f"{chosen.get('scored', chosen.get('candidates'))} scored, in a seeded random "
            f"order until enough were solved, of {chosen.get('candidates')} candidates); the "
            "paper used 400 L3 6-block problems."
        )
        doc.paragraph(EXPLANATION)
    at = len(doc.blocks)  # the count of claims goes here, once the sections have made them
    directory = run.file("analyses")
    controls = analyses.get("control", {})
    tested = 0
    for name, section in (
        ("extraction", sections.extraction_section),
        ("flow", sections.flow_section),
        ("masking", sections.masking_section),
        ("knockout", sections.knockout_section),
        ("probes", sections.probes_section),
    ):
        if name in analyses:
            tested += section(doc, analyses[name], directory, controls.get(name))
    if tested:
        doc.blocks.insert(at, ("paragraph", multiplicity(tested)))
    if "horizons" in analyses and analyses["horizons"].get("future_matrix_linear"):
        _horizons(doc, analyses["horizons"], run.file("analyses") / files.HORIZONS_PNG)
    data = results["data"]
    provenance(
        doc,
        run,
        results,
        f"data: {data['train']} training and {data['test']} test problems "
        "(see `data/manifest.json`)",
        ["data", "train", "eval_base", "eval_finetuned"],
    )
    doc.write(run.path, "report")
    run.write_text("summary.md", _short_summary(results))


def _horizons(doc: Document, horizons: dict, figure: Path) -> None:
    from reasonlens.studies.planning.horizons import reach_by_distance

    matrices = horizons["future_matrix_linear"]
    sets = horizons.get("analysis_sets", {})
    reach = {level: reach_by_distance(m) for level, m in matrices.items()}
    ks = sorted({k for r in reach.values() for k in r})
    doc.heading("Beyond the paper: longer plans")
    doc.paragraph(
        "Future-decision probes (linear, max over layers) repeated for each plan length: "
        "accuracy of decoding the decision k steps ahead, averaged over the current step, "
        "beside the majority baseline (in the figure, dashed). Levels with fewer than 5 solved "
        f"problems are left out; a level whose probes are scored on fewer than {MIN_PROBLEMS} "
        "test problems gives a descriptive curve, not evidence. Cells: accuracy k steps ahead "
        "(majority baseline)."
    )
    rows = []
    for level, by_k in reach.items():
        counts = sets.get(level, {})
        rows.append(
            [
                level,
                f"{counts.get('chosen', '–')} of {counts.get('candidates', '–')}",
                counts.get("probe_test_problems", "–"),
                *(f"{by_k[k][0]:.2f} ({by_k[k][1]:.2f})" if k in by_k else "–" for k in ks),
            ]
        )
    doc.table(["level", "analysed (of candidates)", "test problems", *(f"k={k}" for k in ks)], rows)
    skipped = [lv for lv in sets if lv not in matrices]
    if skipped:
        doc.paragraph(
            "Too few solved problems to probe: "
            + ", ".join(f"{lv} ({sets[lv].get('solved')} solved)" for lv in skipped)
            + "."
        )
    doc.image(figure, "How far ahead the probes reach")


def _behaviour(doc: Document, results: dict, plot: Path) -> None:
    evals = results["eval"]
    doc.heading("Behaviour: base and fine-tuned, side by side")
    doc.paragraph(
        "Teacher-forced metrics as the paper defines them (S_step: each blank predicted with the "
        "gold history; S_plan: every blank of a plan right), and free greedy generation checked "
        "by the Blocksworld validator (parsed, legal, goal reached, optimal, exact match)."
    )
    doc.table(
        ["metric", "base", "fine-tuned"],
        [[m, evals["base"]["totals"].get(m), evals["finetuned"]["totals"].get(m)] for m in METRICS],
    )
    cells = _cells(evals["finetuned"])
    if cells:
        doc.paragraph("Fine-tuned model by level and number of blocks (S_plan / exact match):")
        doc.table(["level", "blocks", "n", "S_step", "S_plan", "exact match"], cells)
    l3_6 = _l3_6(evals["finetuned"])
    theirs = ", ".join(f"{k} {v:.2f}" for k, v in paper.S_PLAN_L3_6.items())
    if l3_6 is not None:
        doc.paragraph(
            f"S_plan on L3 with 6 blocks: **{fmt(l3_6)}** (paper, fine-tuned 7B models: {theirs})."
        )
    else:
        doc.paragraph(
            f"This preset has no L3 6-block test set, so the paper's headline figure ({theirs}) "
            "has no counterpart here; run `--preset paper` or `--preset full` for it."
        )
    doc.image(plot, "Accuracy by level, base vs fine-tuned")
    train = results.get("train", {})
    if train:
        doc.heading("Fine-tuning", 3)
        doc.table(
            ["quantity", "value"],
            [[k, v] for k, v in train.items() if not isinstance(v, dict | list)],
        )


def _cells(evaluation: dict) -> list[list]:
    rows = []
    for key, stats in evaluation.get("by_cell", {}).items():
        level, blocks = key.split("/")
        rows.append(
            [level, blocks, stats["n"], stats["S_step"], stats["S_plan"], stats["exact_match"]]
        )
    if rows:
        return rows
    return [
        [level, "all", s["n"], s["S_step"], s["S_plan"], s["exact_match"]]
        for level, s in evaluation.get("by_level", {}).items()
    ]


def _l3_6(evaluation: dict) -> float | None:
    cell = evaluation.get("by_cell", {}).get("L3/6")
    return None if cell is None else cell["S_plan"]


def plot_accuracy(evals: dict, path: Path) -> Path:
    from reasonlens.plots import new_figure, save_figure

    levels = list(evals["finetuned"].get("by_level", {}))
    metrics = ("S_step", "S_plan", "exact_match")
    fig = new_figure(figsize=(4 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), sharey=True)
    width = 0.38
    for ax, metric in zip(axes, metrics, strict=True):
        for shift, label in ((-width / 2, "base"), (width / 2, "finetuned")):
            values = [evals[label]["by_level"][lv].get(metric) or 0.0 for lv in levels]
            ax.bar([i + shift for i in range(len(levels))], values, width, label=label)
        ax.set_xticks(range(len(levels)), levels)
        ax.set_title(metric)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("rate")
    axes[0].legend(frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _short_summary(results: dict) -> str:
    evals = results["eval"]
    lines = [
        f"# Planning study: {results['model']} ({results['preset']})",
        "",
        "| metric | base | fine-tuned |",
        "|---|---|---|",
    ]
    for m in METRICS:
        lines.append(
            f"| {m} | {fmt(evals['base']['totals'].get(m))} | "
            f"{fmt(evals['finetuned']['totals'].get(m))} |"
        )
    lines += ["", "Full report: report.md / report.html", ""]
    return "\n".join(lines)


def planning_report(run: RunDir, results: dict[str, Any], stages: dict) -> None:
    analyses = {k: v for k, v in stages["analyses"].items() if k != "analysis_set"}
    write_planning_summary(run, results, analyses)
