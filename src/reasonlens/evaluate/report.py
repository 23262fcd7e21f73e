"""Human-readable summaries of a planning evaluation (Markdown tables)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reasonlens.evaluate.planning import PlanningEval

#: (column header, key in a totals dict) of the score tables.
COLUMNS = (
    ("n", "n"),
    ("parsed", "parsed"),
    ("legal", "legal"),
    ("goal", "goal_reached"),
    ("optimal", "optimal"),
    ("exact", "exact_match"),
    ("S_step", "S_step"),
    ("S_plan", "S_plan"),
)


def cell(value: object) -> str:
    """A rate as a percentage, a count as is, a metric that did not run as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}"
    return str(value)


def score_rows(result: PlanningEval) -> list[tuple[str, dict]]:
    """(label, totals) for every level, every block count, then all examples."""
    rows = [(name, scores) for name, scores in result.by_level.items()]
    rows += [(f"{name} blocks", scores) for name, scores in result.by_blocks.items()]
    rows.append(("all", result.totals))
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def planning_summary(result: PlanningEval) -> str:
    """summary.md: what was evaluated, the score tables, per-step accuracy and timings."""
    model = result.model
    parts = [
        f"# Planning evaluation: {model['name']}",
        "",
        f"- model: `{model['name']}` ({model['architecture']}, {model['dtype']} on "
        f"{model['device']}; source `{model['source'] or '-'}`)",
        f"- data: {', '.join(f'`{p}`' for p in result.data_files) or '-'}",
        f"- mode: {result.mode}; {result.totals['n']} problems, {result.totals['n_blanks']} "
        "blanks scored teacher-forced",
        "- generation verdicts (greedy, no chat template): parsed, legal, goal reached, optimal "
        "(as short as the planner's plan), exact (equal to the gold plan)",
        "- S_step: blanks right with the gold history; S_plan: plans with every blank right",
        "",
        "## Scores",
        "",
        _table(
            ["", *(h for h, _ in COLUMNS)],
            [[label, *(cell(s[k]) for _, k in COLUMNS)] for label, s in score_rows(result)],
        ),
    ]
    steps = result.totals.get("step_accuracy") or {}
    if steps:
        parts += [
            "",
            "## Teacher-forced accuracy by step",
            "",
            _table(["step", *steps], [["accuracy", *(cell(v) for v in steps.values())]]),
        ]
        multi = result.totals.get("multi_token_answers")
        if multi:
            parts += [
                "",
                f"{multi} answers span several tokens; each counts as right only when all "
                "its tokens are predicted.",
            ]
    if result.timings:
        parts += [
            "",
            "## Timings",
            "",
            _table(
                ["what", "value"],
                [[k, "-" if v is None else f"{v:,}"] for k, v in result.timings.items()],
            ),
        ]
    return "\n".join(parts) + "\n"
