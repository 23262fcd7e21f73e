"""Reasoning vs control contrast sets as matched prompt pairs: multi-step arithmetic word
problems, maze searches and Blocksworld plans with checkable answers, and a user's own
question/answer JSONL."""

from reasonlens.tasks.reasoning.contrast import (
    CONTRAST_SETS,
    ContrastItem,
    arithmetic_items,
    blocksworld_items,
    contrast_prompts,
    maze_items,
    read_prompts,
)

__all__ = [
    "CONTRAST_SETS",
    "ContrastItem",
    "arithmetic_items",
    "blocksworld_items",
    "contrast_prompts",
    "maze_items",
    "read_prompts",
]
