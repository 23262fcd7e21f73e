"""Supervised fine-tuning (LoRA or full) on prompt/completion data, via transformers/PEFT/TRL.

    from reasonlens.train import TrainConfig, train
    result = train(TrainConfig(data=["data/bw/L3_train.jsonl"], method="lora"), "runs/ft")
    result.model_dir            # a full checkpoint: load_model(str(result.model_dir))

The loss covers the completion (and its EOS) only; batches group examples of similar length;
re-running into the same directory resumes. See docs/training.md.
"""

from reasonlens.train.config import TrainConfig, build_config
from reasonlens.train.data import Pair, read_pairs, tokenize_pair
from reasonlens.train.merge import attach_adapter, merge_adapter
from reasonlens.train.run import TrainResult, train

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
