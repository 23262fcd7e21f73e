"""Human-readable summaries of a task evaluation (Markdown tables), titled by the task.

The tables are the same for every task: one column per rate the task names
(:attr:`Task.metrics`), then the teacher-forced S_step and S_plan; one row per group of each
of its breakdowns, then all items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reasonlens.evaluate.task_eval import TaskEval
    from reasonlens.tasks.base import Task


def columns(task: Task) -> tuple[tuple[str, str], ...]:
    """(column header, key in a totals dict) of the score tables."""
    return (
        ("n", "n"),
        *((task.header(m), m) for m in task.metrics),
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


def score_rows(result: TaskEval) -> list[tuple[str, dict]]:
    """(label, totals) for every group of every breakdown, in order, then all items."""
    rows = []
    for name, breakdown in result.task.breakdowns.items():
        groups = result.breakdowns.get(name, {})
        rows += [(breakdown.label(group), scores) for group, scores in groups.items()]
    rows.append(("all", result.totals))
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def eval_summary(result: TaskEval) -> str:
    """summary.md: what was evaluated, the score tables, per-step accuracy and timings."""
    model, task = result.model, result.task
    cols = columns(task)
    parts = [
        f"# {task.title} evaluation: {model['name']}",
        "",
        f"- model: `{model['name']}` ({model['architecture']}, {model['dtype']} on "
        f"{model['device']}; source `{model['source'] or '-'}`)",
        f"- data: {', '.join(f'`{p}`' for p in result.data_files) or '-'}",
        f"- mode: {result.mode}; {result.totals['n']} {task.noun}, "
        f"{result.totals['n_blanks']} blanks scored teacher-forced",
        *(f"- {note}" for note in task.notes),
        "",
        "## Scores",
        "",
        _table(
            ["", *(h for h, _ in cols)],
            [[label, *(cell(s[k]) for _, k in cols)] for label, s in score_rows(result)],
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
