"""Cross-fitted probes: every row scored once by probes that never saw it (known answers: a
planted direction is read everywhere, noise stays at its controls, each fold equals a plain
fit on the other folds)."""

import pytest
import torch

from reasonlens.analyses.probes import cross_fit_probes, fit_probes
from reasonlens.errors import UserError

pytestmark = pytest.mark.usefixtures("single_thread")


def _data(n=60, d=8, seed=0, planted=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, d, generator=gen)  # two probes (e.g. two layers)
    y = torch.randint(0, 2, (n,), generator=gen)
    if planted:
        x[0, :, 0] += 4.0 * (2 * y - 1)  # probe 0 can read y; probe 1 is noise
    return x, y


def test_every_row_is_scored_and_a_planted_direction_is_read():
    x, y = _data()
    result = cross_fit_probes(x, y, folds=5, seed=1)
    assert int(result.n_test[0, 0]) == 60 and result.config["cross_fit_folds"] == 5
    acc = result.score().value[:, 0]
    assert acc[0] > 0.95  # the planted probe
    assert abs(float(acc[1]) - 0.5) < 0.2  # noise: near chance
    control = result.score("control").value[:, 0]
    assert control[0] < 0.8  # the shuffled-label control cannot read the planted direction
    base = result.score("baseline").value[:, 0]
    assert (base <= 0.7).all()


def test_noise_stays_at_its_control():
    x, y = _data(n=80, planted=False, seed=3)
    result = cross_fit_probes(x, y, folds=4, seed=2)
    probe = result.score().mean
    control = result.score("control").mean
    assert (probe - control).abs().max() < 0.2
    assert (result.score().mean_low < 0.5).all()  # intervals include chance


def test_each_fold_equals_a_plain_fit_on_the_other_folds():
    x, y = _data(n=30, seed=5)
    folds = 3
    crossed = cross_fit_probes(x, y, folds=folds, seed=4, bootstrap=0, control=False)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(4))
    correct = torch.zeros(2)
    for fold in order.tensor_split(folds):
        test = fold.sort().values
        train = order[~torch.isin(order, test)].sort().values
        plain = fit_probes(x, y, train, test, seed=4, bootstrap=0, control=False)
        correct += plain.score().value[:, 0] * len(test)
    torch.testing.assert_close(crossed.score().value[:, 0], correct / 30)


def test_bad_fold_counts_are_refused():
    x, y = _data(n=10)
    with pytest.raises(UserError, match="2 to 10 folds"):
        cross_fit_probes(x, y, folds=1)
