"""Convert a GGUF file once into a safetensors checkpoint that loads in a fraction of a second.

transformers dequantises GGUF weights to float on every load (~15-35 s here) and leaves a
`quantization_config` on the config that blocks `save_pretrained`; so the first load rebuilds
the model from a clean config, copies the weights in, and saves model + tokenizer to the cache.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE_FILE = "reasonlens_source.json"


def converted_dir(cache_root: Path, name: str) -> Path:
    return cache_root / "models" / name


def is_current(target: Path, source_key: str) -> bool:
    """True when `target` holds a finished conversion of exactly this source."""
    stamp = target / SOURCE_FILE
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("source") == source_key
    except (OSError, json.JSONDecodeError):
        return False


def convert_gguf(
    gguf_path: Path,
    target: Path,
    source_key: str,
    chat_template: str | None = None,
) -> Path:
    """Dequantise `gguf_path` and save it as a safetensors checkpoint in `target`.

    Writes into a temporary sibling directory and renames it into place, so an interrupted
    conversion never leaves a half-written checkpoint that a later load would trust.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info(
        "converting %s once into %s (later loads read the safetensors copy)", gguf_path, target
    )
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = chat_template
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)

    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    if tied:
        clean.tie_weights()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(
            json.dumps({"source": source_key, "gguf": str(gguf_path)}, indent=2)
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def gguf_source_key(path: Path) -> str:
    """A user's .gguf file is identified by its path, size and modification time."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
