"""Models: loading by name, and the per-architecture map from canonical sites to modules."""

from reasonlens.models.architectures import SITES, Architecture, architecture_for
from reasonlens.models.loading import LoadedModel, load_model, load_tokenizer, resolve_source
from reasonlens.models.registry import BUILTIN_MODELS, DEFAULT_MODEL

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
