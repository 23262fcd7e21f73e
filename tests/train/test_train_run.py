"""End to end on a tiny model: LoRA and full runs, the merged model, reproducibility, resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import TrainerCallback

from reasonlens.errors import UserError
from reasonlens.models import load_model, load_tokenizer
from reasonlens.models.prompts import pad_batch
from reasonlens.train import attach_adapter, read_pairs, train
from reasonlens.train.batching import grouped_order
from reasonlens.train.callbacks import read_log
from reasonlens.train.data import IGNORE, tokenize_pairs


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_dir, bw_file):
    from reasonlens.train import TrainConfig

    config = TrainConfig(
        data=[bw_file], model=tiny_dir, method="lora", max_steps=4, batch_size=2,
        learning_rate=1e-2, save_steps=2, device="cpu",
    )  # fmt: skip
    out = tmp_path_factory.mktemp("runs") / "lora"
    return config, train(config, out, progress=False)


def _logits(hf, ids):
    with torch.no_grad():
        return hf(input_ids=ids).logits


def test_lora_run_writes_a_complete_run_directory(lora_run):
    _, result = lora_run
    run = result.run_dir
    for name in ("run.json", "config.yaml", "data.json", "train_log.jsonl", "loss.png",
                 "results.json", "summary.md", "adapter/adapter_config.json", "model/config.json",
                 "model/tokenizer_config.json"):  # fmt: skip
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "checkpoint-4").is_dir()
    assert [r["step"] for r in read_log(run / "train_log.jsonl")] == [1, 2, 3, 4]
    results = json.loads((run / "results.json").read_text())
    assert results == result.results
    assert results["steps"] == 4 and results["method"] == "lora"
    assert results["padding_fraction"] <= 0.10
    assert 0 < results["trained_tokens"] <= results["computed_positions"]
    assert results["final_loss"] < results["first_loss"]
    assert result.model_dir == run / "model" and result.adapter_dir == run / "adapter"


def test_merged_lora_model_gives_the_peft_model_logits(lora_run, tiny_dir):
    _, result = lora_run
    ids = torch.tensor([list(range(3, 40))])
    base = load_model(tiny_dir, device="cpu").hf
    base_logits = _logits(base, ids)
    peft_logits = _logits(attach_adapter(base, result.adapter_dir), ids)
    merged = load_model(str(result.model_dir), device="cpu")
    merged_logits = _logits(merged.hf, ids)
    assert (peft_logits - base_logits).abs().max() > 1e-3  # the adapter learned something
    torch.testing.assert_close(merged_logits, peft_logits, atol=1e-5, rtol=1e-5)
    assert not any("lora" in name for name, _ in merged.hf.named_parameters())
    # the run directory itself loads as the model it trained
    torch.testing.assert_close(_logits(load_model(str(result.run_dir)).hf, ids), merged_logits)


def test_full_fine_tuning_writes_a_loadable_model(quick, tmp_path, tiny_dir):
    result = train(quick(method="full", max_steps=2), tmp_path / "full", progress=False)
    assert result.adapter_dir is None and not (result.run_dir / "adapter").exists()
    trained = load_model(str(result.model_dir), device="cpu").hf
    base = load_model(tiny_dir, device="cpu").hf
    changed = [
        name
        for (name, p), (_, q) in zip(
            trained.named_parameters(), base.named_parameters(), strict=True
        )
        if not torch.equal(p, q)
    ]
    assert "model.layers.0.self_attn.q_proj.weight" in changed
    assert result.results["trainable_parameters"] == result.results["parameters"]


def test_the_loss_is_hf_cross_entropy_over_completion_tokens(quick, tmp_path, tiny_dir, bw_file):
    """Known answer: the first logged loss equals HF's own loss on the first batch."""
    result = train(quick(method="full", max_steps=1), tmp_path / "r", progress=False)
    tokenized = tokenize_pairs(load_tokenizer(tiny_dir), read_pairs([bw_file])[0], 1024)
    first = grouped_order([len(t.input_ids) for t in tokenized], 2, seed=0)[:2]
    batch = pad_batch([tokenized[i].input_ids for i in first], pad_id=0)
    width = batch["input_ids"].shape[1]
    labels = torch.tensor(
        [tokenized[i].labels + [IGNORE] * (width - len(tokenized[i].labels)) for i in first]
    )
    with torch.no_grad():
        expected = load_model(tiny_dir, device="cpu").hf(**batch, labels=labels).loss.item()
    assert result.results["first_loss"] == pytest.approx(expected, abs=1e-5)


class StopAt(TrainerCallback):
    """Simulates Ctrl-C after `step` optimizer steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_same_seed_same_numbers_and_an_interrupted_run_resumes(quick, tmp_path):
    config = quick(max_steps=4, save_steps=2)
    first = train(config, tmp_path / "a", progress=False).results
    second = train(config, tmp_path / "b", progress=False).results
    assert first["final_loss"] == second["final_loss"]
    losses = [[r["loss"] for r in read_log(tmp_path / d / "train_log.jsonl")] for d in "ab"]
    assert losses[0] == losses[1]

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "c", progress=False, callbacks=[StopAt(3)])
    assert not (tmp_path / "c" / "results.json").exists()
    assert (tmp_path / "c" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = train(config, tmp_path / "c", progress=False).results
    assert resumed["resumed_from_step"] == 2  # continued from the checkpoint, not from 0
    assert resumed["steps"] == 4
    assert [r["step"] for r in read_log(tmp_path / "c" / "train_log.jsonl")] == [1, 2, 3, 4]
    # the resumed run computes exactly what the uninterrupted one did
    assert resumed["final_loss"] == first["final_loss"]
    assert resumed["trained_tokens"] == first["trained_tokens"]
    assert resumed["padding_fraction"] == first["padding_fraction"]


def test_a_finished_run_is_not_trained_again(lora_run):
    config, result = lora_run
    log_before = (result.run_dir / "train_log.jsonl").read_text()
    again = train(config, result.run_dir, progress=False)
    assert again.results == result.results
    assert (result.run_dir / "train_log.jsonl").read_text() == log_before


def test_a_different_run_in_the_directory_is_refused_unless_overwrite(quick, tmp_path):
    out = tmp_path / "run"
    train(quick(max_steps=1), out, progress=False)
    with pytest.raises(UserError, match="differs in: lora_r"):
        train(quick(max_steps=1, lora_r=4), out, progress=False)
    result = train(quick(max_steps=1, lora_r=4), out, overwrite=True, progress=False)
    assert result.results["steps"] == 1
    assert json.loads((out / "run.json").read_text())["config"]["lora_r"] == 4


def test_changed_data_is_refused_on_resume(quick, tmp_path, bw_file):
    data = tmp_path / "data.jsonl"
    shutil.copy(bw_file, data)
    config = quick(data=[str(data)], max_steps=1)
    train(config, tmp_path / "run", progress=False)
    data.write_text(data.read_text().splitlines()[0] + "\n")
    with pytest.raises(UserError, match="different data"):
        train(config, tmp_path / "run", progress=False)
