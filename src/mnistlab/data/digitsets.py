"""Labelled digits from sources other than MNIST, made MNIST-like, for fine-tuning a trained model.

    mnistlab finetune RUN --data usps    # adapt a run's model to the USPS zip-code digits

`load_digit_set` turns one source into a DigitSet: 28x28 uint8 digits, light ink on black, with
MNIST's normalisation, and a test split (the source's own where it has one):

- "usps": the USPS zip-code digits (16x16 scans; 7,291 train, 2,007 test), kept in
  <cache_dir>/usps/, downloaded once and verified by SHA-256; or a folder holding the two files
  (`usps`).
- "uci-digits": UCI's optical digits as scikit-learn bundles them (1,797 of 8x8).
- a folder of labelled images, read by `folders.labelled_images`: sub-folders 0..9, or a
  labels.csv listing them. The server's corrections folder is one (mnistlab.serve.corrections).
- an .npz file with arrays x and y, and optionally the source's own x_test and y_test
  (`digitarrays`).

Photos and drawings (the folders) take the one path of users' images, prepare_image. Scanned
sets and arrays are clean crops whose polarity is known: they take its final stage alone,
normalise_digit, which keeps every pixel above 0 (prepare_image looks for paper around a digit,
and USPS digits touch their border). `select_shots` picks K digits per class for few-shot runs.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.data.cache import resolve_cache_dir
from mnistlab.data.decode import ImageError
from mnistlab.data.digitarrays import read_digit_npz
from mnistlab.data.folders import LABEL_TABLES, LABELS_FILE, labelled_images, labels_layout
from mnistlab.data.formats import not_a_regular_file
from mnistlab.data.images import normalise_digit, prepare_image
from mnistlab.data.mnist import IMAGE_SIZE, MNIST_SHA256, NUM_CLASSES, DataError, array_sha256
from mnistlab.data.usps import USPS_DIR, USPS_TEST, USPS_TRAIN, fetch_usps, read_usps

# The UCI optical digits count ink pixels in 4x4 blocks of a 32x32 bitmap: 0..16, ink high.
_UCI_LEVELS = 16

_OWN_TEST = "the source's own test split"
_ACCEPTED = (
    f"'usps', 'uci-digits', a folder of images in sub-folders 0-9 or listed in {LABELS_FILE}, "
    f"a folder holding USPS's {USPS_TRAIN} and {USPS_TEST}, or an .npz file of arrays x and y"
)


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class DigitSet:
    """Labelled digits from a source other than MNIST, already MNIST-like, with a test split."""

    x_train: np.ndarray  # (N, 28, 28) uint8, light ink on black, MNIST-normalised
    y_train: np.ndarray  # (N,) uint8, digits 0-9
    x_test: np.ndarray  # (M, 28, 28) uint8
    y_test: np.ndarray  # (M,) uint8
    source: str  # e.g. "USPS /data/usps (zip.train.gz, zip.test.gz)"; for messages and metrics
    test_from: str  # "the source's own test split" or "20 % held out per class, seed 0"
    dropped: int  # images in which no ink was found, left out of both splits

    def checksums(self) -> dict[str, str]:
        """Return the SHA-256 of each array's raw bytes, keyed as MnistArrays.checksums."""
        return {name: array_sha256(getattr(self, name)) for name in MNIST_SHA256}


@dataclass(frozen=True, eq=False)
class _Digits:
    """Normalised digits read from one split of a source."""

    x: np.ndarray  # (N, 28, 28) uint8
    y: np.ndarray  # (N,) uint8
    dropped: int  # images without ink, not in x


def load_digit_set(
    source: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    progress: bool = True,
) -> DigitSet:
    """Read labelled digits from a source other than MNIST and give them MNIST's normalisation.

    Args:
        source: "usps", "uci-digits" (names win over folders of that name: write ./usps for
            one), a folder (USPS's two files, or labelled images as folders.labelled_images
            reads them: a labels.csv wins over sub-folders 0-9), or an .npz file of arrays x, y
            and optionally x_test, y_test.
        test_fraction: the share of each class held out for testing, in (0, 1), where the source
            has no test split of its own; a class with a single image goes to training.
        seed: seeds that hold-out.
        cache_dir: where "usps" is kept (in usps/); default_cache_dir() when None.
        offline: never download; "usps" must then be in the cache already.
        progress: show the download's progress on stderr.

    Raises:
        DataError: the source is not one of those, cannot be read or verified, holds a bad label
            or an image that cannot be decoded, or leaves no digit to train or test on.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must lie between 0 and 1 (exclusive), not {test_fraction}.")
    if source == "usps":
        directory = fetch_usps(resolve_cache_dir(cache_dir) / USPS_DIR, offline, progress)
        digits, own_test, description = _normalised(*read_usps(directory))
    elif source == "uci-digits":
        digits, own_test, description = _normalised(*_read_uci())
    else:
        digits, own_test, description = _read_path(Path(source).expanduser(), source)
    return _finish(digits, own_test, description, test_fraction, seed)


def select_shots(
    x: np.ndarray, y: np.ndarray, shots: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pick `shots` digits of each class, at random but the same for the same seed.

    The picks for fewer shots are among those for more with the same seed (each class is one
    seeded permutation, cut short), so few-shot runs at growing K add data and change nothing.

    Returns:
        (x, y) of the picks, NUM_CLASSES * shots of them, in their order in x.

    Raises:
        DataError: shots is not a positive integer, x and y differ in length, y holds a label
            outside 0-9, or some class has fewer than `shots` digits.
    """
    x, y = np.asarray(x), np.asarray(y)
    if isinstance(shots, bool) or not isinstance(shots, int | np.integer) or shots < 1:
        raise DataError(f"Shots per class must be a positive integer, not {shots!r}.")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(x) != len(y):
        raise DataError(
            f"select_shots needs as many integer labels as images, got {len(x)} images and "
            f"labels {y.dtype} {tuple(y.shape)}."
        )
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(f"Labels must lie in 0..{NUM_CLASSES - 1}, got {y.min()} to {y.max()}.")
    counts = np.bincount(y, minlength=NUM_CLASSES)
    short = [f"{digit} has {count}" for digit, count in enumerate(counts) if count < shots]
    if short:
        raise DataError(
            f"{shots} shots per class need {shots} images of every digit, but {', '.join(short)}."
        )
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == digit))[:shots] for digit in range(NUM_CLASSES)]
    chosen = np.sort(np.concatenate(picks))
    return x[chosen], y[chosen]


# --- splits ----------------------------------------------------------------------------------


def _finish(
    digits: _Digits, own_test: _Digits | None, source: str, test_fraction: float, seed: int
) -> DigitSet:
    """Hold out a test split unless the source has its own, and check that neither is empty."""
    if own_test is None:
        train_rows, test_rows = _split(digits.y, test_fraction, seed)
        train = _Digits(digits.x[train_rows], digits.y[train_rows], 0)
        test = _Digits(digits.x[test_rows], digits.y[test_rows], 0)
        test_from = f"{test_fraction * 100:g} % held out per class, seed {seed}"
    else:
        train, test, test_from = digits, own_test, _OWN_TEST
    dropped = digits.dropped + (own_test.dropped if own_test is not None else 0)
    no_ink = f" ({dropped} without ink left out)" if dropped else ""
    if len(train.y) == 0:
        raise DataError(f"Digit set {source} has no digit to train on{no_ink}.")
    if len(test.y) == 0:
        raise DataError(
            f"Digit set {source} has no digit to test on{no_ink}: holding one out needs two "
            "images of a digit at least."
        )
    return DigitSet(train.x, train.y, test.x, test.y, source, test_from, dropped)


def _split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the rows to train on and to test on, sorted: test_fraction of each class, seeded.

    A class of two or more images gives one at least to each side; a single one trains, as a
    test score could not come of it.
    """
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(y), bool)
    for digit in range(NUM_CLASSES):
        rows = np.flatnonzero(y == digit)
        if rows.size < 2:
            continue
        count = min(max(math.floor(test_fraction * rows.size + 0.5), 1), rows.size - 1)
        is_test[rng.permutation(rows)[:count]] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _normalise_all(grey: np.ndarray, labels: np.ndarray) -> _Digits:
    """normalise_digit on each (H, W) image of grey (light ink, paper 0); drop those without ink."""
    images = np.zeros((len(grey), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    for index, image in enumerate(grey):
        images[index] = normalise_digit(image)
    has_ink = images.any(axis=(1, 2))
    return _Digits(images[has_ink], labels[has_ink].astype(np.uint8), int((~has_ink).sum()))


def _read_path(path: Path, source: str | os.PathLike) -> tuple[_Digits, _Digits | None, str]:
    """Read a digit set from a folder (USPS's files, or labelled images) or an .npz file."""
    if path.is_dir():
        if (path / USPS_TRAIN).exists() or (path / USPS_TEST).exists():
            return _normalised(*read_usps(path))
        if labels_layout(path) is not None:
            return _read_image_folder(path)
        raise DataError(
            f"Digit folder {path} holds neither USPS's {USPS_TRAIN} and {USPS_TEST}, nor "
            f"sub-folders 0-9, nor {' or '.join(LABEL_TABLES)}; a digit set is one of: {_ACCEPTED}."
        )
    problem = not_a_regular_file(path)  # a FIFO named digits.npz would hang np.load
    if problem is None and path.suffix.lower() == ".npz":
        return _normalised(*read_digit_npz(path))
    state = problem or "is not a folder or an .npz file"
    raise DataError(f"Digit set {str(source)!r} {state}; a digit set is one of: {_ACCEPTED}.")


def _normalised(
    train: tuple[np.ndarray, np.ndarray], own_test: tuple[np.ndarray, np.ndarray] | None, source: str
) -> tuple[_Digits, _Digits | None, str]:
    """A reader's grey-level splits, each through _normalise_all."""
    return _normalise_all(*train), (None if own_test is None else _normalise_all(*own_test)), source


def _read_uci() -> tuple[tuple[np.ndarray, np.ndarray], None, str]:
    """Read scikit-learn's copy of the UCI optical digits, which it installs with itself."""
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError(
            "The UCI digits come with scikit-learn, which is not installed; "
            "pip install 'mnistlab[uci]'."
        ) from exc
    digits = load_digits()
    grey = digits.images.astype(np.float32) / _UCI_LEVELS
    description = f"UCI optical digits (scikit-learn {sklearn.__version__} load_digits)"
    return (grey, digits.target.astype(np.uint8)), None, description


def _read_image_folder(folder: Path) -> tuple[_Digits, None, str]:
    """Read a folder's labelled images (folders.labelled_images) with prepare_image.

    Strict about its table, as a wrong label would be learnt, with one exception: rows whose file
    is missing are left out with one warning, since people move a corrections folder's images
    away (as the server advises when it is full) and leave its labels.csv behind.
    """
    found = labelled_images(folder, missing_ok=True)
    if found.missing:
        count = len(found.missing)
        print(
            f"warning: {count} image{'s' if count > 1 else ''} that {folder / found.layout} lists "
            f"{'are' if count > 1 else 'is'} missing (moved or deleted; {found.missing[0]} first); "
            f"using the other {len(found.images)}.",
            file=sys.stderr,
        )
    images, labels, dropped = [], [], 0
    for path, label in found.images:
        try:
            prepared = prepare_image(path)
        except ImageError as exc:
            raise DataError(f"Digit folder {folder} holds an unusable image: {exc}") from exc
        if prepared.has_ink:
            images.append(prepared.image)
            labels.append(label)
        else:
            dropped += 1
    x = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    digits = _Digits(x, np.array(labels, np.uint8), dropped)
    return digits, None, f"image folder {folder} ({found.layout})"
