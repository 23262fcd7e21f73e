"""Colour palettes for block names.

Every colour here (and the word ``table``) is a single token, with its leading space, for
every built-in model's tokenizer: each blank in a plan then has exactly one answer token.
``tests/tasks/test_blocksworld_tokens.py`` checks this.
"""

from __future__ import annotations

#: The six colours of the paper's Figure 2; the ``paper`` preset draws its blocks from these,
#: so 6-block problems always use the same six colours (the probes assume "6 colours").
PAPER_COLORS: tuple[str, ...] = ("black", "white", "gray", "red", "blue", "green")

#: The default palette, enough for 8 blocks.
DEFAULT_COLORS: tuple[str, ...] = (
    "red",
    "blue",
    "green",
    "yellow",
    "white",
    "black",
    "gray",
    "orange",
)

#: The word a plan uses for the table; never a block name.
TABLE = "table"
