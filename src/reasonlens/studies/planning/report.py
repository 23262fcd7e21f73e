"""The planning study's report, declared: behaviour of the base and fine-tuned models, then
the paper's analyses claim by claim (`report_analyses`), each beside the untrained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasonlens.report.builder import Figure, Report, Section, Table
from reasonlens.report.document import fmt
from reasonlens.report.verdicts import MIN_UNITS
from reasonlens.runs import RunDir
from reasonlens.studies.planning import files, paper

METRICS = ("S_step", "S_plan", "parsed", "legal", "goal_reached", "optimal", "exact_match")


def planning_report(run: RunDir, results: dict[str, Any], stages: dict) -> Report:
    """The report's declaration (and accuracy.png, which it shows)."""
    from reasonlens.studies.planning import report_analyses as sections

    analyses = {k: v for k, v in stages["analyses"].items() if k != "analysis_set"}
    evals = results["eval"]
    plot_accuracy(evals, run.file("accuracy.png"))
    directory = run.file("analyses")
    controls = analyses.get("control", {})
    found: list[Section] = []
    for name, section in (
        ("extraction", sections.extraction_section),
        ("flow", sections.flow_section),
        ("masking", sections.masking_section),
        ("knockout", sections.knockout_section),
        ("probes", sections.probes_section),
    ):
        if name in analyses:
            found.append(section(analyses[name], directory, controls.get(name)))
    if "horizons" in analyses and analyses["horizons"].get("future_matrix_linear"):
        found.append(_horizons(analyses["horizons"], directory / files.HORIZONS_PNG))
    intro = []
    if analyses:
        chosen = results.get("analysis_set", {})
        intro.append(
            f"Analysis set: {chosen.get('chosen')} test problems the fine-tuned model solves "
            f"under teacher forcing ({chosen.get('solved')} solved of "
            f"{chosen.get('scored', chosen.get('candidates'))} scored, in a seeded random "
            f"order until enough were solved, of {chosen.get('candidates')} candidates); the "
            "paper used 400 L3 6-block problems. Each claim below stands beside the same "
            "measurement on the base model before fine-tuning, on the same problems."
        )
    data = results["data"]
    return Report(
        title=f"Planning study — {results['model']} ({results['preset']} preset)",
        intro=intro,
        headline=[_behaviour(results)],
        sections=found,
        data=f"data: {data['train']} training and {data['test']} test problems "
        "(see `data/manifest.json`)",
        summary=[_behaviour_table(evals)],
        control_name="before fine-tuning",
    )


def _horizons(horizons: dict, figure: Path) -> Section:
    from reasonlens.studies.planning.horizons import reach_by_distance

    matrices = horizons["future_matrix_linear"]
    sets = horizons.get("analysis_sets", {})
    reach = {level: reach_by_distance(m) for level, m in matrices.items()}
    ks = sorted({k for r in reach.values() for k in r})
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
    skipped = [lv for lv in sets if lv not in matrices]
    return Section(
        "Beyond the paper: longer plans",
        [
            "Future-decision probes (linear, max over layers) repeated for each plan length: "
            "accuracy of decoding the decision k steps ahead, averaged over the current step, "
            "beside the majority baseline (in the figure, dashed). Levels with fewer than 5 "
            "solved problems are left out; a level whose probes are scored on fewer than "
            f"{MIN_UNITS} test problems gives a descriptive curve, not evidence. Cells: accuracy "
            "k steps ahead (majority baseline).",
            Table(
                ["level", "analysed (of candidates)", "test problems", *(f"k={k}" for k in ks)],
                rows,
            ),
            *(
                [
                    "Too few solved problems to probe: "
                    + ", ".join(f"{lv} ({sets[lv].get('solved')} solved)" for lv in skipped)
                    + "."
                ]
                if skipped
                else []
            ),
            Figure(str(figure), "How far ahead the probes reach"),
        ],
    )


def _behaviour_table(evals: dict) -> Table:
    return Table(
        ["metric", "base", "fine-tuned"],
        [
            [m, fmt(evals["base"]["totals"].get(m)), fmt(evals["finetuned"]["totals"].get(m))]
            for m in METRICS
        ],
    )


def _behaviour(results: dict) -> Section:
    evals = results["eval"]
    blocks: list[Any] = [
        "Teacher-forced metrics as the paper defines them (S_step: each blank predicted with "
        "the gold history; S_plan: every blank of a plan right), and free greedy generation "
        "checked by the Blocksworld validator (parsed, legal, goal reached, optimal, exact "
        "match).",
        _behaviour_table(evals),
    ]
    cells = _cells(evals["finetuned"])
    if cells:
        blocks += [
            "Fine-tuned model by level and number of blocks (S_plan / exact match):",
            Table(["level", "blocks", "n", "S_step", "S_plan", "exact match"], cells),
        ]
    l3_6 = _l3_6(evals["finetuned"])
    theirs = ", ".join(f"{k} {v:.2f}" for k, v in paper.S_PLAN_L3_6.items())
    if l3_6 is not None:
        blocks.append(
            f"S_plan on L3 with 6 blocks: **{fmt(l3_6)}** (paper, fine-tuned 7B models: {theirs})."
        )
    else:
        blocks.append(
            f"This preset has no L3 6-block test set, so the paper's headline figure ({theirs}) "
            "has no counterpart here; run `--preset paper` or `--preset full` for it."
        )
    blocks.append(Figure("accuracy.png", "Accuracy by level, base vs fine-tuned"))
    return Section("Behaviour: base and fine-tuned, side by side", blocks)


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
