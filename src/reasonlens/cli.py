"""The `reasonlens` command: one entry point, one subcommand per stage of the pipeline."""

from __future__ import annotations

import sys

import typer

from reasonlens.errors import UserError

app = typer.Typer(
    name="reasonlens",
    help="Study how language models plan and reason, from the inside.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Usage errors exit 2 (typer's own message); so does a UserError, as one line."""
    from reasonlens.commands import register_all

    register_all(app)
    try:
        app(args=argv, prog_name="reasonlens")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
