"""Labelled digits stored as arrays in an .npz file, as a source for fine-tuning: x and y, and
optionally the source's own x_test and y_test. Read without unpickling, and checked.

    mnistlab finetune RUN --data digits.npz

Images may be uint8 0-255 or floats in [0, 1], (N, H, W) or (N, H, W, 1), either polarity;
labels integers 0-9 or one-hot rows. `digitsets.load_digit_set` gives them MNIST's normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mnistlab.data.formats import READ_ERRORS, describe_error, npz_header
from mnistlab.data.mnist import IMAGE_SIZE, NUM_CLASSES, DataError

_NPZ_ARRAYS = {"x", "y", "x_test", "y_test"}
# The most numbers one array may hold: 2**26, 85,598 digits of 28x28 (MNIST trains on 60,000;
# USPS has 7,291 of 16x16), 256 MiB once made float32 grey levels. Judged from the .npy header
# before the array is read, since NumPy allocates what a header declares: a 2 MB npz of zeros
# can declare 2 GB of uint8 pixels, 8 GB as float32.
MAX_NPZ_VALUES = 1 << 26
_WIDEST_NUMBER = 8  # bytes of a float64 or int64, the widest value an image or label needs


def read_digit_npz(
    path: Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None, str]:
    """Read and check x, y (and x_test, y_test) from an .npz file, never unpickling.

    Returns:
        ((grey, labels) to train on, (grey, labels) of its own test split or None, a
        description); grey is (N, H, W) float32 in [0, 1], turned light ink on dark paper.

    Raises:
        DataError: not an .npz file, arrays missing, unreadable or holding Python objects, or
            images and labels of the wrong kind, range or count.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # neither zip nor .npy: NumPy would try it as a pickle
        raise DataError(f"{path} is not an .npz file: NumPy found no arrays in it.") from exc
    except READ_ERRORS as exc:  # a damaged zip, an empty file
        reason = describe_error(exc)
        raise DataError(f"{path} could not be read as an .npz file ({reason}).") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single .npy array, not an .npz file of arrays x and y.")
    with loaded as npz:
        names = set(npz.files)
        if not {"x", "y"} <= names:
            raise DataError(f"{path} must hold arrays x and y; it holds {sorted(names) or 'none'}.")
        if ("x_test" in names) != ("y_test" in names):
            raise DataError(f"{path} holds one of x_test and y_test; a test split needs both.")
        arrays = {name: _npz_array(npz, name, path) for name in sorted(names & _NPZ_ARRAYS)}
    train = _npz_split(arrays, "x", "y", path)
    test = _npz_split(arrays, "x_test", "y_test", path) if "x_test" in arrays else None
    return train, test, f"npz file {path}"


def _npz_array(npz: np.lib.npyio.NpzFile, name: str, path: Path) -> np.ndarray:
    """Read one array after checking what its header declares (see MAX_NPZ_VALUES)."""
    try:
        shape, dtype = npz_header(npz, name)
        if dtype.hasobject:
            raise DataError(
                f"Array {name} in {path} holds Python objects, which are not loaded (unpickling "
                "can run code); store numbers."
            )
        values = math.prod(shape)
        if values > MAX_NPZ_VALUES or values * dtype.itemsize > MAX_NPZ_VALUES * _WIDEST_NUMBER:
            raise DataError(
                f"Array {name} in {path} is {dtype} {shape}, {values:,} values ({values * dtype.itemsize:,} "
                f"bytes), over the limit of {MAX_NPZ_VALUES:,} values ({MAX_NPZ_VALUES // IMAGE_SIZE**2:,} digits "
                "of 28x28); fine-tune on fewer."
            )
        return npz[name]
    except READ_ERRORS as exc:  # e.g. "Bad CRC-32" after a flipped byte, not an .npy member
        raise DataError(f"Array {name} in {path} could not be read ({describe_error(exc)}).") from exc


def _npz_split(
    arrays: dict[str, np.ndarray], x_name: str, y_name: str, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Check one split's images and labels and turn dark-on-light images over."""
    grey = _npz_images(arrays[x_name], x_name, path)
    labels = _npz_labels(arrays[y_name], y_name, path)
    if len(labels) != len(grey):
        raise DataError(
            f"{path} holds {len(grey)} images in {x_name} but {len(labels)} labels in {y_name}."
        )
    return _light_on_dark(grey), labels


def _npz_images(x: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Return (N, H, W) float32 grey levels in [0, 1] from uint8 or float images."""
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise DataError(
            f"Array {name} in {path} must be images (N, H, W) or (N, H, W, 1), not {x.shape}."
        )
    if x.size == 0:
        raise DataError(f"Array {name} in {path} is empty ({x.shape}).")
    if x.dtype == np.uint8:
        grey = x.astype(np.float32)
        grey /= 255  # in place: a second float32 copy of a large set would double its cost
        return grey
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"Array {name} in {path} must be uint8 0-255 or float 0-1, not {x.dtype}.")
    grey = x.astype(np.float32)
    if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
        raise DataError(
            f"Array {name} in {path} holds floats from {grey.min():g} to {grey.max():g}; "
            "grey levels must lie in [0, 1] (or be uint8 0-255)."
        )
    return grey


def _npz_labels(y: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Return (N,) uint8 labels from integers 0-9 or one-hot rows."""
    if y.ndim == 2 and y.shape[1] == NUM_CLASSES:
        numeric = np.issubdtype(y.dtype, np.number) or y.dtype == bool
        if not numeric or not np.isin(y, (0, 1)).all() or not (y.sum(axis=1) == 1).all():
            raise DataError(
                f"Array {name} in {path} is shaped {y.shape} but its rows are not one-hot."
            )
        return np.argmax(y, axis=1).astype(np.uint8)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"Array {name} in {path} must be integer labels (N,) or one-hot rows "
            f"(N, {NUM_CLASSES}), not {y.dtype} {y.shape}."
        )
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(
            f"Array {name} in {path} holds labels from {y.min()} to {y.max()}, not 0-9."
        )
    return y.astype(np.uint8)


def _light_on_dark(grey: np.ndarray) -> np.ndarray:
    """Turn over the images whose border is lighter on average than the whole: dark ink on paper."""
    border = np.concatenate(
        [grey[:, 0, :], grey[:, -1, :], grey[:, 1:-1, 0], grey[:, 1:-1, -1]], axis=1
    )
    dark_on_light = border.mean(axis=1) > grey.mean(axis=(1, 2))
    grey[dark_on_light] = 1 - grey[dark_on_light]
    return grey
