"""`reasonlens data blocksworld` makes a data set; `reasonlens validate FILE` checks one."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table

from reasonlens.errors import UserError


def _split_extras(
    extras: list[str], levels: list[str] | None, blocks: list[int] | None
) -> tuple[list[str] | None, list[int] | None]:
    """Let ``--levels L1 L2`` and ``--blocks 4 5 6`` take several values after one flag.

    click gives an option one value; the rest arrive as extra arguments, which are told apart
    by their form (``L3`` vs ``6``)."""
    if levels is not None:
        levels = [x for item in levels for x in item.split(",") if x]
    for word in extras:
        if re.fullmatch(r"[Ll]\d+", word) and levels is not None:
            levels.append(word)
        elif word.isdigit() and blocks is not None:
            blocks.append(int(word))
        else:
            raise UserError(f"unexpected argument {word!r} (use --levels L1 L2 or --blocks 4 5)")
    return levels, blocks


def register(app: typer.Typer) -> None:
    data = typer.Typer(help="Generate task data sets.", no_args_is_help=True)
    app.add_typer(data, name="data")

    @data.command("blocksworld")
    def blocksworld_cmd(
        out: Annotated[Path, typer.Option(help="Directory to write (created if needed).")],
        preset: Annotated[
            str, typer.Option(help="paper (Table 1, paper layout) or seed.")
        ] = "paper",
        levels: Annotated[
            list[str] | None, typer.Option(help="Levels, e.g. --levels L1 L2 L3.")
        ] = None,
        blocks: Annotated[
            list[int] | None, typer.Option(help="Block counts, e.g. --blocks 4 5 6.")
        ] = None,
        train: Annotated[
            int | None,
            typer.Option(min=0, help="Train problems per (level, blocks); overrides Table 1."),
        ] = None,
        test: Annotated[
            int | None,
            typer.Option(min=0, help="Test problems per (level, blocks); overrides Table 1."),
        ] = None,
        seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
        slots: Annotated[
            int | None, typer.Option(min=1, help="Table slots, 1..8 (default 4).")
        ] = None,
        fmt: Annotated[
            str | None, typer.Option("--format", help="Text layout: paper or seed.")
        ] = None,
        colors: Annotated[str | None, typer.Option(help="Palette, comma-separated.")] = None,
        overwrite: Annotated[
            bool,
            typer.Option(
                help="Replace a different reasonlens run in --out (only what reasonlens wrote)."
            ),
        ] = False,
        extras: Annotated[
            list[str] | None, typer.Argument(hidden=True, metavar="[MORE VALUES]")
        ] = None,
    ) -> None:
        """Blocksworld problems with proven-optimal gold plans, one file per level and split.

        Writes L{k}_train.jsonl, L{k}_test.jsonl and manifest.json (plus run.json and
        config.yaml); re-running the same command finishes an interrupted run.
        Test problems are distinct, have one optimal plan, and never occur in train.
        Counts default to the paper's Table 1; --train/--test override it (omitted: 0).
        """
        from reasonlens.runs import check_out
        from reasonlens.tasks.blocksworld.dataset import resolve_config, write_dataset

        check_out(out)
        levels, blocks = _split_extras(extras or [], levels, blocks)
        palette = [c.strip() for c in colors.split(",") if c.strip()] if colors else None
        config = resolve_config(
            preset,
            levels=levels,
            blocks=blocks,
            train=train,
            test=test,
            seed=seed,
            slots=slots,
            colors=palette,
            fmt=fmt,
        )
        manifest = write_dataset(config, out, overwrite=overwrite)
        table = Table("file", "examples", "by blocks", title=f"Blocksworld data in {out}")
        for name, entry in manifest["files"].items():
            by_blocks = ", ".join(f"{b}: {n}" for b, n in entry["by_blocks"].items())
            table.add_row(name, str(entry["examples"]), by_blocks)
        console = Console()
        console.print(table)
        totals = manifest["totals"]
        console.print(
            f"train {totals['train']}, test {totals['test']}; manifest: {out / 'manifest.json'}",
            markup=False,
            highlight=False,
        )

    @app.command("validate")
    def validate_cmd(
        file: Annotated[Path, typer.Argument(help="JSONL file, paper or seed layout.")],
        as_json: Annotated[
            bool, typer.Option("--json", help="Print only the totals, as JSON, on stdout.")
        ] = False,
        findings: Annotated[
            Path | None,
            typer.Option(
                help="Write per-example findings here (JSONL; a new file, or one it wrote)."
            ),
        ] = None,
        against: Annotated[
            Path | None,
            typer.Option(help="Another file (e.g. train): report problems found in both."),
        ] = None,
        slots: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="Table slots for seed records that give none (default: no limit).",
            ),
        ] = None,
        show: Annotated[int, typer.Option(min=0, help="How many issue lines to print.")] = 20,
        strict: Annotated[
            bool, typer.Option(help="Exit with status 1 if any example has an issue.")
        ] = False,
    ) -> None:
        """Check every gold plan in FILE: parsed, legal, reaches the goal, optimal, not trivial."""
        from reasonlens.runs import atomic_write, check_out_file
        from reasonlens.tasks.blocksworld.planner import MAX_BLOCKS
        from reasonlens.tasks.blocksworld.validate import validate_file

        if slots is not None and slots > MAX_BLOCKS:
            raise UserError(f"--slots must be 1..{MAX_BLOCKS}, got {slots}")
        if findings is not None:
            check_out_file(findings, "--findings", keep=(file, against), owned=_is_findings)
        report = validate_file(file, slots=slots, against=against)
        totals = report.totals()
        if findings is not None:
            lines = "".join(json.dumps(f.to_dict()) + "\n" for f in report.findings)
            atomic_write(findings, lines)
        issues = list(report.issue_lines())
        if as_json:
            print(json.dumps(totals))
            _print_issues(issues, show, sys.stderr)
        else:
            console = Console()
            # the file's name on a line of its own: a table title would wrap it mid-word
            console.print(f"validate {file}", markup=False, highlight=False, soft_wrap=True)
            console.print(
                f"seed-layout records that give no slot count: {report.slots_rule}",
                markup=False,
                highlight=False,
            )
            table = Table("check", "count", "share")
            for key, value in totals.items():
                of = totals["problems"] if key.endswith("_problems") else totals["total"]
                share = f"{value / of:.1%}" if of and key != "problems" else "-"
                label = key if key.endswith("problems") else f"{key} (lines)"
                table.add_row(label, str(value), share)
            console.print(table)
            _print_issues(issues, show, sys.stdout)
        if strict and totals["with_issues"]:
            raise SystemExit(1)


_FINDING_KEYS = {"line", "problem_id", "split", "issues", "parsed"}


def _is_findings(path: Path) -> bool:
    """Whether `path` is a findings file `validate --findings` wrote (every line one finding;
    an empty file loses nothing either)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                if not isinstance(row, dict) or not set(row) >= _FINDING_KEYS:
                    return False
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return True


def _print_issues(issues: list[str], show: int, stream: TextIO) -> None:
    for line in issues[:show]:
        print(line, file=stream)
    if len(issues) > show:
        print(f"... and {len(issues) - show} more (--findings FILE lists all)", file=stream)
