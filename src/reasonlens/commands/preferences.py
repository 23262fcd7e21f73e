"""`reasonlens preferences analyse`: recover the weights behind a model's decisions, score them
against the targets, and score its self-reports (no model is loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: What the run was computed from: each input file's sha256. Kept out of config.yaml (the
#: options), checked when the same --out is used again, so changed data at the same path is
#: refused instead of silently replacing the earlier results.
INPUTS_FILE = "inputs.json"


def register(app: typer.Typer) -> None:
    prefs = typer.Typer(help="Preference instillation and self-report analyses.")
    prefs.no_args_is_help = True
    app.add_typer(prefs, name="preferences", no_args_is_help=True)

    @prefs.command("analyse")
    def analyse_cmd(
        scenarios: Annotated[
            Path,
            typer.Option(help="Scenarios: a .json (candidate_scenarios layout) or scenarios.csv."),
        ],
        targets: Annotated[Path, typer.Option(help="Target weights CSV: scenario,attr1..attr5.")],
        decisions: Annotated[
            Path,
            typer.Option(
                help="Decisions CSV: scenario,selection,A_attribute_1..5,B_attribute_1..5."
            ),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
        units: Annotated[
            Path | None,
            typer.Option(help="candidate_scenarios.json: units for a scenarios.csv."),
        ] = None,
        reports: Annotated[
            list[Path] | None,
            typer.Option(
                help="Self-reports CSV(s): parsed (report_attr1..5) or raw (a reply column)."
            ),
        ] = None,
        learned: Annotated[
            Path | None,
            typer.Option(
                help="Other learned weights (scenario,b_attr1..5, e.g. the release's "
                "regression_results.csv) to compare the reports with as well."
            ),
        ] = None,
        regression: Annotated[
            str, typer.Option(help="l2 (N(0,1) prior on slopes) or unregularised.")
        ] = "l2",
        n_boot: Annotated[
            int, typer.Option("--n-boot", min=0, help="Bootstrap resamples of scenarios.")
        ] = 1000,
        seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
        overwrite: Annotated[bool, typer.Option(help="Replace a different run in --out.")] = False,
        extras: Annotated[
            list[Path] | None, typer.Argument(hidden=True, metavar="[MORE REPORTS FILES]")
        ] = None,
    ) -> None:
        """Recover learned weights from decisions; score them against targets and reports.

        One logistic regression per scenario of choosing "A" on the five range-normalised
        differences; pooled r(learned, target) with a bootstrap CI over scenarios,
        per-attribute r, agreement with the target choice and the share of "A"; with
        --reports, r between the mean reports and the learned weights. Writes results.json,
        learned_weights.csv, fits.csv, summary.md, plots and inputs.json (the input files'
        sha256) into --out. Bad input writes nothing.
        """
        from rich.console import Console

        from reasonlens.errors import UserError, one_of
        from reasonlens.runs import RunDir, check_out, reopen_or_refuse
        from reasonlens.studies.preferences.weights import (
            REGRESSIONS,
            analyse_preferences,
            load_inputs,
        )
        from reasonlens.studies.preferences.weights.analysis import write_analysis

        check_out(out)  # a bad --out fails first, before anything is read or written
        if regression not in REGRESSIONS:
            raise one_of("regression", regression, REGRESSIONS)
        report_files = [*(reports or []), *(extras or [])]
        if extras and not reports:
            raise UserError(f"unexpected argument {str(extras[0])!r} (use --reports FILE ...)")
        inputs = load_inputs(scenarios, targets, decisions, report_files, units, learned)
        files = {
            "scenarios": scenarios,
            "units": units,
            "targets": targets,
            "decisions": decisions,
            "learned": learned,
        }
        config = {
            **{k: (str(v) if v is not None else None) for k, v in files.items()},
            "reports": [str(p) for p in report_files],
            "regression": regression,
            "n_boot": n_boot,
            "seed": seed,
        }
        digests = {str(p): _sha256(p) for p in [*files.values(), *report_files] if p is not None}
        analysis = analyse_preferences(inputs, regression, n_boot, seed)

        reopen_or_refuse(out, _other_inputs(out, digests), overwrite)
        run = RunDir.create(out, "preferences-analyse", config, overwrite=overwrite)
        run.write_json(INPUTS_FILE, digests)
        results = write_analysis(analysis, run.path)

        console = Console()
        console.print(
            run.file("summary.md").read_text(), markup=False, highlight=False, soft_wrap=True
        )
        r = results["r_learned_target"]
        console.print(
            f"r(learned, target) = {'n/a' if r is None else f'{r:.3f}'}; "
            f"results: {run.file('results.json')}",
            markup=False,
            highlight=False,
        )


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _other_inputs(out: Path, digests: dict[str, str]) -> str | None:
    """What `out` was computed from, when files of the same names now differ (None: the same,
    or nothing known)."""
    from reasonlens.runs import read_json

    try:
        before = read_json(out / INPUTS_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(before, dict):
        return None
    changed = [name for name, sha in digests.items() if name in before and before[name] != sha]
    if not changed:
        return None
    return f"a preferences analysis of other data ({', '.join(changed)} changed)"
