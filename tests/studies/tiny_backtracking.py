"""The tiny backtracking study's inputs, shared by its tests and the conftest fixtures that run
it once per session: the tiny preset, the gold traces that replace a random model's sampling,
and a user's annotated chains file."""

from __future__ import annotations

import json
from pathlib import Path

from reasonlens.studies.backtracking.presets import BacktrackingPreset
from reasonlens.train.recipe import TrainRecipe

LAGS = (-4, 0, 4, 8)
TINY = BacktrackingPreset(
    name="tiny",
    description="test only",
    n_train=8,
    n_chains=30,
    train=TrainRecipe(method="full", epochs=1, batch_size=4, learning_rate=1e-3),
    max_new_tokens=16,
    sample_batch=8,
    n_layers=2,
    capture_batch=8,
    lags=LAGS,
    bootstrap=50,
    null_permutations=20,
)


def gold_samples(model, records, *args, **kwargs):
    """What a model that had learnt the traces would write: the gold completion, with the
    last chain cut short of the largest lag (too short to probe) and one unreadable."""
    out = []
    for i, r in enumerate(records):
        text = r["completion"]
        if i == 0:
            text = text[:6]
        elif i == 1:
            text = "Let me think about this maze in my own words."
        out.append({"id": r["id"], "maze": r["maze"], "prompt": r["prompt"], "text": text})
    return out


CHAIN = (
    "Okay, so I need to add the numbers one at a time and see where that leads me in the end. "
    "First two plus two is four, then four plus three is seven, and seven plus one is eight. "
    "Wait, I added the three twice, so I should go back and start again from the top here. "
    "Two plus two is four, four plus one is five, so the answer is five and I am done now."
)


def annotated(n: int) -> list[dict]:
    """`n` chains in the annotated-chains layout, each with one backtracking sentence."""
    first, wait, rest = CHAIN.partition("Wait")
    wait_sentence, _, tail = (wait + rest).partition("here. ")
    records = []
    for i in range(n):
        records.append(
            {
                "task_id": i,
                "problem": f"Add the numbers (case {i}).",
                "reasoning_chain": CHAIN,
                "annotated_chain": f'["deduction"]{first.strip()}["end-section"] '
                f'["backtracking"]{wait_sentence}here.["end-section"] '
                f'["deduction"]{tail.strip()}["end-section"]',
            }
        )
    return records


def file_run(tiny_dir, directory: Path) -> list:
    """`study backtracking` on 12 annotated chains written to `directory` (no --out)."""
    path = directory / "chains.json"
    path.write_text(json.dumps(annotated(12)))
    return [
        "study",
        "backtracking",
        "--preset",
        "tiny",
        "--model",
        tiny_dir,
        "--chains",
        path,
        "--template",
        "raw",
        "--quiet",
    ]
