"""Supervised fine-tuning (LoRA or full) on prompt/completion data, via transformers/PEFT/TRL.

    from reasonlens.train import TrainConfig, train
    result = train(TrainConfig(data=["data/bw/L3_train.jsonl"], method="lora"), "runs/ft")
    result.model_dir            # a full checkpoint: load_model(str(result.model_dir))

The loss covers the completion (and its EOS) only; batches group examples of similar length;
re-running into the same directory resumes. See docs/training.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reasonlens.lazy import lazy_exports
from reasonlens.train.config import TrainConfig, build_config

if TYPE_CHECKING:
    from reasonlens.train.data import Pair, read_pairs, tokenize_pair
    from reasonlens.train.merge import attach_adapter, merge_adapter
    from reasonlens.train.run import TrainResult, train

# Public name -> the submodule that defines it. These pull in torch/transformers/peft/trl, so
# they load on first access (PEP 562): `reasonlens train --help` needs only the config.
_LAZY = {
    "Pair": "data",
    "read_pairs": "data",
    "tokenize_pair": "data",
    "attach_adapter": "merge",
    "merge_adapter": "merge",
    "TrainResult": "run",
    "train": "run",
}

__all__ = [
    "Pair",
    "TrainConfig",
    "TrainResult",
    "attach_adapter",
    "build_config",
    "merge_adapter",
    "read_pairs",
    "tokenize_pair",
    "train",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
