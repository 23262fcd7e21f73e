"""GRPO on a tiny model: a constant reward changes nothing (no advantage; the KL term alone,
zero at the start), a varying one changes the weights; the same seed gives the same reward
curve; every step's completions come from one generate call; a bad reward stops the run naming
the completion; a killed run resumes from its last checkpoint to the uninterrupted result."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from reasonlens.errors import UserError
from reasonlens.testing import run_cli
from reasonlens.train import TrainConfig, train
from reasonlens.train.callbacks import read_log

REWARDS = """
def constant(item, completion, verdicts):
    return 0.5

def length(item, completion, verdicts):
    return len(completion) / 10

def broken(item, completion, verdicts):
    return None if len(completion) > 3 else 0.0
"""


@pytest.fixture(scope="module")
def rewards_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewards") / "toy_rewards.py"
    path.write_text(REWARDS)
    return str(path)


@pytest.fixture
def grpo(tiny_dir, bw_file, rewards_file):
    def make(reward: str | None = "length", **kwargs) -> TrainConfig:
        values = dict(
            data=[bw_file],
            model=tiny_dir,
            method="grpo",
            reward=f"{rewards_file}:{reward}" if reward else None,
            weights="full",
            max_steps=3,
            batch_size=4,
            prompts_per_step=2,
            num_generations=4,
            max_completion_length=12,
            learning_rate=1e-2,
            beta=0.0,
            save_steps=2,
            device="cpu",
        )
        values.update(kwargs)
        return TrainConfig(**values)

    return make


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def _changed(run, tiny_dir) -> list[str]:
    before, after = _weights(__import__("pathlib").Path(tiny_dir)), _weights(run / "model")
    return [k for k in before if not torch.equal(before[k], after[k])]


@pytest.mark.parametrize("beta", [0.0, 0.1], ids=["beta-0", "beta-0.1"])
def test_a_constant_reward_changes_nothing(grpo, tiny_dir, tmp_path, beta):
    """All completions of a group get the same reward: every advantage is 0, so the policy
    term has no gradient; with beta > 0 the loss is the KL term alone, which is 0 while the
    policy is the start model, so nothing moves (and the loss equals beta x KL each step)."""
    result = train(grpo("constant", beta=beta), tmp_path / "run", progress=False)
    assert _changed(result.run_dir, tiny_dir) == []
    for record in read_log(result.run_dir / "train_log.jsonl"):
        assert record["reward"] == 0.5 and record["zero_variance_groups"] == 1.0
        assert record["reward_group_spread"] == 0.0
        if beta:
            assert record["loss"] == pytest.approx(beta * record["kl"], abs=1e-7)
        else:
            assert record["loss"] == 0.0 and "kl" not in record


def test_a_varying_reward_changes_the_weights(grpo, tiny_dir, tmp_path):
    """The control for the test above: the same run with a reward that varies moves them."""
    result = train(grpo("length"), tmp_path / "run", progress=False)
    assert len(_changed(result.run_dir, tiny_dir)) > 0
    assert result.results["zero_variance_share"] < 1.0


def test_same_seed_same_reward_curve_and_one_generate_per_step(grpo, tmp_path):
    curves = []
    for name in ("a", "b"):
        result = train(grpo("length", weights="lora", beta=0.01), tmp_path / name, progress=False)
        records = read_log(result.run_dir / "train_log.jsonl")
        keys = ("reward", "reward_std", "loss", "kl", "completion_length")
        curves.append([[r[k] for k in keys] for r in records])
        assert [r["generate_calls"] for r in records] == [1.0] * 3  # one batched generate a step
    assert curves[0] == curves[1] and len(curves[0]) == 3
    other = train(grpo("length", weights="lora", beta=0.01, seed=1), tmp_path / "c", progress=False)
    other_rewards = [r["reward"] for r in read_log(other.run_dir / "train_log.jsonl")]
    assert other_rewards != [c[0] for c in curves[0]]  # the seed does drive the sampling


def test_the_run_directory_has_the_curve_summary_and_a_loadable_model(grpo, tmp_path):
    from reasonlens.models import load_model

    result = train(grpo("length", weights="lora", beta=0.01), tmp_path / "run", progress=False)
    run = result.run_dir
    for name in ("reward.png", "summary.md", "results.json", "config.yaml", "data.json"):
        assert (run / name).is_file(), name
    assert (run / "adapter").is_dir()
    r = json.loads((run / "results.json").read_text())
    assert r["method"] == "grpo" and r["weights"] == "lora" and r["steps"] == 3
    assert r["completions_sampled"] == 3 * 8 and 0 < r["generate_share"] < 1
    assert "zero reward variance" in (run / "summary.md").read_text()
    assert "max_length" not in (run / "config.yaml").read_text()  # an SFT-only option
    load_model(str(result.model_dir))
    again = train(grpo("length", weights="lora", beta=0.01), tmp_path / "run", progress=False)
    assert again.results == result.results  # finished: returns at once


def test_a_reward_returning_none_stops_the_run_naming_the_completion(grpo, tmp_path):
    with pytest.raises(UserError, match=r"returned NoneType None, not a finite number, for "):
        train(grpo("broken"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "results.json").exists()


class Killed(BaseException):
    pass


def test_a_killed_run_resumes_to_the_uninterrupted_curve(grpo, tmp_path, capsys):
    from reasonlens.train import grpo as grpo_module

    config = grpo("length", max_steps=4)
    reference = train(config, tmp_path / "ref", progress=False)
    ref_log = read_log(reference.run_dir / "train_log.jsonl")
    made = grpo_module._trainer_class

    def dying():
        cls = made()

        class Dying(cls):
            def training_step(self, *args, **kwargs):
                if self.state.global_step == 3:
                    raise Killed
                return super().training_step(*args, **kwargs)

        return Dying

    grpo_module._trainer_class = dying
    try:
        with pytest.raises(Killed):
            train(grpo("length", max_steps=4), tmp_path / "killed", progress=False)
    finally:
        grpo_module._trainer_class = made
    assert (tmp_path / "killed" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = train(grpo("length", max_steps=4), tmp_path / "killed", progress=False)
    assert resumed.results["resumed_from_step"] == 2
    log = read_log(resumed.run_dir / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["reward"] for r in log] == [r["reward"] for r in ref_log]
    assert _weights(resumed.model_dir).keys() == _weights(reference.model_dir).keys()
    for name, value in _weights(reference.model_dir).items():
        assert torch.equal(_weights(resumed.model_dir)[name], value), name


def test_the_cli_trains_with_grpo(tiny_dir, bw_file, tmp_path, capsys):
    code, _, err = run_cli(
        [
            "train", "--method", "grpo", "-d", bw_file, "-m", tiny_dir, "--max-steps", 1,
            "--batch-size", 4, "--prompts-per-step", 2, "--num-generations", 2,
            "--max-completion-length", 8, "--device", "cpu", "-q", "-o", tmp_path / "run",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "1 GRPO steps, reward" in err
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["reward"] == "blocksworld" and record["task"] == "blocksworld"
