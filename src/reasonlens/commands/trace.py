"""`reasonlens trace`: capture activations into an activation store."""

from __future__ import annotations

from pathlib import Path

import typer

from reasonlens.commands.models import (
    DeviceMapOpt,
    DeviceOpt,
    DtypeOpt,
    MaxMemoryOpt,
    ModelOpt,
    OffloadOpt,
)
from reasonlens.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("trace")
    def trace_cmd(
        sites: str = typer.Option(
            ..., "--sites", "-s", help='Site addresses, e.g. "layers.*.resid_post layers.0-3.k".'
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Directory of the activation store."),
        input_file: Path = typer.Option(
            None, "--input", "-i", help="JSONL: {'text'|'input_ids', 'positions'?} per line."
        ),
        text: list[str] = typer.Option(None, "--text", "-t", help="Text to trace (repeatable)."),
        positions: str = typer.Option(
            "all", help="all, last, or given (each input line's 'positions')."
        ),
        model: str = ModelOpt,
        batch_size: int = typer.Option(8, "--batch-size", "-b", min=1),
        chat: bool = typer.Option(False, "--chat", help="Wrap each text in the chat template."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace a different store (only what reasonlens wrote)."
        ),
        device: str = DeviceOpt,
        dtype: str = DtypeOpt,
        device_map: str = DeviceMapOpt,
        max_memory: str = MaxMemoryOpt,
        offload_folder: Path = OffloadOpt,
    ) -> None:
        """Capture SITES at POSITIONS for every input into an activation store (resumable).

        Under `accelerate launch --num_processes N` each process captures every N-th batch
        into the same store, which ends identical to a 1-process capture."""
        from rich.console import Console

        from reasonlens.models import load_model
        from reasonlens.parallel import current_world, process_device, refuse_sharding
        from reasonlens.runs import RunDir, check_out
        from reasonlens.trace import CaptureStats, JsonlInputs, TraceInput, capture

        check_out(out)  # before the model loads: a bad --out costs nothing and writes nothing
        if (input_file is None) == (not text):
            raise UserError("give either --input FILE.jsonl or one or more --text")
        inputs = JsonlInputs(input_file) if input_file else [TraceInput(text=t) for t in text]
        world = current_world()  # under accelerate launch: split the batches across processes
        refuse_sharding(world, device_map)
        loaded = load_model(
            model,
            device=process_device(world, device),
            dtype=dtype,
            device_map=device_map,
            max_memory=max_memory,
            offload_folder=offload_folder,
        )
        stats = CaptureStats()
        store = capture(
            loaded,
            inputs,
            sites,
            positions=positions,
            batch_size=batch_size,
            out=out,
            overwrite=overwrite,
            chat=chat,
            stats=stats,
            world=world,
        )
        if not world.is_main:
            return
        run = RunDir.open(out, "trace")  # the store is a run: say what was traced, for re-running
        asked = {"input": str(input_file) if input_file else None, "text": list(text or [])}
        if any(run.config.get(k) != v for k, v in asked.items()):
            run.record({**run.config, **asked})
        mb = stats.bytes_written / 1e6
        rate = mb / stats.seconds_writing if stats.seconds_writing else float("nan")
        Console(stderr=True).print(
            f"{store.n_examples} examples, {len(store.sites)} sites -> {out} "
            f"({mb:.1f} MB written at {rate:.0f} MB/s"
            + (
                f"; resumed, {stats.skipped_shards} shards already done"
                if stats.skipped_shards
                else ""
            )
            + ")"
        )
