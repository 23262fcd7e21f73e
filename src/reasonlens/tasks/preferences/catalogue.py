"""The scenario catalogue shipped with reasonlens: 220 decision scenarios written for this
project (a question and five attributes, each with a snake_case name, units and a range), in
the layout :func:`~reasonlens.tasks.preferences.scenarios.load_scenarios` reads.

The domains vary (food, housing, travel, work, money, health, sport, technology, farming,
science, the arts, and fantasy and science-fiction settings), and so do the ranges: widths
below 1 (fractions, probabilities), below 5 (ratings, small measures) and up to 245,000, so
that every rounding rule of the trials is exercised. The study instils preferences in the
first scenarios of the catalogue and measures native preferences in the next ones (the
original's split: 100 and 100).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from reasonlens.tasks.preferences.scenarios import Scenario, load_scenarios

CATALOGUE = Path(__file__).with_name("catalogue.json")


@cache
def load_catalogue() -> dict[str, Scenario]:
    """Every catalogue scenario by short name, in catalogue order."""
    return load_scenarios(CATALOGUE)
