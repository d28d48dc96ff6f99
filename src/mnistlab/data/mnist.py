"""What MNIST is for mnistlab: its constants, the reference every copy must match, and the one path
from its pixels and labels to model input and targets.

    mnistlab data verify     # re-hash the cache against MNIST_SHA256

`MnistArrays` holds the four verified arrays; `check_arrays` and `require_verified` compare arrays
with MNIST_SHA256 and the reference shapes, whatever source they came from (`cache.load_mnist`
finds them, `formats` reads them, `download` fetches them). `preprocess_images` and `one_hot` are
the one path from pixels and labels to model input and targets; training, evaluation and
prediction all call them.

No Keras or TensorFlow here: `mnistlab data ...` should start in a fraction of a second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from mnistlab.errors import MnistlabError

NUM_CLASSES = 10  # digits 0-9
IMAGE_SIZE = 28  # MNIST digits are 28x28 pixels
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # channels-last with one gray channel, as Conv2D expects

# SHA-256 of each array's raw bytes (uint8, C order, no header), from /work/shared/data/MNIST.md.
# Every source yields exactly these arrays.
MNIST_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# A raw-bytes hash cannot tell (60000, 784) from (60000, 28, 28), so shapes are checked as well.
MNIST_SHAPES = {
    "x_train": (60000, IMAGE_SIZE, IMAGE_SIZE),
    "y_train": (60000,),
    "x_test": (10000, IMAGE_SIZE, IMAGE_SIZE),
    "y_test": (10000,),
}


class DataError(MnistlabError):
    """MNIST could not be found, read or verified; the message names what was tried.

    Internal helpers raise it with a short clause ("x_train sha256 mismatch"); the public
    functions wrap that clause into the one-sentence message the user sees.
    """


def array_sha256(array: np.ndarray) -> str:
    """Return the SHA-256 of an array's raw bytes (C order, no header), as MNIST_SHA256 holds them."""
    return hashlib.sha256(np.ascontiguousarray(array)).hexdigest()


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class MnistArrays:
    """The four verified MNIST arrays and where they came from."""

    x_train: np.ndarray  # (60000, 28, 28) uint8, ink 255 on background 0
    y_train: np.ndarray  # (60000,) uint8, digits 0-9
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8
    source: str  # e.g. "cache /root/.cache/mnistlab/mnist.npz"

    def checksums(self) -> dict[str, str]:
        """Return the SHA-256 of each array's raw bytes, keyed like MNIST_SHA256."""
        return {name: array_sha256(getattr(self, name)) for name in MNIST_SHA256}


def preprocess_images(x: np.ndarray) -> np.ndarray:
    """Turn uint8 digits into model input: float32 x/255 in [0, 1], shape (N, 28, 28, 1).

    Args:
        x: uint8 images shaped (N, 28, 28) or (N, 28, 28, 1), ink 255 on background 0.

    Raises:
        DataError: x is not uint8 (already scaled input would be scaled twice) or has
            another shape.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DataError(f"Images must be uint8 pixels 0-255, got dtype {x.dtype}.")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.shape[1:] != INPUT_SHAPE:
        raise DataError(
            f"Images must be shaped (N, 28, 28) or (N, 28, 28, 1), got {tuple(x.shape)}."
        )
    return x.astype(np.float32) / np.float32(255)


def one_hot(y: np.ndarray) -> np.ndarray:
    """Turn integer labels shaped (N,) into float32 one-hot rows shaped (N, 10).

    Raises:
        DataError: y is not a 1-D integer array or holds a label outside 0..9.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"Labels must be a 1-D integer array, got {y.dtype} {tuple(y.shape)}.")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(
            f"Labels must lie in 0..{NUM_CLASSES - 1}, got values from {y.min()} to {y.max()}."
        )
    targets = np.zeros((y.size, NUM_CLASSES), dtype=np.float32)
    targets[np.arange(y.size), y] = 1.0
    return targets


# --- verification -------------------------------------------------------------------------


def check_arrays(arrays: dict[str, np.ndarray], unreadable: dict[str, str]) -> dict[str, dict]:
    """Compare each array with its reference shape, dtype and SHA-256.

    Args:
        arrays: the arrays that could be read, by name.
        unreadable: why each array that could not be read is absent, by name.

    Returns:
        {name: {"sha256", "expected", "ok", "error"}}; error is None or a short clause.
    """
    report = {}
    for name, expected in MNIST_SHA256.items():
        array = arrays.get(name)
        sha256 = None if array is None else array_sha256(array)
        if array is None:
            error = unreadable.get(name, "missing")
        elif array.dtype != np.uint8 or array.shape != MNIST_SHAPES[name]:
            error = f"is {array.dtype} {array.shape}, not uint8 {MNIST_SHAPES[name]}"
        elif sha256 != expected:
            error = "sha256 mismatch"
        else:
            error = None
        report[name] = {"sha256": sha256, "expected": expected, "ok": error is None, "error": error}
    return report


def require_verified(arrays: dict[str, np.ndarray], unreadable: dict[str, str]) -> None:
    """Raise DataError naming every array that fails check_arrays, grouped by problem."""
    names_by_error: dict[str, list[str]] = {}
    for name, entry in check_arrays(arrays, unreadable).items():
        if not entry["ok"]:
            names_by_error.setdefault(entry["error"], []).append(name)
    if names_by_error:
        raise DataError(
            " and ".join(f"{', '.join(names)} {error}" for error, names in names_by_error.items())
        )
