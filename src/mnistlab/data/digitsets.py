"""Labelled digits from sources other than MNIST, made MNIST-like, for fine-tuning a trained model.

    mnistlab finetune RUN --data usps    # adapt a run's model to the USPS zip-code digits

`load_digit_set` turns one source into a DigitSet: 28x28 uint8 digits, light ink on black, with
MNIST's normalisation, and a test split (the source's own where it has one):

- "usps": the USPS zip-code digits (16x16 scans; 7,291 train, 2,007 test), kept in
  <cache_dir>/usps/, downloaded once and verified by SHA-256; or a folder holding the two files.
- "uci-digits": UCI's optical digits as scikit-learn bundles them (1,797 of 8x8).
- a folder of images in sub-folders 0..9, or listed in labels.csv: the server's corrections
  folder is one (mnistlab.serve.corrections).
- an .npz file with arrays x and y, and optionally the source's own x_test and y_test.

Photos and drawings (the folders) take the one path of users' images, prepare_image. Scanned
sets and arrays are clean crops whose polarity is known: they take its final stage alone,
normalise_digit, which keeps every pixel above 0 (prepare_image looks for paper around a digit,
and USPS digits touch their border). `select_shots` picks K digits per class for few-shot runs.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.data.decode import IMAGE_SUFFIXES, ImageError
from mnistlab.data.images import normalise_digit, prepare_image
from mnistlab.data.mnist import (
    _READ_ERRORS,
    IMAGE_SIZE,
    NUM_CLASSES,
    DataError,
    _download,
    _file_digest,
    _reason,
    _resolve_cache_dir,
    _sha256,
)
from mnistlab.files import atomic_write

# The copy of USPS that The Elements of Statistical Learning distributes (Hastie, Tibshirani &
# Friedman), pinned to one commit of a public repository. SHA-256 of each file as published,
# from /work/shared/data/usps/SOURCE.md. No licence is stated: it is fetched for the user's own
# experiments and never redistributed.
_USPS_BASE_URL = (
    "https://raw.githubusercontent.com/dgkim5360/the-elements-of-statistical-learning-notebooks/"
    "2c13a4818379451bcce802bcd7917f4878e12977/data/zipcode/"
)
_USPS_TRAIN, _USPS_TEST = "zip.train.gz", "zip.test.gz"
_USPS_SHA256 = {
    _USPS_TRAIN: "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16",
    _USPS_TEST: "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f",
}
_USPS_DIR = "usps"  # under the cache directory, beside mnist.npz
# Each line of a USPS file: the label (written as a float), then a 16x16 image row by row in
# [-1, 1], ink +1 and paper -1.
_USPS_SIDE = 16
_USPS_VALUES = 1 + _USPS_SIDE * _USPS_SIDE

# The UCI optical digits count ink pixels in 4x4 blocks of a 32x32 bitmap: 0..16, ink high.
_UCI_LEVELS = 16

_LABELS_FILE = "labels.csv"  # file,label rows, as mnistlab.serve.corrections writes them
_DIGIT_NAMES = [str(digit) for digit in range(NUM_CLASSES)]  # sub-folder names and labels
_NPZ_ARRAYS = {"x", "y", "x_test", "y_test"}

_ARRAYS = ("x_train", "y_train", "x_test", "y_test")  # as MNIST_SHA256's keys
_OWN_TEST = "the source's own test split"
_ACCEPTED = (
    "'usps', 'uci-digits', a folder of images in sub-folders 0-9 or listed in labels.csv, "
    "a folder holding USPS's zip.train.gz and zip.test.gz, or an .npz file of arrays x and y"
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
        return {name: _sha256(getattr(self, name)) for name in _ARRAYS}


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
            one), a folder (USPS's two files, sub-folders 0-9 of images, or images listed in
            labels.csv, which wins over the sub-folders), or an .npz file of arrays x, y and
            optionally x_test, y_test.
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
        directory = _fetch_usps(_resolve_cache_dir(cache_dir) / _USPS_DIR, offline, progress)
        return _finish(*_read_usps(directory), test_fraction, seed)
    if source == "uci-digits":
        return _finish(*_read_uci(), test_fraction, seed)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / _USPS_TRAIN).exists() or (path / _USPS_TEST).exists():
            return _finish(*_read_usps(path), test_fraction, seed)
        if (path / _LABELS_FILE).is_file() or any((path / d).is_dir() for d in _DIGIT_NAMES):
            return _finish(*_read_image_folder(path), test_fraction, seed)
        raise DataError(
            f"Digit folder {path} holds neither USPS's {_USPS_TRAIN} and {_USPS_TEST}, nor "
            f"sub-folders 0-9, nor {_LABELS_FILE}; a digit set is one of: {_ACCEPTED}."
        )
    if path.is_file() and path.suffix.lower() == ".npz":
        return _finish(*_read_npz(path), test_fraction, seed)
    state = "is not a folder or an .npz file" if path.exists() else "does not exist"
    raise DataError(f"Digit set {str(source)!r} {state}; a digit set is one of: {_ACCEPTED}.")


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


# --- USPS ----------------------------------------------------------------------------------


def _fetch_usps(directory: Path, offline: bool, progress: bool) -> Path:
    """Make sure both USPS files in directory are the published ones, downloading what is not.

    Each file is downloaded into a scratch folder beside its place and verified there; only then
    is it written into place (atomic_write), so a crash or a concurrent fetch leaves the old file
    or a verified one, never a part.
    """
    for name, expected in _USPS_SHA256.items():
        path, url = directory / name, _USPS_BASE_URL + name
        try:
            if _file_digest(path, "sha256") == expected:
                continue
            state = "corrupt (its sha256 differs from the published file's)"
        except FileNotFoundError:
            state = "missing"
        except OSError as exc:  # a directory in its place, no permission
            state = f"unreadable ({exc.strerror or exc})"
        if offline:
            raise DataError(
                f"USPS file {path} is {state}, and --offline forbids downloading it from {url}."
            )
        if state != "missing":
            print(f"warning: USPS file {path} is {state}; downloading it again.", file=sys.stderr)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as work:
                download = Path(work) / name
                try:
                    _download(url, download, progress)
                except DataError as exc:
                    raise DataError(f"Could not download USPS {name} from {url} ({exc}).") from exc
                if _file_digest(download, "sha256") != expected:
                    raise DataError(
                        f"USPS {name} downloaded from {url} is not the published file (its "
                        "sha256 differs); it was not kept."
                    )
                data = download.read_bytes()
                atomic_write(path, lambda out: out.write(data))
        except OSError as exc:
            raise DataError(f"Could not write USPS into {directory} ({exc}).") from exc
    return directory


def _read_usps(directory: Path) -> tuple[_Digits, _Digits, str]:
    """Read and verify USPS's two files: (train, the source's own test split, description)."""
    contents = {}
    for name, expected in _USPS_SHA256.items():  # both verified before either is parsed (1 s)
        path = directory / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(
                f"USPS folder {directory} has no {name}: both {_USPS_TRAIN} and {_USPS_TEST} "
                "are needed."
            ) from None
        except OSError as exc:
            raise DataError(f"USPS file {path} could not be read ({exc.strerror or exc}).") from exc
        if hashlib.sha256(data).hexdigest() != expected:
            raise DataError(
                f"USPS file {path} is not the published one (its sha256 differs); replace it "
                f"with {_USPS_BASE_URL + name}."
            )
        contents[name] = data
    train, test = (_parse_usps(contents[name], directory / name) for name in _USPS_SHA256)
    return train, test, f"USPS {directory} ({_USPS_TRAIN}, {_USPS_TEST})"


def _parse_usps(data: bytes, path: Path) -> _Digits:
    """Parse one gzipped USPS text file (see _USPS_VALUES) and normalise its digits."""
    try:
        # 0.3 s for the 7,291 lines of zip.train.gz; the checksum has vouched for the format.
        table = np.loadtxt(io.BytesIO(gzip.decompress(data)), dtype=np.float32, ndmin=2)
    except _READ_ERRORS as exc:
        raise DataError(f"USPS file {path} could not be parsed ({_reason(exc)}).") from exc
    labels = table[:, 0]
    if table.shape[1] != _USPS_VALUES or not np.isin(labels, np.arange(NUM_CLASSES)).all():
        raise DataError(
            f"USPS file {path} is not lines of a label 0-9 and {_USPS_VALUES - 1} pixels."
        )
    # Paper -1 becomes 0 exactly, so normalise_digit's box holds the ink and nothing else.
    grey = np.clip((table[:, 1:] + 1) / 2, 0, 1).reshape(-1, _USPS_SIDE, _USPS_SIDE)
    return _normalise_all(grey, labels.astype(np.uint8))


# --- UCI optical digits ------------------------------------------------------------------------


def _read_uci() -> tuple[_Digits, None, str]:
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
    return _normalise_all(grey, digits.target.astype(np.uint8)), None, description


# --- folders of images ---------------------------------------------------------------------


def _read_image_folder(folder: Path) -> tuple[_Digits, None, str]:
    """Read a folder's images (labels.csv if there, else sub-folders 0-9) with prepare_image."""
    labels_file = folder / _LABELS_FILE
    if labels_file.is_file():
        entries, layout = _read_labels_file(folder, labels_file), _LABELS_FILE
    else:
        entries, layout = _scan_class_folders(folder), "sub-folders 0-9"
    if not entries:
        raise DataError(
            f"Digit folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its {layout}."
        )
    images, labels, dropped = [], [], 0
    for path, label in entries:
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
    return digits, None, f"image folder {folder} ({layout})"


def _scan_class_folders(folder: Path) -> list[tuple[Path, int]]:
    """Return (image, label) for the image files in folder/0 .. folder/9, sorted by name."""
    entries = []
    for digit in range(NUM_CLASSES):
        sub = folder / str(digit)
        if not sub.is_dir():
            continue
        try:
            # Hidden files are a crashed atomic_write's leftovers, or the system's.
            files = sorted(
                path
                for path in sub.iterdir()
                if path.suffix.lower() in IMAGE_SUFFIXES
                and not path.name.startswith(".")
                and path.is_file()
            )
        except OSError as exc:
            reason = exc.strerror or exc
            raise DataError(f"Digit folder {sub} could not be listed ({reason}).") from exc
        entries.extend((path, digit) for path in files)
    return entries


def _read_labels_file(folder: Path, labels_file: Path) -> list[tuple[Path, int]]:
    """Return (image, label) for each `file,label` row; a first row that is not one is a header.

    Raises:
        DataError: a row that is not `file,label` with a label 0-9, a file listed twice (it
            could land in both splits) or missing.
    """
    try:
        text = labels_file.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{labels_file} could not be read ({_reason(exc)}).") from exc
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [(reader.line_num, row) for row in reader]  # line_num: where the row ended
    except csv.Error as exc:  # a field over csv.field_size_limit() (128 KiB)
        raise DataError(f"{labels_file} line {reader.line_num} is not CSV ({_reason(exc)}).") from exc
    entries: list[tuple[Path, int]] = []
    lines_of: dict[str, int] = {}  # file name -> the line that listed it
    first = True
    for line, row in rows:
        fields = [field.strip() for field in row]
        if not any(fields):
            continue
        header = first and len(fields) == 2 and not fields[1].lstrip("+-").isdigit()
        first = False
        if header:  # "file,label", or whatever the columns were called
            continue
        where = f"{labels_file} line {line}"
        if len(fields) != 2 or not fields[0]:
            raise DataError(f"{where} is not a `file,label` row: {','.join(row)[:60]!r}.")
        name, label = fields
        if label not in _DIGIT_NAMES:
            raise DataError(f"{where} gives label {label[:20]!r}; labels are the digits 0-9.")
        if name in lines_of:
            raise DataError(f"{where} lists {name} again (first on line {lines_of[name]}).")
        lines_of[name] = line
        path = folder / name
        if not path.is_file():
            raise DataError(f"{where} names {name}, which is not a file in {folder}.")
        entries.append((path, int(label)))
    return entries


# --- .npz files --------------------------------------------------------------------------


def _read_npz(path: Path) -> tuple[_Digits, _Digits | None, str]:
    """Read and check x, y (and x_test, y_test) from an .npz file, never unpickling."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # neither zip nor .npy: NumPy would try it as a pickle
        raise DataError(f"{path} is not an .npz file: NumPy found no arrays in it.") from exc
    except _READ_ERRORS as exc:  # a damaged zip, an empty file
        reason = _reason(exc)
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
    train = _npz_digits(arrays, "x", "y", path)
    test = _npz_digits(arrays, "x_test", "y_test", path) if "x_test" in arrays else None
    return train, test, f"npz file {path}"


def _npz_array(npz: np.lib.npyio.NpzFile, name: str, path: Path) -> np.ndarray:
    try:
        array = npz[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"Array {name} in {path} holds Python objects, which are not loaded (unpickling "
                "can run code); store numbers."
            ) from exc
        raise DataError(f"Array {name} in {path} could not be read ({_reason(exc)}).") from exc
    except _READ_ERRORS as exc:  # e.g. "Bad CRC-32" after a flipped byte
        raise DataError(f"Array {name} in {path} could not be read ({_reason(exc)}).") from exc
    if not isinstance(array, np.ndarray):  # NpzFile gives a member without .npy header as bytes
        raise DataError(f"Array {name} in {path} is not an .npy array.")
    return array


def _npz_digits(arrays: dict[str, np.ndarray], x_name: str, y_name: str, path: Path) -> _Digits:
    """Check one split's images and labels, turn dark-on-light images over, normalise them."""
    grey = _npz_images(arrays[x_name], x_name, path)
    labels = _npz_labels(arrays[y_name], y_name, path)
    if len(labels) != len(grey):
        raise DataError(
            f"{path} holds {len(grey)} images in {x_name} but {len(labels)} labels in {y_name}."
        )
    return _normalise_all(_light_on_dark(grey), labels)


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
        return x.astype(np.float32) / 255
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
