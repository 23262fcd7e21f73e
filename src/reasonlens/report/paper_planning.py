"""The planning paper's own figures, as numbers read out of its plots (spec: planning.md [F]).

Llama-2-7b-chat unless noted; layers are 0-indexed as plotted (32 layers). Curve values are
accurate to about ±0.01; heat-map and matrix labels are exact.
"""

from __future__ import annotations

# Figure 3 (Llama): extraction rate per layer; layers 0-13 are 0.00 for all three curves.
_ZEROS = [0.0] * 14
EXTRACTION_LLAMA = {
    "attn_out": _ZEROS
    + [.03, .00, .20, .46, .42, .71, .49, .11, .35, .14, .55, .20, .85, .00, .01, .49, .36, .42],
    "mlp_out": _ZEROS
    + [.00, .00, .02, .00, .10, .12, .15, .23, .30, .30, .36, .05, .14, .21, .38, .31, .00, .19],
    "resid_post": _ZEROS
    + [.00, .03, .11, .23, .38, .79, .94, .98, .97, .96, .98, .98, .98, .98, .98, .99, .98, .92],
}

# Figure 6 (Llama, linear probe): current block state, weighted F1 at layers 0,4,...,28.
PROBE_LAYERS = [0, 4, 8, 12, 16, 20, 24, 28]
STATE_PROBE_LLAMA = {
    "init": [.45, .89, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    "goal": [.43, .43, .86, 1.0, 1.0, 1.0, 1.0, 1.0],
    "s2-act": [.48, .49, .55, .81, .95, .95, .95, .97],
    "s2-col": [.53, .56, .72, .82, .89, .92, .97, .97],
    "s4-act": [.50, .50, .67, .85, .87, .89, .89, .89],
    "s4-col": [.49, .49, .70, .80, .85, .84, .83, .84],
    "s6-act": [.44, .44, .56, .77, .77, .76, .76, .76],
    "s6-col": [.37, .44, .57, .67, .68, .71, .70, .71],
}

# Figure 10 (Llama, linear): future-decision accuracy, max over layers; FUTURE[r][c] is the
# accuracy of predicting step r from step c's position (steps 1-based).
FUTURE_MATRIX_LLAMA = {
    2: {1: .85},
    3: {1: .95, 2: .81},
    4: {1: .70, 2: .78, 3: .81},
    5: {1: .72, 2: .55, 3: .89, 4: .71},
    6: {1: .51, 2: .52, 3: .69, 4: .64, 5: .80},
}

# Figure 15 (Llama): history intervention impact; IMPACT[t][i] = impact on step t of
# unmasking history step i.
IMPACT_LLAMA = {
    2: {1: .06},
    3: {1: .70, 2: .00},
    4: {1: .28, 2: .16, 3: .65},
    5: {1: .16, 2: .04, 3: .38, 4: .08},
    6: {1: .14, 2: .04, 3: -.00, 4: .04, 5: .56},
}

# Section 5.2 read-outs (Llama): the goal state gets flow at every step; at step 5, history 3
# and 4 (0.45, 0.33) outshine history 1-2 (<= 0.15); the action prompt is the largest chunk
# at steps 1-5; the init state matters mainly at step 1 (0.60).
FLOW_CLAIMS = {
    "goal_state_every_step": True,
    "step5_recent_history_beats_old": True,
    "init_state_mainly_step1": True,
}

S_PLAN_L3_6 = {"Llama-2-7b-chat": 0.61, "Vicuna-7B": 0.63}
