"""Proper scoring rules and calibration errors (ensembles/metrics.py) on hand-made cases."""

import numpy as np
import pytest

from ensembles import metrics


def test_a_perfectly_calibrated_case_has_zero_ece():
    # 10 predictions at confidence 0.8, 8 of them right; 10 at 0.6, 6 right.
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    labels = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    assert metrics.ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert metrics.mce(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert metrics.accuracy(probs, labels) == pytest.approx(0.7)


def test_an_overconfident_case_has_the_closed_form_ece():
    # Every prediction at 0.9, half right: ECE = MCE = |0.5 - 0.9|.
    probs = np.array([[0.9, 0.05, 0.05]] * 4)
    labels = np.array([0, 0, 1, 2])
    assert metrics.ece(probs, labels) == pytest.approx(0.4)
    assert metrics.mce(probs, labels) == pytest.approx(0.4)
    # Two bins: 2 of 4 at 0.9 (both right: gap 0.1) and 2 at 0.5 (both wrong: gap 0.5).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]])
    labels = np.array([0, 0, 1, 1])  # argmax of [0.5, 0.5] is class 0: wrong
    assert metrics.ece(probs, labels) == pytest.approx(0.5 * 0.1 + 0.5 * 0.5)
    assert metrics.mce(probs, labels) == pytest.approx(0.5)


def test_brier_and_nll_of_one_hot_and_hopeless_predictions():
    onehot = np.eye(3)[[0, 1, 2]]
    assert metrics.brier(onehot, [0, 1, 2]) == 0.0
    assert metrics.brier(onehot, [1, 2, 0]) == pytest.approx(2.0)  # the worst possible
    assert metrics.nll(onehot, [0, 1, 2]) == pytest.approx(0.0, abs=1e-6)
    hopeless = metrics.nll(onehot, [1, 2, 0])  # probability 0 on the truth: clipped, finite
    assert np.isfinite(hopeless) and hopeless == pytest.approx(-np.log(metrics.EPS))
    uniform = np.full((5, 4), 0.25)
    assert metrics.nll(uniform, [0, 1, 2, 3, 0]) == pytest.approx(np.log(4))
    assert metrics.brier(uniform, np.eye(4)[[0, 1, 2, 3, 0]]) == pytest.approx(0.75)


def test_reliability_bins_and_bad_input():
    table = metrics.reliability(np.array([[0.95, 0.05], [0.55, 0.45]]), [0, 1], bins=15)
    assert table["count"].sum() == 2 and len(table["edges"]) == 16
    assert table["count"][14] == 1 and table["count"][8] == 1  # (0.933, 1], (0.533, 0.6]
    with pytest.raises(ValueError, match="labels=.* is not accepted; expected 2 class indices"):
        metrics.scores(np.full((2, 3), 1 / 3), [0, 3])
    with pytest.raises(ValueError, match="probs=.* is not accepted; expected class probabilities"):
        metrics.scores(np.zeros((0, 3)), [])
