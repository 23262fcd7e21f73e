"""The backtracking direction's pieces: where each backtrack starts in tokens, the windows
before it, the separation AUC of a planted direction, and the dose-response's monotone share
on a constructed sweep; then the study with --behaviour backtracking on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reasonlens.analyses.steering import SteeringResult
from reasonlens.studies.directions import behaviour as B
from reasonlens.tasks.backtracking.traces import to_record


def test_backtrack_starts_are_the_tokens_holding_their_first_character():
    from reasonlens.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    traces = B.maze_traces(3, 1, 1, (5, 7), seed=0)["train"]
    ids, starts = B.encode_traces(tok, traces)
    for trace, row, first in zip(traces, ids, starts, strict=True):
        rec = to_record(trace, "x")
        text = rec["prompt"] + rec["completion"]
        assert len(first) == len(trace.backtracks) >= 1
        offsets = tok(text, return_offsets_mapping=True)["offset_mapping"]
        for span, t in zip(rec["spans"], first, strict=True):
            char = len(rec["prompt"]) + span["start"]
            a, b = offsets[t]
            # the token holds the first character, or is the first token after it
            assert a <= char < b or (a >= char and offsets[t - 1][1] <= char)
            assert text[char:].startswith(tok.decode(row[t]).lstrip()[:3])


def test_windows_cover_the_tokens_before_each_start():
    (m,) = B.window_mask([10], [[3, 8]], 2)
    assert np.flatnonzero(m).tolist() == [1, 2, 6, 7]


def test_a_planted_direction_separates_its_windows():
    from reasonlens.trace.capture import Activations

    rng = np.random.default_rng(0)
    masks = [rng.random(50) < 0.2 for _ in range(3)]
    d = torch.zeros(8, dtype=torch.float64)
    d[2] = 1.0
    rows = torch.as_tensor(rng.normal(size=(150, 8)))
    rows[:, 2] += 3.0 * torch.as_tensor(np.concatenate(masks), dtype=torch.float64)
    site = f"layers.0.{B.SITE}"
    offsets = torch.tensor([0, 50, 100, 150])
    positions = torch.cat([torch.arange(50)] * 3)
    acts = Activations([site], {site: rows.float()}, offsets, positions, [[0] * 50] * 3, {})
    assert B.separation_auc(acts, 0, d, masks) > 0.95
    other = torch.zeros(8, dtype=torch.float64)
    other[5] = 1.0
    assert abs(B.separation_auc(acts, 0, other, masks) - 0.5) < 0.15


def _sweep(metric):
    m = torch.as_tensor(metric, dtype=torch.float64)
    return SteeringResult(
        "layers.0.resid_post", [-1.0, 0.0, 1.0], ["direction"], m, m * 0, None, [], 1.0
    )


def test_monotone_share_of_a_constructed_dose_response():
    rising = [[[0, 0, 1, 1], [1, 1, 2, 2], [3, 3, 3, 4]]]
    assert _sweep(rising).monotone_share("increase") == 1.0
    assert _sweep(rising).monotone_share("decrease") == 0.0
    flat = [[[0, 5, 0, 5], [5, 0, 5, 0], [0, 5, 0, 5]]]  # equal means: not a dose-response
    assert _sweep(flat).monotone_share("increase") == 0.0
    # alpha means m, 4 - m, m + 1 (m: a resample's mean at -1) are monotone only at m = 2,
    # which a resample of the four prompts hits with probability 6/16
    noisy = [[[0, 4, 0, 4], [4, 0, 4, 0], [1, 5, 1, 5]]]
    assert _sweep(noisy).monotone_share("increase") == pytest.approx(6 / 16, abs=0.06)


def test_counts_backtracks_with_the_checker():
    traces = B.maze_traces(2, 0, 0, (5, 7), seed=1)["train"]
    texts = [to_record(t, "x")["completion"] for t in traces]
    got = B.count_backtracks(texts, [t.maze for t in traces])
    assert got.tolist() == [len(t.backtracks) for t in traces]
    assert B.count_backtracks(["no search here"], [traces[0].maze]).tolist() == [0]


def test_rescored_scores_each_completion_with_its_prompt_index():
    texts = [[["a", "bb"], ["ccc", "d"]]]  # [vectors][alphas][prompts]
    sweep = SteeringResult(
        "layers.0.resid_post",
        [0.0, 1.0],
        ["direction"],
        torch.zeros(1, 2, 2, dtype=torch.float64),
        torch.zeros(1, 2, 2),
        None,
        texts,
        1.0,
    )
    got = sweep.rescored(lambda i, text: 10.0 * i + len(text)).metric
    assert got.dtype == torch.float64
    assert got.tolist() == [[[1.0, 12.0], [3.0, 11.0]]]
