"""`reasonlens eval`: score a model on Blocksworld files (generation and teacher forcing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonlens.commands.models import DeviceOpt, DtypeOpt
from reasonlens.models.registry import DEFAULT_MODEL


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        data: Annotated[
            list[Path],
            typer.Option("--data", "-d", help="Blocksworld JSONL file(s): --data A.jsonl B.jsonl"),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
        model: str = typer.Option(
            DEFAULT_MODEL,
            "--model",
            "-m",
            help="Built-in name, HF id, model directory, .gguf file or training run directory.",
        ),
        mode: Annotated[str, typer.Option(help="generate, teacher-forced, or both.")] = "both",
        batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 16,
        limit: Annotated[
            int | None, typer.Option(min=1, help="Only the first N examples of each file.")
        ] = None,
        max_new_tokens: Annotated[
            int | None,
            typer.Option(
                "--max-new-tokens",
                min=1,
                help="Token limit per plan (default: longest gold plan + two steps).",
            ),
        ] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace a different run in --out.")] = False,
        device: str = DeviceOpt,
        dtype: str = DtypeOpt,
        extras: Annotated[
            list[str] | None, typer.Argument(hidden=True, metavar="[MORE DATA FILES]")
        ] = None,
    ) -> None:
        """Evaluate MODEL on Blocksworld data: generated plans checked by the validator
        (parsed, legal, goal reached, optimal, exact) and teacher-forced S_step / S_plan.

        Writes results.json, summary.md and examples.jsonl into --out.
        """
        import time

        from rich.console import Console
        from rich.table import Table

        from reasonlens.errors import one_of
        from reasonlens.evaluate.summary import cell, columns, score_rows
        from reasonlens.evaluate.task_eval import MODES, evaluate_task, load_items, write_eval
        from reasonlens.models import load_model, resolve_source
        from reasonlens.runs import RunDir
        from reasonlens.tasks import get_task

        files = [*data, *(Path(x) for x in extras or [])]
        if mode not in MODES:
            raise one_of("mode", mode, MODES)
        task = get_task("blocksworld")
        items = load_items(task, files, limit)
        config = {
            "model": model,
            "data": [str(f) for f in files],
            "mode": mode,
            "batch_size": batch_size,
            "limit": limit,
            "max_new_tokens": max_new_tokens,
            "device": device,
            "dtype": dtype,
        }
        resolve_source(model)  # a bad model name fails here, before the run directory exists
        run = RunDir.create(out, "eval", config, overwrite=overwrite)
        start = time.perf_counter()
        loaded = load_model(model, device=device, dtype=dtype)
        load_s = time.perf_counter() - start
        result = evaluate_task(loaded, task, items, mode, batch_size, max_new_tokens)
        result.data_files = config["data"]
        result.timings = {"model_load_s": round(load_s, 3), **result.timings}
        write_eval(result, run)

        cols = columns(task)
        table = Table("", *(h for h, _ in cols), title=f"eval {model} ({mode})")
        for label, scores in score_rows(result):
            table.add_row(label, *(cell(scores[k]) for _, k in cols))
        console = Console()
        console.print(table)
        console.print(f"results: {run.file('results.json')}", markup=False, highlight=False)
