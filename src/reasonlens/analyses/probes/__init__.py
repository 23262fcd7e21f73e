"""Probes on cached activations: linear and MLP, many at once, with baselines and controls.

Typical use, with feats [layers, positions, N, d] and labels [N, H]:

- `train, test = train_test_split(400, 0.2, seed=0)`
- `result = fit_probes(feats, labels, train, test, metric="weighted_f1")`
- `result.score().value` is [P, H] test scores (`.low` / `.high`: bootstrap interval);
  `result.baseline` the majority class; `result.control` the same probe on shuffled labels
- `cross_fit_probes(feats, labels, folds=5)` scores every row once, each predicted by probes
  trained on the other folds (small data sets keep all their rows for scoring)
- `result.plot("probes.png")` draws score against layer, one line per position
- `result.direction((layer, position), head, cls)` is a linear probe's direction in
  activation space, for steering
"""

from reasonlens.analyses.probes.fit import cross_fit_probes, fit_probes, train_test_split
from reasonlens.analyses.probes.metrics import accuracy, weighted_f1
from reasonlens.analyses.probes.result import ProbeResult, Score

__all__ = [
    "ProbeResult",
    "Score",
    "accuracy",
    "cross_fit_probes",
    "fit_probes",
    "train_test_split",
    "weighted_f1",
]
