"""`reasonlens eval`: score a model on Blocksworld files (generation and teacher forcing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonlens.commands.models import DeviceMapOpt, DeviceOpt, DtypeOpt, MaxMemoryOpt, OffloadOpt
from reasonlens.models.registry import DEFAULT_MODEL

#: What an eval run was computed from, beyond its options: each data file's sha256 and the
#: model's weights fingerprint. Kept out of config.yaml (the options, reusable as they are),
#: checked when the same --out is used again, so changed data or a model retrained at the
#: same path is refused instead of silently replacing the earlier results.
INPUTS_FILE = "inputs.json"


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
        device_map: str = DeviceMapOpt,
        max_memory: str = MaxMemoryOpt,
        offload_folder: Path = OffloadOpt,
        extras: Annotated[
            list[str] | None, typer.Argument(hidden=True, metavar="[MORE DATA FILES]")
        ] = None,
    ) -> None:
        """Evaluate MODEL on Blocksworld data: generated plans checked by the validator
        (parsed, legal, goal reached, optimal, exact) and teacher-forced S_step / S_plan.

        Writes results.json, summary.md and examples.jsonl into --out (and inputs.json: the
        data files' sha256 and the model's weights fingerprint; a re-run into the same --out
        with changed data or weights is refused unless --overwrite).
        """
        import time

        from rich.console import Console
        from rich.table import Table

        from reasonlens.errors import one_of
        from reasonlens.evaluate.summary import cell, columns, score_rows
        from reasonlens.evaluate.task_eval import MODES, evaluate_task, load_items, write_eval
        from reasonlens.models import load_model, load_tokenizer, resolve_source
        from reasonlens.models.fingerprint import weights_fingerprint
        from reasonlens.models.loading import check_placement
        from reasonlens.parallel import current_world, process_device, refuse_sharding
        from reasonlens.runs import RunDir, check_out, reopen_or_refuse
        from reasonlens.tasks import get_task

        check_out(out)  # a bad --out fails first, before anything is read or written
        world = current_world()  # under accelerate launch: split the batches across processes
        refuse_sharding(world, device_map)

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
        placement = dict(
            device_map=device_map, max_memory=max_memory, offload_folder=offload_folder
        )
        config.update({k: str(v) for k, v in placement.items() if v})  # only when sharded
        # a bad model name, weights or tokenizer fails here, before the run directory exists
        load_tokenizer(model)
        check_placement(model, device, dtype, **placement)  # a bad --device-map writes nothing
        inputs = {
            "data": {str(f): _sha256(f) for f in files},
            "model_weights": weights_fingerprint(resolve_source(model).path),
        }
        if world.is_main:  # one process writes the run directory (and holds its lock)
            reopen_or_refuse(out, _other_inputs(out, inputs), overwrite)
            run = RunDir.create(out, "eval", config, overwrite=overwrite)
            run.write_json(INPUTS_FILE, inputs)
        start = time.perf_counter()
        device = process_device(world, device)
        loaded = load_model(model, device=device, dtype=dtype, **placement)
        load_s = time.perf_counter() - start
        result = evaluate_task(
            loaded,
            task,
            items,
            mode,
            batch_size,
            max_new_tokens,
            progress=world.is_main,
            world=world,
        )
        result.data_files = config["data"]
        result.timings = {"model_load_s": round(load_s, 3), **result.timings}
        if not world.is_main:
            return
        write_eval(result, run)

        cols = columns(task)
        table = Table("", *(h for h, _ in cols), title=f"eval {model} ({mode})")
        for label, scores in score_rows(result):
            table.add_row(label, *(cell(scores[k]) for _, k in cols))
        console = Console()
        console.print(table)
        console.print(f"results: {run.file('results.json')}", markup=False, highlight=False)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _other_inputs(out: Path, inputs: dict) -> str | None:
    """What `out` was evaluated on, when that is not `inputs` (None: the same, or unknown)."""
    from reasonlens.runs import read_json

    try:
        before = read_json(out / INPUTS_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(before, dict) or before == inputs:
        return None
    changed = [
        f"data file {name}"
        for name, sha in inputs["data"].items()
        if name in before.get("data", {}) and before["data"][name] != sha
    ]
    if before.get("model_weights") != inputs["model_weights"]:
        changed.append("model weights")
    if not changed:  # other files: the config's own check names them
        return None
    return f"an eval run of other inputs ({', '.join(changed)} changed)"
