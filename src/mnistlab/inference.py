"""Running a model on images: one forward pass through the one preprocessing path, and
test-time augmentation. Used by evaluation, calibration, prediction, export and reports alike.

    python -c "import mnistlab.inference as i; print(i.TTA_SHIFTS)"
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistlab.data import preprocess_images

# Test-time augmentation: the image itself and its one-pixel shifts (rows, columns). A digit
# shifted by a pixel is the same digit; MNIST's centring is only accurate to about that much.
TTA_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def shift_images(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Shift (N, 28, 28) images by whole pixels, filling the uncovered border with black (0)."""
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    out[:, max(rows, 0) : h + min(rows, 0), max(cols, 0) : w + min(cols, 0)] = x[
        :, max(-rows, 0) : h + min(-rows, 0), max(-cols, 0) : w + min(-cols, 0)
    ]
    return out


def forward(model: Any, x_uint8: np.ndarray, batch_size: int) -> np.ndarray:
    """One pass of uint8 images through the model, with no copies beyond the float conversion."""
    x = preprocess_images(x_uint8)
    if len(x) <= batch_size and hasattr(model, "predict_on_batch"):
        # Keras's predict() costs ~50 ms a call in set-up; one batch straight through is ~1 ms.
        return np.asarray(model.predict_on_batch(x))
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def predict_probs(model: Any, x_uint8: np.ndarray, batch_size: int = 1024, tta: bool = False) -> np.ndarray:
    """Class probabilities for uint8 MNIST-format images, through the one preprocessing path.

    With tta, the mean of the probabilities over TTA_SHIFTS (five forward passes).
    """
    if not tta:
        return forward(model, x_uint8, batch_size)
    return np.mean([forward(model, shift_images(x_uint8, r, c), batch_size) for r, c in TTA_SHIFTS], axis=0)
