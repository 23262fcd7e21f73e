"""Models: loading by name, and the per-architecture map from canonical sites to modules.

The registry (names, the default) is light and imported at once; everything that needs torch
or transformers (`load_model`, `SITES`, ...) loads on first use (PEP 562), so commands that
never touch a model start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reasonlens.lazy import lazy_exports
from reasonlens.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

if TYPE_CHECKING:
    from reasonlens.models.architectures import SITES, Architecture, architecture_for
    from reasonlens.models.loading import (
        LoadedModel,
        load_model,
        load_random_model,
        load_tokenizer,
        resolve_source,
    )

# Public name -> the submodule that defines it (imported on first access).
_LAZY = {
    "SITES": "architectures",
    "Architecture": "architectures",
    "architecture_for": "architectures",
    "LoadedModel": "loading",
    "load_model": "loading",
    "load_random_model": "loading",
    "load_tokenizer": "loading",
    "resolve_source": "loading",
}

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "SITES",
    "Architecture",
    "LoadedModel",
    "architecture_for",
    "load_model",
    "load_random_model",
    "load_tokenizer",
    "resolve_source",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
