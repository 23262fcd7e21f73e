"""The planning paper's own figures, as numbers read out of its plots (spec: planning.md [F]).

Llama-2-7b-chat unless noted; layers are 0-indexed as plotted (32 layers). Curve values are
accurate to about ±0.01; heat-map and matrix labels are exact.
"""

from __future__ import annotations

# Figure 3 (Llama): extraction rate per layer; layers 0-13 are 0.00 for all three curves.
_ZEROS = [0.0] * 14
EXTRACTION_LLAMA = {
    "attn_out": _ZEROS
    + [
        0.03,
        0.00,
        0.20,
        0.46,
        0.42,
        0.71,
        0.49,
        0.11,
        0.35,
        0.14,
        0.55,
        0.20,
        0.85,
        0.00,
        0.01,
        0.49,
        0.36,
        0.42,
    ],
    "mlp_out": _ZEROS
    + [
        0.00,
        0.00,
        0.02,
        0.00,
        0.10,
        0.12,
        0.15,
        0.23,
        0.30,
        0.30,
        0.36,
        0.05,
        0.14,
        0.21,
        0.38,
        0.31,
        0.00,
        0.19,
    ],
    "resid_post": _ZEROS
    + [
        0.00,
        0.03,
        0.11,
        0.23,
        0.38,
        0.79,
        0.94,
        0.98,
        0.97,
        0.96,
        0.98,
        0.98,
        0.98,
        0.98,
        0.98,
        0.99,
        0.98,
        0.92,
    ],
}

# Figure 6 (Llama, linear probe): current block state, weighted F1 at layers 0,4,...,28.
STATE_PROBE_LLAMA = {
    "init": [0.45, 0.89, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    "goal": [0.43, 0.43, 0.86, 1.0, 1.0, 1.0, 1.0, 1.0],
    "s2-act": [0.48, 0.49, 0.55, 0.81, 0.95, 0.95, 0.95, 0.97],
    "s2-col": [0.53, 0.56, 0.72, 0.82, 0.89, 0.92, 0.97, 0.97],
    "s4-act": [0.50, 0.50, 0.67, 0.85, 0.87, 0.89, 0.89, 0.89],
    "s4-col": [0.49, 0.49, 0.70, 0.80, 0.85, 0.84, 0.83, 0.84],
    "s6-act": [0.44, 0.44, 0.56, 0.77, 0.77, 0.76, 0.76, 0.76],
    "s6-col": [0.37, 0.44, 0.57, 0.67, 0.68, 0.71, 0.70, 0.71],
}

# Figure 10 (Llama, linear): future-decision accuracy, max over layers; FUTURE[r][c] is the
# accuracy of predicting step r from step c's position (steps 1-based).
FUTURE_MATRIX_LLAMA = {
    2: {1: 0.85},
    3: {1: 0.95, 2: 0.81},
    4: {1: 0.70, 2: 0.78, 3: 0.81},
    5: {1: 0.72, 2: 0.55, 3: 0.89, 4: 0.71},
    6: {1: 0.51, 2: 0.52, 3: 0.69, 4: 0.64, 5: 0.80},
}

# Figure 15 (Llama): history intervention impact; IMPACT[t][i] = impact on step t of
# unmasking history step i.
IMPACT_LLAMA = {
    2: {1: 0.06},
    3: {1: 0.70, 2: 0.00},
    4: {1: 0.28, 2: 0.16, 3: 0.65},
    5: {1: 0.16, 2: 0.04, 3: 0.38, 4: 0.08},
    6: {1: 0.14, 2: 0.04, 3: -0.00, 4: 0.04, 5: 0.56},
}

# Section 2: complete-plan success (S_plan) on L3 with 6 blocks (709 problems), fine-tuned.
S_PLAN_L3_6 = {"Llama-2-7b-chat": 0.61, "Vicuna-7B": 0.63}
