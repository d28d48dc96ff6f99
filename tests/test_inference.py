"""The forward pass and test-time augmentation, checked against NumPy and Keras's own predict."""

import keras
import numpy as np

from mnistlab.data import preprocess_images
from mnistlab.inference import TTA_SHIFTS, predict_probs, shift_images


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
    shifted = [preprocess_images(shift_images(x, r, c)) for r, c in TTA_SHIFTS]
    expected = np.mean([model.predict(s, verbose=0) for s in shifted], axis=0)
    np.testing.assert_allclose(predict_probs(model, x, tta=True), expected, rtol=1e-6)
    assert not np.allclose(predict_probs(model, x, tta=True), predict_probs(model, x))
