"""Temperature scaling and ECE, checked against a brute-force search and sums done by hand."""

import numpy as np
import pytest

from mnistlab.calibrate import apply_temperature, expected_calibration_error, fit_temperature


def _random_probs(n, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 10)) * 2
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rng.integers(0, 10, n)


def _overconfident(n, true_temperature, seed=0):
    """Labels drawn from softmax(z / T) while the 'model' reports softmax(z): over-confident by T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 10)) * 4
    truth = np.exp(z / true_temperature)
    truth /= truth.sum(1, keepdims=True)
    y = np.array([rng.choice(10, p=row) for row in truth])
    reported = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return reported, y


def test_fit_temperature_recovers_the_true_temperature():
    probs, y = _overconfident(20_000, true_temperature=2.0)
    t = fit_temperature(probs, y)
    assert t == pytest.approx(2.0, rel=0.05)
    # The oracle: a brute-force grid over T minimising the same cross-entropy.
    grid = np.linspace(0.5, 4, 351)
    nll = [-np.log(apply_temperature(probs, g)[np.arange(len(y)), y]).mean() for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nll))], abs=0.02)
    assert expected_calibration_error(apply_temperature(probs, t), y) < expected_calibration_error(probs, y) / 3


def test_temperature_keeps_the_ranking_and_one_is_identity():
    probs, _ = _random_probs(200)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-12)
    for t in (0.3, 3.0):
        scaled = apply_temperature(probs, t)
        np.testing.assert_allclose(scaled.sum(1), 1.0)
        np.testing.assert_array_equal(scaled.argmax(1), probs.argmax(1))
    softer, sharper = apply_temperature(probs, 3.0), apply_temperature(probs, 0.3)
    assert softer.max(1).mean() < probs.max(1).mean() < sharper.max(1).mean()


def test_expected_calibration_error_by_hand():
    # Certain and right half the time: |0.5 - 1.0| = 0.5. Two bins: 0.6 (right) and 0.9 (wrong).
    certain = np.eye(10)[[0, 1, 2, 3]]
    assert expected_calibration_error(certain, np.array([0, 1, 9, 9])) == pytest.approx(0.5)
    p = np.full((2, 10), 0.0)
    p[0, 0], p[0, 1:] = 0.6, 0.4 / 9
    p[1, 0], p[1, 1:] = 0.9, 0.1 / 9
    assert expected_calibration_error(p, np.array([0, 3])) == pytest.approx((abs(1 - 0.6) + abs(0 - 0.9)) / 2)
