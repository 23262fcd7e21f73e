"""CLI commands, grouped by pipeline stage. Each module exposes `register(app)`."""

from __future__ import annotations

import importlib

import typer

# Order is the order `reasonlens --help` lists them.
_MODULES = ["models", "generate", "data", "trace", "train", "pair", "eval", "preferences", "study"]


def register_all(app: typer.Typer) -> None:
    """Add every stage's commands to `app`, once."""
    if getattr(app, "_reasonlens_registered", False):
        return
    app._reasonlens_registered = True  # type: ignore[attr-defined]
    for name in _MODULES:
        importlib.import_module(f"reasonlens.commands.{name}").register(app)
