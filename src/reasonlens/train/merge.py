"""LoRA adapters: put one on its base model, and merge it into a plain checkpoint.

A merged checkpoint is an ordinary Hugging Face model directory, so every analysis (hooks on
`q_proj`, `mlp`, ...) sees the fine-tuned weights directly, with no PEFT wrappers in the way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from reasonlens.errors import UserError
from reasonlens.runs.ownership import (
    check_out,
    claim_all,
    has_content,
    remove_run,
    replace_problem,
)

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def adapter_base(adapter_dir: str | Path) -> str | None:
    """The base model an adapter says it was trained on (`base_model_name_or_path`)."""
    try:
        config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return config.get("base_model_name_or_path")


def attach_adapter(base: PreTrainedModel, adapter_dir: str | Path):
    """`base` wrapped as a PeftModel carrying the adapter's weights; UserError if they do not fit.

    Every adapter tensor must land on a module of the base model with the same shape:
    an adapter trained on another architecture or size is refused, never half-loaded.
    """
    from peft import PeftConfig, get_peft_model
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise UserError(f"{adapter_dir} is not a PEFT adapter (no {ADAPTER_CONFIG})")
    config = PeftConfig.from_pretrained(str(adapter_dir))
    mismatch = f"adapter {adapter_dir} does not match the base model"
    try:
        with warnings.catch_warnings():
            # we attach to the base we were given on purpose; a mismatch is checked below
            warnings.filterwarnings("ignore", ".*base_model_name_or_path.*", UserWarning)
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
            model = get_peft_model(base, config)
            weights = load_peft_weights(str(adapter_dir), device="cpu")
            result = set_peft_model_state_dict(model, weights)
    except (ValueError, RuntimeError, KeyError) as err:
        raise UserError(f"{mismatch}: {_reason(err)}") from None
    unexpected = list(result.unexpected_keys)
    unloaded = [k for k in result.missing_keys if "lora_" in k]
    if unexpected or unloaded:
        keys = (unexpected or unloaded)[:3]
        what = "has weights the base model has no place for" if unexpected else "lacks weights"
        raise UserError(f"{mismatch}: the adapter {what} (e.g. {', '.join(keys)})")
    return model.eval()


def _reason(err: Exception) -> str:
    """The informative line of a PEFT/torch loading error, kept short."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    line = next((x for x in lines if "size mismatch" in x), lines[0] if lines else repr(err))
    return line if len(line) <= 240 else line[:237] + "..."


def merge_adapter(
    adapter_dir: str | Path,
    base: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Merge a LoRA adapter into its base model and save a full checkpoint (+ tokenizer) to `out`.

    `base` defaults to the base the adapter records. The merge runs on the CPU in float32.
    """
    from reasonlens.models import load_model

    adapter_dir = Path(adapter_dir)
    base = base or adapter_base(adapter_dir)
    if not base:
        raise UserError(f"{adapter_dir}: say which base model the adapter belongs to (--base)")
    if out is None:
        raise UserError("give the output directory for the merged model (--out)")
    out = check_out(out)
    if has_content(out):
        problem = replace_problem(out)
        if not overwrite:
            hint = (
                ", or pass --overwrite to replace the model reasonlens merged there"
                if problem is None
                else " (--overwrite replaces only a model reasonlens merged)"
            )
            raise UserError(f"{out} is not empty; choose another --out{hint}")
        if problem is not None:
            raise UserError(problem)
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise UserError(f"{adapter_dir} is not a PEFT adapter (no {ADAPTER_CONFIG})")
    loaded = load_model(base, device="cpu", dtype="float32")
    merged = attach_adapter(loaded.hf, adapter_dir).merge_and_unload()
    tokenizer = adapter_tokenizer(adapter_dir) or loaded.tokenizer
    save_checkpoint(merged, tokenizer, out)
    return out


def adapter_tokenizer(adapter_dir: Path) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved beside an adapter (the Trainer saves it there), if any."""
    if not (adapter_dir / "tokenizer_config.json").is_file():
        return None
    return AutoTokenizer.from_pretrained(str(adapter_dir))


def save_checkpoint(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | Path
) -> Path:
    """Write model + tokenizer to `out` via a temporary sibling and a rename: never half a model."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a fresh temporary name: nothing that was there before is ever deleted
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        model.config.use_cache = True  # training turns the KV cache off; generation wants it on
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        claim_all(tmp)  # the record of what reasonlens wrote, so --overwrite may replace it
        if out.exists() or out.is_symlink():
            remove_run(out)  # only what reasonlens wrote; refuses anything else
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own temporary directory
        raise
    return out
