"""One exception type for mistakes a user can fix.

The CLI turns a :class:`UserError` into one clear line on stderr and exit code 2,
never a traceback. Library code raises it wherever input (a model name, a site, a
file, a flag) is wrong, with a message that says what was wrong and what would be
right.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: the message is shown to the user as is."""


def suggest(word: str, choices: Iterable[str], limit: int = 3) -> str:
    """A ' (did you mean ...?)' suffix naming the closest valid choices, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=limit, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def one_of(what: str, value: str, choices: Iterable[str]) -> UserError:
    """A UserError for a value outside a known set, listing the valid ones."""
    choices = sorted(choices)
    return UserError(
        f"unknown {what} {value!r}{suggest(value, choices)}; valid: {', '.join(choices)}"
    )


def check_unicode(text: str, what: str) -> None:
    """Refuse a string holding a lone surrogate (a JSON escape such as \\ud800 with no pair,
    or bytes that were not UTF-8): no tokenizer can read it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"{what} holds a lone surrogate (an escape such as \\ud800 with no pair, or bytes "
            "that are not UTF-8): not Unicode text a tokenizer can read"
        ) from None
