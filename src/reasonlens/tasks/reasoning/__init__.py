"""Reasoning vs control contrast sets: multi-step arithmetic word problems with checkable
answers, and a user's own question/answer JSONL, as matched prompt pairs."""

from reasonlens.tasks.reasoning.contrast import (
    ContrastItem,
    arithmetic_items,
    contrast_prompts,
    read_prompts,
)

__all__ = ["ContrastItem", "arithmetic_items", "contrast_prompts", "read_prompts"]
