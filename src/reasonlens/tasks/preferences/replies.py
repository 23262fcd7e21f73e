"""Reading a model's replies in the preferences study: a decision ("A"/"B") and a self-report
(a JSON object of five weights).

Both parsers are strict. A public reproduction scored every reply it could not parse as "A",
which turned a model that had not learned the format into one with a 95% "A" bias; here an
unreadable reply is *invalid*, returned as None, and callers count it separately.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

#: The two valid decisions.
CHOICES = ("A", "B")

_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n?(?P<body>.*?)\n?```\Z", re.DOTALL | re.IGNORECASE)


def parse_choice(reply: str | None) -> str | None:
    """ "A" or "B" when the reply is exactly that letter (surrounding whitespace stripped), else
    None (invalid): "a", "A.", "Option A", "maybe" and an empty reply are all invalid."""
    if reply is None:
        return None
    text = reply.strip()
    return text if text in CHOICES else None


def strip_fences(reply: str) -> str:
    """The body of a reply wrapped in a Markdown code fence (```json ... ``` or ``` ... ```),
    or the stripped reply itself when it is not fenced."""
    text = reply.strip()
    match = _FENCE.match(text)
    return match.group("body").strip() if match else text


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def parse_report(reply: str | None, names: Sequence[str]) -> tuple[float, ...] | None:
    """The five reported weights, in the order of `names`, from a reply holding a JSON object
    whose keys are exactly those attribute names and whose values are finite numbers (code
    fences stripped); None for anything else (a bad report: not JSON, not an object, missing,
    extra or repeated keys, a non-numeric value). Values are not clipped to [-100, 100]: the
    release keeps what was reported (it holds a 2388)."""
    if reply is None:
        return None
    try:
        data = json.loads(strip_fences(reply), object_pairs_hook=_no_duplicates)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != set(names) or len(data) != len(names):
        return None
    values = []
    for name in names:
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float's range
            return None
        if not math.isfinite(value):
            return None
        values.append(value)
    return tuple(values)
