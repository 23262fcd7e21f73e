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
    """Run the CLI. Bad input (a UserError, or a usage error such as an unknown option or a
    value of the wrong type) is one line on stderr, ``error: ...``, and exit code 2."""
    from reasonlens.commands import register_all

    register_all(app)
    try:
        # standalone_mode=False: click's usage errors reach us instead of being drawn as a
        # multi-line panel; --help and typer.Exit come back as an exit code.
        code = app(args=argv, prog_name="reasonlens", standalone_mode=False)
    except UserError as err:
        _fail(str(err))
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        raise SystemExit(1) from None
    except typer.TyperException as err:  # click's UsageError, BadParameter, NoSuchOption, ...
        if type(err).__name__ == "NoArgsIsHelpError":  # the help is already printed
            raise SystemExit(2) from None
        _fail(_usage_message(err))
    finally:
        from reasonlens.runs.lock import release_all

        release_all()  # every run directory this command held is free again
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _fail(message: str) -> None:
    """Print one line, ``error: MESSAGE``, and exit with code 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2) from None


def _usage_message(err: typer.TyperException) -> str:
    """click's message, and where to read the command's usage."""
    message = err.format_message().strip().rstrip(".")
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    return message
