"""The directions study's presets: sizes of the contrast splits, the candidate layers, the
steering sweep and its controls."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DirectionsPreset:
    name: str
    description: str
    # problems per split: directions from `train`, the layer chosen on `val`, effects on `test`
    train: int = 32
    val: int = 16
    test: int = 12
    # candidate layers for selection: this many evenly spaced (None: every layer), or the
    # user's --layers (layer_specific)
    candidates: int | None = 6
    needs_layers: bool = False
    # steering doses, per model and direction: -a..a in `doses` steps a side, `a` the largest
    # candidate whose steering (either sign) moves the next token on validation control
    # prompts by a mean KL <= steer_kl_max nats (analyses.steering.kl_bounded_alphas)
    alpha_candidates: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    steer_kl_max: float = 0.5
    grid_prompts: int | None = None  # validation control prompts the KL is taken on (None: all)
    doses: int = 2
    n_random: int = 2
    # the controls (random directions, the shuffled-label or random-window direction) at every
    # dose, or only at the two end doses where the verdicts are judged (quick: a third fewer
    # rows; the direction keeps its whole dose-response)
    controls_every_dose: bool = True
    max_new_tokens: int = 5
    shuffles: int = 1
    kl_max: float = 0.1
    batch_size: int = 16
    resamples: int = 1000
    # activation patching: pairs of one token length, at most `patch_pairs`, found among
    # `patch_pool` extra problems (built-in arithmetic; a user's file patches its test split)
    patch_pool: int = 160
    patch_pairs: int = 16
    # path patching from each candidate layer's attention and MLP output to the last layer's
    # input (off in quick: it is not in the quick budget)
    path_patching: bool = False
    # the backtracking direction (maze models): windows of `window` tokens before each
    # backtrack in gold traces (train / val / test mazes), steered on the test mazes for
    # `chain_tokens` new tokens, `generate_batch` rows a generate call (quick's 96: the gold
    # chains of 5-7 rooms are 81-85 tokens at the median, their first backtrack at 23-59)
    window: int = 8
    maze_train: int = 24
    maze_val: int = 8
    maze_test: int = 8
    maze_rooms: tuple[int, int] = (5, 7)
    chain_tokens: int = 96
    generate_batch: int = 96

    def to_dict(self) -> dict:
        return asdict(self)


QUICK = DirectionsPreset(
    "quick_test",
    "CPU, <= 15 min on smollm2-135m: 32/16/12 problems per split, 6 candidate layers, "
    "5 doses up to the largest alpha within a mean KL of 0.5 on 8 validation prompts, 2 "
    "random-direction controls and a shuffled-label direction at the end doses",
    controls_every_dose=False,
    grid_prompts=8,
)
FULL = DirectionsPreset(
    "full_analysis",
    "GPU, the seed's size: 500 problems (300/100/100), every layer a candidate, 7 doses up "
    "to the largest alpha within a KL of 0.5, 5 random controls",
    train=300,
    val=100,
    test=100,
    candidates=None,
    alpha_candidates=(0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0),
    doses=3,
    patch_pool=1000,
    patch_pairs=100,
    path_patching=True,
    n_random=5,
    max_new_tokens=8,
    shuffles=5,
    batch_size=64,
    maze_train=200,
    maze_val=50,
    maze_test=100,
    maze_rooms=(6, 12),
    chain_tokens=512,
)
LAYERS = DirectionsPreset(
    "layer_specific",
    "quick's sizes, the candidate layers given by --layers (e.g. 8-20 or 4,8,12)",
    controls_every_dose=False,
    grid_prompts=8,
    candidates=None,
    needs_layers=True,
)

PRESETS = {"quick_test": QUICK, "quick": QUICK, "full_analysis": FULL, "layer_specific": LAYERS}
