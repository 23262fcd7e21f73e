"""The preferences study's presets: how many scenarios and trials, and how each model is
trained. Plain data, no torch: `reasonlens study list` and `--help` read them at once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reasonlens.train.recipe import Lora, Recipe, TrainRecipe

#: The fewest instilled scenarios a confidence interval over scenarios (and so a verdict) is
#: given for: resampling 2-4 scenarios says little about others. A preset with fewer is
#: refused before anything runs, unless it is a smoke test of the pipeline (`smoke`).
MIN_CI_SCENARIOS = 5


@dataclass(frozen=True)
class PreferencesPreset:
    """Sizes of one way to run the study (per scenario counts as the original's by default)."""

    name: str
    description: str
    n_instilled: int  # scenarios that receive target weights by fine-tuning
    n_native: int  # scenarios never trained on: the model's own (native) preferences
    instil: Recipe
    introspect: Recipe
    train_trials: int = 50  # per instilled scenario
    # also train on each training trial with its options swapped (see .data)
    mirror: bool = False
    val_trials: int = 10  # per instilled scenario (read out after training, never trained on)
    test_trials: int = 50  # fresh trials per instilled scenario, disjoint from the above
    native_trials: int = 100  # per native scenario
    reports: int = 10  # self-reports per scenario, each with its own trial
    introspect_examples: int = 1  # introspection-training examples per scenario (original: 1)
    # the scenarios, by short name (instilled, then native); empty: the catalogue's order
    scenarios: tuple[str, ...] = ()
    read_val: bool = True  # read the instilled model's decisions on the validation trials
    base_native: bool = True  # read the untrained model's decisions on the native trials too
    batch_size: int = 16  # read-out and report batches
    report_tokens: int = 128  # new tokens a self-report may take
    # also read every self-report from the logits of constrained choices (.readout), for a
    # model that never writes the JSON (about 6.5 s a report for SmolLM2-135M on 2 CPU cores)
    scored_reports: bool = True
    n_boot: int = 1000
    # read the validation trials every N optimizer steps of instillation (0: never); the
    # training loss alone cannot tell learnt values from a learnt base rate
    curve_every: int = 25
    regression: str = "l2"
    notes: tuple[str, ...] = field(default=())
    # a test of the pipeline only: fewer instilled scenarios than a CI needs are allowed (its
    # report then gives no verdicts)
    smoke: bool = False

    def scenario_names(self, catalogue: list[str]) -> tuple[list[str], list[str]]:
        """(instilled, native) short names."""
        chosen = list(self.scenarios) if self.scenarios else catalogue
        need = self.n_instilled + self.n_native
        return chosen[: self.n_instilled], chosen[self.n_instilled : need]

    def design(self) -> dict[str, Any]:
        """What the data depend on."""
        keys = (
            "n_instilled",
            "n_native",
            "train_trials",
            "mirror",
            "val_trials",
            "test_trials",
            "native_trials",
            "reports",
            "introspect_examples",
            "scenarios",
        )
        return {k: getattr(self, k) for k in keys}


#: A 2-core CPU. Measured here on SmolLM2-135M with held-out curves (README, the preferences
#: study): LoRA (top 6 or 10 layers, lr 3e-4 or 1e-3, bf16 or float32) and full fine-tuning
#: at 1e-4 learnt only the letters' base rate; full fine-tuning at 5e-5 on mirrored trials
#: turned logit(A) - logit(B) towards the targets on 2 scenarios x 400 passes (held-out r
#: 0.66), not on the 5 x 200 this preset can afford in 20 minutes. The 5 scenarios are the
#: fewest a confidence interval over scenarios is given for.
QUICK_INSTIL = Recipe(
    TrainRecipe(
        method="full",
        epochs=1,
        batch_size=8,
        learning_rate=5e-5,
        lr_scheduler="constant_with_warmup",
        warmup_ratio=0.05,
        dtype="bfloat16",
    ),
    save_steps=1000,
)

# the introspection round: LoRA on the top 10 layers, two epochs of small batches
QUICK_INTROSPECT = Recipe(
    TrainRecipe(
        method="lora",
        epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        lr_scheduler="cosine",
        warmup_ratio=0.05,
        dtype="bfloat16",
    ),
    lora=Lora(r=16, alpha=32, dropout=0.0, top_layers=10),
    save_steps=1000,
)

#: The successful open-weight replication's settings (LoRA 64/128 on every linear layer,
#: 3 epochs, batch 32, cosine with 3% warm-up, bf16, no NEFTune), with the learning rate a
#: model this small needs.
PAPER_INSTIL = Recipe(
    TrainRecipe(
        method="lora",
        epochs=3,
        batch_size=32,
        learning_rate=5e-4,
        lr_scheduler="cosine",
        warmup_ratio=0.03,
    ),
    lora=Lora(r=64, alpha=128, dropout=0.05),
)

#: The same recipe on the (fewer) introspection examples, 8 a batch.
PAPER_INTROSPECT = dataclasses.replace(
    PAPER_INSTIL, train=dataclasses.replace(PAPER_INSTIL.train, batch_size=8)
)

#: The cpu preset's instillation: the quick recipe (full fine-tuning at 5e-5, constant after
#: warm-up, bf16 autocast over float32 weights, batch 8), which alone turned the held-out logit
#: difference towards the targets here, on more passes a scenario: 6 scenarios x 150 trials
#: shown both ways (300 passes a scenario, 1,800 in all, 225 steps).
CPU_INSTIL = QUICK_INSTIL

QUICK = PreferencesPreset(
    name="quick",
    description="a 2-core CPU in under 20 minutes: 5 instilled scenarios x 100 training "
    "trials, each also shown mirrored (one epoch of full fine-tuning), 2 native; "
    "experiments 1-3 with the untrained model as control and a held-out learning curve",
    n_instilled=5,
    n_native=2,
    instil=QUICK_INSTIL,
    introspect=QUICK_INTROSPECT,
    train_trials=100,
    mirror=True,
    val_trials=10,
    test_trials=25,
    native_trials=25,
    reports=2,
    introspect_examples=6,
    read_val=False,
    base_native=False,
    report_tokens=96,
    # the smoke run keeps its 20 minutes: the scored read-out (about 4 minutes more) is the
    # cpu preset's
    scored_reports=False,
)

PRESETS: dict[str, PreferencesPreset] = {
    "quick": QUICK,
    # the quick design on more passes a scenario, more validation and test trials
    "cpu": dataclasses.replace(
        QUICK,
        name="cpu",
        description="a 2-core CPU in about 40 minutes: 6 instilled scenarios x 150 training "
        "trials, each also shown mirrored (1,800 passes of full fine-tuning), 30 validation "
        "trials a scenario read every 75 steps with their null, 40 test trials a scenario, "
        "2 native; experiments 1-3 with the untrained model as control",
        n_instilled=6,
        instil=CPU_INSTIL,
        train_trials=150,
        val_trials=30,
        test_trials=40,
        # a point reads 180 prompts (measured: ~140 CPU-s on one thread): 4 points, not 6
        curve_every=75,
        scored_reports=True,
    ),
    "paper": PreferencesPreset(
        name="paper",
        description="the original's sizes: 100 instilled scenarios x 50 training trials, 100 "
        "native, 10 reports each, introspection training on half (meant for a GPU)",
        n_instilled=100,
        n_native=100,
        instil=PAPER_INSTIL,
        introspect=PAPER_INTROSPECT,
        batch_size=64,
    ),
}


#: What a preset's report says of its budget (by preset name), beside the results.
BUDGET_NOTES = {
    "quick": (
        "This preset is the pipeline's smoke run: its budget (5 scenarios x 200 passes, about "
        "1,000 in all) is below what instillation needs on SmolLM2-135M (issue 12, this "
        "project's 2-core CPU: test r 0.26 [-0.19, 0.65], the CI includes 0). The `cpu` "
        "preset (6 scenarios x 300 passes, 1,800 in all) is the one sized to instil; measured "
        "on the same CPU in 39 min end to end, its held-out logit-fit r rose 0.15 -> 0.33 -> "
        "0.44 at steps 75/150/225 (null 95th percentile 0.28), and on the test trials it "
        "recovered the targets at r 0.490 [0.32, 0.67] (6 scenarios) against the untrained "
        "model's -0.070 [-0.51, 0.43], higher in 98.7% of paired resamples; the letters stay "
        'one-sided (every decision "B"), so that verdict rests on the logit read-out.'
    ),
}


def study_design(p: PreferencesPreset) -> dict[str, Any]:
    """What a run records of the preset (beyond the header every study has)."""
    return {
        "design": p.design(),
        "instil": {**p.instil.to_dict(), "curve_every": p.curve_every},
        "introspect": p.introspect.to_dict(),
        "readout": {"batch_size": p.batch_size, "report_tokens": p.report_tokens},
        "analysis": {"regression": p.regression, "n_boot": p.n_boot},
    }


def replace(p: PreferencesPreset, **changes: Any) -> PreferencesPreset:
    return dataclasses.replace(p, **changes)
