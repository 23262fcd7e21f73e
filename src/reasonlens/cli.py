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


def _register_commands() -> None:
    # Each stage keeps its commands in its own module; importing them registers them on `app`.
    from reasonlens.commands import register_all

    register_all(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a UserError becomes one line on stderr and exit code 2."""
    _register_commands()
    try:
        app(args=argv, standalone_mode=False)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Abort:
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as err:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(err, click.ClickException):
            err.show()
            raise SystemExit(2) from None
        raise
