"""Models: loading by name, and the per-architecture map from canonical sites to modules.

The registry (names, the default) is light and imported at once; everything that needs torch
or transformers (`load_model`, `SITES`, ...) loads on first use (PEP 562), so commands that
never touch a model start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from reasonlens.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

if TYPE_CHECKING:
    from reasonlens.models.architectures import SITES, Architecture, architecture_for
    from reasonlens.models.loading import (
        LoadedModel,
        load_model,
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
    "load_tokenizer",
    "resolve_source",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
