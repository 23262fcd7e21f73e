"""`reasonlens generate PROMPT`: greedy generation, the quickest check that a model works."""

from __future__ import annotations

import typer

from reasonlens.commands.models import DeviceOpt, DtypeOpt, ModelOpt
from reasonlens.errors import UserError


def check_prompts(prompts: list[str]) -> None:
    """Refuse an empty prompt (nothing to continue) or one that is not Unicode text."""
    for number, prompt in enumerate(prompts, start=1):
        if not prompt:
            raise UserError(f"prompt {number} is empty: give the text the model should continue")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(
                f"prompt {number} holds bytes that are not UTF-8 (or a lone surrogate): "
                "give Unicode text"
            ) from None


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

        check_prompts(prompts)
        loaded = load_model(model, device=device, dtype=dtype)
        for text in generate(loaded, prompts, max_new_tokens=max_new_tokens, chat=not raw):
            print(text.strip())
