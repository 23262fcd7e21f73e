"""TrainConfig: YAML + flags, validation, and helpful errors for unknown keys."""

from __future__ import annotations

import pytest

from reasonlens.errors import UserError
from reasonlens.train import TrainConfig, build_config


def test_flags_override_the_file_and_defaults_fill_the_rest(tmp_path, bw_file):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(
        f"data: {bw_file}\nmethod: lora\nlora-r: 4\nlearning_rate: 5e-5\nepochs: 2\n"
    )
    cfg = build_config(cfg_file, {"epochs": 1.5, "batch_size": None})
    assert cfg.method == "lora" and cfg.lora_r == 4
    assert cfg.learning_rate == 5e-5  # YAML reads 5e-5 as a string; it is taken as the number
    assert cfg.epochs == 1.5  # the flag wins
    assert cfg.batch_size == TrainConfig.__dataclass_fields__["batch_size"].default
    assert cfg.data == [bw_file]


def test_learning_rate_defaults_per_method(bw_file):
    assert TrainConfig(data=[bw_file], method="full").learning_rate == 5e-5
    assert TrainConfig(data=[bw_file], method="lora").learning_rate == 2e-4


def test_unknown_key_names_it_and_suggests_the_nearest(tmp_path, bw_file):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"data: {bw_file}\nlearning_rat: 1e-4\n")
    with pytest.raises(
        UserError, match=r"unknown option 'learning_rat' \(did you mean 'learning_rate'"
    ):
        build_config(cfg_file)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "qlora"}, "unknown method 'qlora'"),
        ({"batch_size": 0}, "batch_size must be a positive number"),
        ({"batch_size": "eight"}, "option 'batch_size' expects int"),
        ({"lr_scheduler": "cosin"}, "did you mean 'cosine'"),
        ({"data": ["/nonexistent/x.jsonl"]}, "data file not found"),
        ({"data": []}, "no training data"),
        ({"device": "cuda:1"}, "CUDA_VISIBLE_DEVICES"),
        ({"warmup_ratio": 1.5}, "warmup_ratio must be in"),
    ],
)
def test_bad_values_are_user_errors(bw_file, values, message):
    with pytest.raises(UserError, match=message):
        build_config(None, {"data": [bw_file], **values})


def test_a_config_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        build_config(path)
