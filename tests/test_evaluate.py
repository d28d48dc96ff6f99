"""Evaluation metrics, checked against scikit-learn and Keras as independent oracles."""

import keras
import numpy as np
import pytest
from sklearn import metrics as skm

from mnistlab.evaluate import confusion_matrix, evaluate, format_report, scores


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
    always_seven = keras.layers.Lambda(lambda t: keras.ops.one_hot(keras.ops.full((keras.ops.shape(t)[0],), 7), 10))
    model = keras.Model(inputs, always_seven(inputs))
    x = np.zeros((5, 28, 28), np.uint8)
    result = evaluate(model, x, np.array([7, 7, 7, 1, 2]))
    assert result["n"] == 5 and result["accuracy"] == pytest.approx(0.6)
    text = format_report(result)
    assert "test accuracy 60.00 %" in text and "confusion matrix" in text
