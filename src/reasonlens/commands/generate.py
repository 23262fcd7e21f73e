"""`reasonlens generate PROMPT`: greedy generation, the quickest check that a model works."""

from __future__ import annotations

import typer

from reasonlens.commands.models import DeviceOpt, DtypeOpt, ModelOpt


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate_cmd(
        prompts: list[str] = typer.Argument(..., help="One or more prompts."),
        model: str = ModelOpt,
        max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
        raw: bool = typer.Option(False, "--raw", help="Skip the chat template."),
        device: str = DeviceOpt,
        dtype: str = DtypeOpt,
    ) -> None:
        """Greedy completion of PROMPT(s), batched, with the model's chat template."""
        from reasonlens.evaluate.generation import generate
        from reasonlens.models import load_model

        loaded = load_model(model, device=device, dtype=dtype)
        for text in generate(loaded, prompts, max_new_tokens=max_new_tokens, chat=not raw):
            print(text.strip())
