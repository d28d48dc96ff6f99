"""Evaluation metrics, checked against scikit-learn and Keras as independent oracles."""

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from mnistlab.calibrate import apply_temperature, expected_calibration_error, fit_temperature
from mnistlab.data import preprocess_images
from mnistlab.evaluate import confusion_matrix, evaluate, format_report, scores
from mnistlab.inference import TTA_SHIFTS, predict_probs, shift_images


def _random_probs(n, seed=0):
    rng = np.random.default_rng(seed)
    # Moderate logits: no probability falls to the clipping floors, which differ between libraries.
    logits = rng.normal(size=(n, 10)) * 2
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rng.integers(0, 10, n)


def test_scores_match_sklearn():
    probs, y = _random_probs(500)
    result = scores(probs, y)
    pred = probs.argmax(1)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(10), zero_division=0)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert result["loss"] == pytest.approx(skm.log_loss(y, probs, labels=range(10)), rel=1e-5)
    np.testing.assert_allclose([c["precision"] for c in result["per_class"]], p)
    np.testing.assert_allclose([c["recall"] for c in result["per_class"]], r)
    np.testing.assert_allclose([c["f1"] for c in result["per_class"]], f)
    assert [c["support"] for c in result["per_class"]] == list(s)
    assert result["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    np.testing.assert_array_equal(result["confusion_matrix"], skm.confusion_matrix(y, pred, labels=range(10)))


def test_class_never_predicted_has_zero_precision():
    probs = np.full((4, 10), 0.01, np.float32)
    probs[:, 3] = 0.91
    result = scores(probs, np.array([3, 3, 1, 2]))
    assert result["per_class"][1]["precision"] == 0.0
    assert result["per_class"][3]["precision"] == pytest.approx(0.5)
    assert result["accuracy"] == 0.5


def test_loss_matches_keras_cross_entropy():
    probs, y = _random_probs(200, seed=3)
    keras_loss = float(np.mean(keras.losses.categorical_crossentropy(np.eye(10)[y], probs)))
    assert scores(probs, y)["loss"] == pytest.approx(keras_loss, rel=1e-4)


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 0, 1, 9]), np.array([0, 1, 1, 0]))
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1 and cm[9, 0] == 1 and cm.sum() == 4


def test_evaluate_runs_the_model_on_uint8_images():
    inputs = keras.Input((28, 28, 1))
    # A fixed "model" that always says 7, to check the plumbing, not learning.
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: keras.ops.one_hot(keras.ops.full((keras.ops.shape(t)[0],), 7), 10))(inputs))
    x = np.zeros((5, 28, 28), np.uint8)
    result = evaluate(model, x, np.array([7, 7, 7, 1, 2]))
    assert result["n"] == 5 and result["accuracy"] == pytest.approx(0.6)
    text = format_report(result)
    assert "test accuracy 60.00 %" in text and "confusion matrix" in text


def test_shift_images_against_numpy_roll():
    x = np.random.default_rng(0).integers(1, 256, (3, 28, 28)).astype(np.uint8)
    for r, c in [(1, 0), (-1, 0), (0, 1), (0, -1), (2, -3)]:
        rolled = np.roll(x, (r, c), axis=(1, 2))
        shifted = shift_images(x, r, c)
        rows = slice(max(r, 0), 28 + min(r, 0))
        cols = slice(max(c, 0), 28 + min(c, 0))
        np.testing.assert_array_equal(shifted[:, rows, cols], rolled[:, rows, cols])
        assert shifted.sum() < x.sum()  # the uncovered border is black, not wrapped around
    np.testing.assert_array_equal(shift_images(x, 0, 0), x)


def test_tta_averages_the_shifted_predictions():
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28)).astype(np.uint8)
    expected = np.mean([model.predict(preprocess_images(shift_images(x, r, c)), verbose=0) for r, c in TTA_SHIFTS], axis=0)
    np.testing.assert_allclose(predict_probs(model, x, tta=True), expected, rtol=1e-6)
    assert not np.allclose(predict_probs(model, x, tta=True), predict_probs(model, x))


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
    assert apply_temperature(probs, 3.0).max(1).mean() < probs.max(1).mean() < apply_temperature(probs, 0.3).max(1).mean()


def test_expected_calibration_error_by_hand():
    # Certain and right half the time: |0.5 - 1.0| = 0.5. Two bins: 0.6 (right) and 0.9 (wrong).
    certain = np.eye(10)[[0, 1, 2, 3]]
    assert expected_calibration_error(certain, np.array([0, 1, 9, 9])) == pytest.approx(0.5)
    p = np.full((2, 10), 0.0)
    p[0, 0], p[0, 1:] = 0.6, 0.4 / 9
    p[1, 0], p[1, 1:] = 0.9, 0.1 / 9
    assert expected_calibration_error(p, np.array([0, 3])) == pytest.approx((abs(1 - 0.6) + abs(0 - 0.9)) / 2)
