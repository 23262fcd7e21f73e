"""`reasonlens models list|info` and the shared model options."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from reasonlens.models import BUILTIN_MODELS, DEFAULT_MODEL
from reasonlens.models.gguf import converted_dir, is_current
from reasonlens.paths import cache_dir

ModelOpt = typer.Option(
    DEFAULT_MODEL, "--model", "-m", help="Built-in name, HF id, model directory or .gguf file."
)
DeviceOpt = typer.Option("auto", help="cpu, cuda, cuda:N or auto (GPU when there is one).")
ProcessesOpt = typer.Option(
    1,
    "--processes",
    help="Launch each training stage across N processes (accelerate launch: one a GPU, or "
    "CPU processes), on the 1-process global batch.",
)
DtypeOpt = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")
DeviceMapOpt = typer.Option(
    None,
    "--device-map",
    help="Shard the model: auto, or a JSON map (text or .json file) of module -> GPU index, "
    "cpu or disk (accelerate dispatch; see README 'On several GPUs').",
)
MaxMemoryOpt = typer.Option(
    None, "--max-memory", help="With --device-map auto: e.g. 0=20GiB,1=20GiB,cpu=64GiB."
)
OffloadOpt = typer.Option(
    None, "--offload-folder", help="With --device-map: where weights offloaded to disk go."
)


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="List and inspect models.", no_args_is_help=True)
    app.add_typer(models, name="models")

    @models.command("list")
    def list_models() -> None:
        """The built-in models (they load offline, from pip packages)."""
        table = Table("name", "description", "installed", "converted")
        for name, spec in BUILTIN_MODELS.items():
            converted = spec.available() and is_current(
                converted_dir(cache_dir(), name), spec.source_key()
            )
            table.add_row(
                name + (" (default)" if name == DEFAULT_MODEL else ""),
                spec.description,
                "yes" if spec.available() else f"no: {spec.install_hint}",
                "yes" if converted else "on first load",
            )
        Console().print(table)
        Console().print("Also accepted: a Hugging Face id, a model directory, a .gguf file.")

    @models.command("info")
    def info(
        name: str = typer.Argument(..., help="Model name (see `reasonlens models list`)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Architecture, layers, width, vocabulary and where the weights are cached."""
        from reasonlens.models import load_model

        model = load_model(name, device="cpu")
        data = model.info()
        if as_json:
            print(json.dumps(data, indent=2))
            return
        table = Table(show_header=False)
        for key, value in data.items():
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
        Console().print(table)
