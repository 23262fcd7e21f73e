"""A new study is a short declaration: two models (the base and the one a training stage made)
and one analysis, wired from the study kit and reported through the builder. The study below
is the whole of what such a study writes (about 70 lines); the test checks that the kit and the
builder give it everything else: the config and results headers, the training section,
provenance from the stage list, verdicts first, the analysis saved through save_result, and a
resume that re-runs nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reasonlens.report.builder import Claim, Claims, Report, Section
from reasonlens.report.verdicts import Estimate, by_interval
from reasonlens.runs import Stage
from reasonlens.studies.base import Settings, Study, run_study
from reasonlens.studies.kit import (
    BASE,
    analysis_stage,
    base_inputs,
    load_role,
    train_stage,
    weights_of,
)
from reasonlens.train.recipe import TrainRecipe

PAIRS = [{"prompt": f"Q: {i} plus one?\nA:", "completion": f" {i + 1}"} for i in range(12)]
CALLS: list[str] = []  # the analyses run, for the resume check


@dataclass(frozen=True)
class ToyPreset:
    name: str = "tiny"
    description: str = "test only"
    train: TrainRecipe = TrainRecipe(method="full", epochs=3, batch_size=4, learning_rate=3e-3)


def _data(directory: Path, upstream: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))


def _completion_nll(model, pair: dict) -> float:
    import torch

    tok = model.tokenizer
    prompt = tok(pair["prompt"])["input_ids"]
    ids = torch.tensor([prompt + tok(pair["completion"], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logp = model.hf(ids).logits.log_softmax(-1)[0, :-1]
    picked = logp.gather(1, ids[0, 1:, None])[:, 0]
    return float(-picked[len(prompt) - 1 :].mean())


def _stages(p: ToyPreset, settings: Settings) -> list[Stage]:
    def gain(directory: Path, upstream: dict) -> dict:
        """Per pair: the base model's completion loss minus the fine-tuned model's."""
        CALLS.append("gain")
        loss = {
            role: [_completion_nll(load_role(role, settings, upstream), x) for x in PAIRS]
            for role in (BASE, "train")
        }
        return {"gain": [b - f for b, f in zip(loss[BASE], loss["train"], strict=True)]}

    files = lambda up: [str(Path(up["data"]) / "pairs.jsonl")]  # noqa: E731
    return [
        Stage("data", {"n": len(PAIRS)}, _data, lambda d: str(d)),
        train_stage("train", p.train, settings, files, {"train": p.train.__dict__}),
        analysis_stage("gain", base_inputs(settings), gain, depends=weights_of(tuned="train")),
    ]


def _report(run, results: dict, stages: dict) -> Report:
    gain = np.array(results["gain"])
    means = [gain[i].mean() for i in np.random.default_rng(0).integers(0, len(gain), (500, 12))]
    low, high = np.percentile(means, [2.5, 97.5])
    said = by_interval(Estimate(float(gain.mean()), float(low), float(high)))
    claim = Claim("fine-tuning lowers the completion loss", f"{gain.mean():.3f}", said)
    return Report(
        title="Toy study",
        sections=[Section("Completion loss", [Claims([claim], reference=None, control=None)])],
        data=f"data: {len(PAIRS)} pairs",
    )


TOY = Study(
    name="toy",
    title="Toy",
    summary="two models, one analysis",
    presets={"tiny": ToyPreset()},
    default_preset="tiny",
    design=lambda p, s: {"train": p.train.__dict__},
    stages=_stages,
    results=lambda p, s, stages: {"gain": stages["gain"]["gain"]},
    report=_report,
)


def test_a_two_model_one_analysis_study_is_a_short_declaration(tiny_dir, tmp_path):
    settings = Settings(preset="tiny", model=str(tiny_dir), progress=False)
    out = tmp_path / "toy"
    results = run_study(TOY, settings, out)
    assert (results["preset"], results["seed"]) == ("tiny", 0)  # the header, from the kit
    assert set(results["timings_s"]) == {"data_s", "train_s", "gain_s"}
    assert len(results["gain"]) == len(PAIRS)
    assert json.loads((out / "gain" / "gain.json").read_text())["gain"] == results["gain"]
    report = (out / "report.md").read_text()
    assert report.index("## Verdicts at a glance") < report.index("## Completion loss")
    assert "| fine-tuning lowers the completion loss |" in report
    assert "## Training" in report and "| train | full | 12 |" in report
    assert "per-stage runs: `data/`, `train/`, `gain/`" in report
    summary = (out / "summary.md").read_text()
    assert "Verdicts at a glance" in summary and "Full report" in summary
    config = (out / "config.yaml").read_text()
    assert "study: toy" in config and "preset: tiny" in config
    assert run_study(TOY, settings, out)["gain"] == results["gain"]
    assert CALLS == ["gain"]  # a resumed run re-runs no stage


def test_the_declaration_is_short():
    source = Path(__file__).read_text()
    declared = source[source.index("PAIRS = ") : source.index("def test_a_two_model")]
    lines = [x for x in declared.splitlines() if x.strip() and not x.strip().startswith("#")]
    assert len(lines) < 90, len(lines)
