"""Reading the study's text files with one-line errors: a missing file, a directory, bytes that
are not UTF-8 and a CSV header lacking a column each become a UserError naming the file."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from reasonlens.errors import UserError


def read_text(path: Path) -> str:
    """The UTF-8 text of `path`, without the byte-order mark a spreadsheet may put in front
    (which would otherwise become part of the first column's name); a UserError if it cannot
    be read."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror or err})") from None


Required = Iterable[str] | Callable[[Sequence[str]], Iterable[str]]


def read_csv_rows(path: Path, required: Required, what: str) -> list[dict[str, str]]:
    """The rows of a CSV file (row 1 is the first after the header) whose header holds every
    `required` column (or the columns `required(header)` names); else one UserError naming the
    missing ones and the layout `what` describes. A row with more cells than the header is
    refused; a short row's missing cells read as None."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    header = list(reader.fieldnames or [])
    needed = list(required(header) if callable(required) else required)
    missing = [c for c in needed if c not in header]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise UserError(f"{path}: missing column{plural} {', '.join(missing)} ({what})")
    rows = []
    for number, row in enumerate(reader, start=1):
        if None in row:
            raise UserError(
                f"{path} row {number}: more cells than the header's {len(header)} columns"
            )
        rows.append(row)
    return rows
