"""Hostile files: small ones that unpack to gigabytes, paths that are not files (FIFOs, devices,
folders), damaged models. Each is refused with one MnistlabError sentence, judged from headers
before anything large is allocated.

    pytest tests/test_bombs.py

The bombs are built small: headers declaring huge shapes over a few bytes of data, members just
over a cap, a cap patched down. One real-size bomb (a 2 MB .gz that unpacks to 2 GB) is read in
a subprocess whose peak memory is measured. benchmarks/_bombs.py feeds real-size bombs of every
kind to the CLI.
"""

import contextlib
import gzip
import io
import os
import re
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest

from mnistlab import modelfile
from mnistlab.cli import main
from mnistlab.data import (
    DataError,
    ImageError,
    decode_image,
    digitarrays,
    load_digit_set,
    load_mnist,
    prepare_image,
    verify,
)
from mnistlab.data import cache as mnist_cache
from mnistlab.data.folders import labelled_images
from mnistlab.data.formats import MAX_IDX_BYTES, read_idx_file
from mnistlab.modelfile import MAX_MODEL_JSON_BYTES, check_keras_file
from mnistlab.runs import RunError
from mnistlab.runtimes import load_keras

IMAGES_STEM = "train-images-idx3-ubyte"
X_TRAIN_SHAPE = (60000, 28, 28)
# Peak memory of a process that imports mnistlab.data and refuses the 2 GB .gz after reading
# x_train's 47 MB: 93 MB measured (2-core EPYC, Python 3.11); reading it whole took 4.3 GB.
BOMB_PEAK_LIMIT_MB = 500


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """An empty HOME, so a real ~/.keras/datasets/mnist.npz is never tried as a source."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def idx_header(dims):
    """An IDX header of unsigned bytes: magic (0, 0, 0x08, ndim), then big-endian sizes."""
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(size.to_bytes(4, "big") for size in dims)


def npy(shape, descr="|u1", data=bytes(100)):
    """An .npy member whose header declares `shape` over a few bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


def write_zip(path, **members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@contextlib.contextmanager
def never_waits_on(fifo):
    """Fail rather than hang: should the code under test open the FIFO and wait for a writer, one
    comes after 20 s (ending its wait with end-of-file), and the test fails here."""
    fired = threading.Event()

    def release():
        fired.set()
        with contextlib.suppress(OSError):  # ENXIO: nobody is reading it
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(20, release)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
    assert not fired.is_set(), f"{fifo} was opened and waited on"


def one_line(error):
    message = str(error)
    assert message.strip() and "\n" not in message
    return message


# --- MNIST's files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_header_declaring_more_than_mnist_is_refused_unread(tmp_path, suffix):
    folder = tmp_path / "idx"
    folder.mkdir()
    content = idx_header((10**6, 28, 28)) + bytes(10)  # 784 MB promised, 10 bytes there
    (folder / f"{IMAGES_STEM}{suffix}").write_bytes(gzip.compress(content) if suffix else content)
    with pytest.raises(DataError) as caught:
        load_mnist(path=folder, cache_dir=tmp_path / "cache", offline=True, progress=False)
    assert (f"declares (1000000, 28, 28), 784,000,000 bytes, more than MNIST's largest array "
            f"({MAX_IDX_BYTES:,})") in one_line(caught.value)


def test_idx_file_longer_than_its_header_promises_is_refused(tmp_path):
    path = tmp_path / f"{IMAGES_STEM}.gz"
    path.write_bytes(gzip.compress(idx_header((2, 28, 28)) + bytes(2 * 784 + 5)))
    with pytest.raises(DataError, match="holds more than 1568 data bytes but its header promises 1568"):
        read_idx_file(path, ndim=3)
    path.write_bytes(gzip.compress(idx_header((2, 28, 28)) + bytes(784)))
    with pytest.raises(DataError, match="holds 784 data bytes but its header promises 1568"):
        read_idx_file(path, ndim=3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from Linux's /proc")
def test_idx_gz_that_unpacks_to_2_gb_is_refused_in_little_memory(tmp_path):
    """The real thing: a 2 MB .gz whose header is x_train's and whose data runs on for 2 GB."""
    folder = tmp_path / "idx"
    folder.mkdir()
    with open(folder / f"{IMAGES_STEM}.gz", "wb") as out:
        out.write(gzip.compress(idx_header(X_TRAIN_SHAPE) + bytes(MAX_IDX_BYTES), compresslevel=1))
        zeros = gzip.compress(bytes(1 << 20), compresslevel=9)  # gzip members may follow one another
        out.write(zeros * 2048)
    assert (folder / f"{IMAGES_STEM}.gz").stat().st_size < 3_000_000
    probe = (
        "import sys\n"
        "from mnistlab.data import DataError, load_mnist\n"
        "try:\n"
        "    load_mnist(path=sys.argv[1], cache_dir=sys.argv[2], offline=True, progress=False)\n"
        "except DataError as error:\n"
        "    print(error)\n"
        # VmHWM, the peak of this process image alone: ru_maxrss would also hold the RSS of the
        # pytest process it was forked from (Linux keeps the larger across exec), 755 MB once
        # the whole suite's imports are in it.
        "print(next(int(line.split()[1]) // 1024 for line in open('/proc/self/status') if line.startswith('VmHWM')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(folder), str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=300)
    message, peak_mb = done.stdout.strip().splitlines()
    assert f"holds more than {MAX_IDX_BYTES} data bytes" in message, done.stderr
    assert int(peak_mb) < BOMB_PEAK_LIMIT_MB


@pytest.mark.parametrize("where", ["path", "cache"])
def test_mnist_npz_shapes_are_judged_from_headers(tmp_path, where):
    """A mnist.npz declaring 7.8 GB in 100 bytes is told apart by its header, not read."""
    members = {"x_train.npy": npy((10**7, 28, 28)), "y_train.npy": npy((60000,), "<f8")}
    npz = write_zip(tmp_path / "mnist.npz", **members)
    words = ["x_train is uint8 (10000000, 28, 28), not uint8 (60000, 28, 28)",
             "y_train is float64 (60000,), not uint8 (60000,)"]
    cache = tmp_path / "cache"
    if where == "path":
        with pytest.raises(DataError) as caught:
            load_mnist(path=npz, cache_dir=cache, offline=True, progress=False)
    else:
        cache.mkdir()
        npz.rename(cache / "mnist.npz")
        report = verify(cache)["arrays"]
        assert [report[name]["error"] for name in ("x_train", "y_train")] == [w.split(" ", 1)[1] for w in words]
        with pytest.raises(DataError) as caught:
            load_mnist(cache_dir=cache, offline=True, progress=False)
        assert (cache / "mnist.npz").is_file()  # offline keeps the evidence
    assert all(w in one_line(caught.value) for w in words)


def test_the_cache_is_read_once_per_load_unless_it_changes(mnist, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    np.savez(cache / "mnist.npz", x_train=mnist.x_test)  # corrupt: the wrong arrays
    reads = []
    real_read = mnist_cache.read_mnist_npz
    monkeypatch.setattr(mnist_cache, "read_mnist_npz", lambda path: reads.append(path) or real_read(path))
    with pytest.raises(DataError, match="corrupt"):
        load_mnist(cache_dir=cache, offline=True, progress=False)
    assert len(reads) == 1

    # Another process repairs the cache while this one waits for the lock: that copy is read.
    real_lock = mnist_cache._cache_lock

    @contextlib.contextmanager
    def repaired_while_waiting(cache_dir, progress):
        np.savez(cache / "mnist.npz", **{name: getattr(mnist, name) for name in mnist.checksums()})
        with real_lock(cache_dir, progress):
            yield

    monkeypatch.setattr(mnist_cache, "_cache_lock", repaired_while_waiting)
    reads.clear()
    np.savez(cache / "mnist.npz", x_train=mnist.x_test)
    assert load_mnist(cache_dir=cache, offline=True, progress=False).source == f"cache {cache / 'mnist.npz'}"
    assert len(reads) == 2


def test_verify_of_a_bad_cache_is_an_error_exit(mnist, tmp_path, capsys):
    np.savez(tmp_path / "mnist.npz", x_train=mnist.x_test)
    assert main(["data", "verify", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the MNIST cache at")


@pytest.mark.parametrize("kind, words", [("folder", "is a folder"), ("fifo", "is a FIFO (named pipe)")])
def test_a_cache_that_is_not_a_file_is_named_for_what_it_is(tmp_path, capsys, kind, words):
    cache_file = tmp_path / "mnist.npz"
    if kind == "folder":
        cache_file.mkdir()
    else:
        os.mkfifo(cache_file)
    with never_waits_on(cache_file):
        with pytest.raises(DataError) as caught:
            verify(tmp_path)
        assert f"{words}, not a regular file" in one_line(caught.value)
        assert "does not exist" not in str(caught.value)
        with pytest.raises(DataError, match=re.escape(f"MNIST cache {cache_file} {words}")):
            load_mnist(cache_dir=tmp_path, offline=True, progress=False)
        assert main(["data", "verify", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: MNIST cache") and words in err[0]


def test_mnist_paths_that_are_fifos_are_refused(tmp_path):
    fifo = tmp_path / "mnist.npz"
    os.mkfifo(fifo)
    folder = tmp_path / "idx"
    folder.mkdir()
    os.mkfifo(folder / IMAGES_STEM)
    with never_waits_on(fifo), never_waits_on(folder / IMAGES_STEM):
        with pytest.raises(DataError, match=r"MNIST path .*mnist\.npz is a FIFO \(named pipe\), not a regular file"):
            load_mnist(path=fifo, cache_dir=tmp_path / "cache", offline=True, progress=False)
        with pytest.raises(DataError, match=f"{IMAGES_STEM} is a FIFO"):
            load_mnist(path=folder, cache_dir=tmp_path / "cache", offline=True, progress=False)


# --- digit sets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, words",
    [
        (npy((10**8, 28, 28)), r"is uint8 \(100000000, 28, 28\), 78,400,000,000 values \(78,400,000,000 bytes\), "
                               "over the limit of 67,108,864 values"),
        (npy((1000,), "<U1000000"), r"is <U1000000 \(1000,\), 1,000 values \(4,000,000,000 bytes\), over the limit"),
        (npy((5, 28, 28), "|O"), "holds Python objects"),
    ],
    ids=["2-GB-uint8", "huge-strings", "objects"],
)
def test_digit_npz_declaring_too_much_is_refused_unread(tmp_path, x, words):
    path = write_zip(tmp_path / "digits.npz", **{"x.npy": x, "y.npy": npy((5,))})
    with pytest.raises(DataError, match=words) as caught:
        load_digit_set(path)
    one_line(caught.value)


def test_digit_npz_with_a_header_numpy_cannot_tokenize_is_one_error(tmp_path):
    """A damaged .npy header that NumPy's fallback parser fails on with tokenize's TokenError,
    which is no ValueError (found by tests/test_fuzz.py)."""
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': )20, 28, 28), }"
    header = header.ljust(117) + "\n"
    damaged = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(100)
    path = write_zip(tmp_path / "digits.npz", **{"x.npy": damaged, "y.npy": npy((5,))})
    with pytest.raises(DataError, match="header is not readable") as caught:
        load_digit_set(path)
    one_line(caught.value)


def test_digit_npz_cap_applies_to_genuine_arrays(tmp_path, monkeypatch):
    path = tmp_path / "digits.npz"
    np.savez(path, x=np.zeros((3, 28, 28), np.uint8), y=np.array([1, 2, 3]))
    monkeypatch.setattr(digitarrays, "MAX_NPZ_VALUES", 1000)
    with pytest.raises(DataError, match=r"Array x .* 2,352 values \(2,352 bytes\), over the limit of 1,000 values"):
        load_digit_set(path)


def test_digit_set_that_is_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "digits.npz"
    os.mkfifo(fifo)
    with never_waits_on(fifo), pytest.raises(DataError, match=r"is a FIFO \(named pipe\), not a regular file"):
        load_digit_set(fifo)


# --- users' images ---------------------------------------------------------------------------------


def test_an_image_that_is_a_fifo_is_refused_unopened(tmp_path):
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    with never_waits_on(fifo):
        for read in (decode_image, prepare_image):
            with pytest.raises(ImageError, match=rf"Image {fifo} is a FIFO \(named pipe\), not a regular file\."):
                read(fifo)
        (tmp_path / "labels.csv").write_text("f.png,3\n")
        with pytest.raises(DataError, match=r"line 1 names f\.png, which is a FIFO"):
            labelled_images(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_not_an_empty_or_endless_image(device):
    with pytest.raises(ImageError) as caught:
        decode_image(device)
    assert one_line(caught.value) == f"Image {device} is a character device, not a regular file."


# --- models ------------------------------------------------------------------------------------------


def run_with_model(tmp_path, content):
    """A run folder whose model.keras holds `content` (bytes, or members to zip)."""
    run = tmp_path / "run"
    run.mkdir()
    if isinstance(content, dict):
        write_zip(run / "model.keras", **content)
    else:
        (run / "model.keras").write_bytes(content)
    return run


@pytest.mark.parametrize(
    "content",
    [b"", b"a model, surely", write_zip(io.BytesIO(), **{"config.json": "{}"}).getvalue()[:40]],
    ids=["empty", "text", "truncated"],
)
def test_a_damaged_model_keras_is_one_clear_error(tmp_path, content):
    with pytest.raises(RunError) as caught:
        load_keras(run_with_model(tmp_path, content))
    message = one_line(caught.value)
    assert "is damaged or not a Keras model file" in message and "File not found" not in message


def test_a_json_member_over_its_cap_is_refused(tmp_path):
    config = b" " * MAX_MODEL_JSON_BYTES + b"{}"  # 16 MiB of JSON whitespace deflate to 16 kB
    run = run_with_model(tmp_path, {"config.json": config, "metadata.json": "{}"})
    assert (run / "model.keras").stat().st_size < 100_000
    with pytest.raises(RunError, match=f"config.json unpacks to {len(config):,} bytes, over the limit"):
        load_keras(run)


def test_members_over_the_model_cap_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(modelfile, "MAX_MODEL_BYTES", 10_000)
    run = run_with_model(tmp_path, {"config.json": "{}", "model.weights.h5": bytes(20_000)})
    with pytest.raises(RunError, match="its members unpack to 20,002 bytes, over the limit of 10,000"):
        load_keras(run)


def test_weights_declaring_gigabytes_are_refused(tmp_path):
    """An HDF5 dataset of 4 GiB stored as a few kB (chunked, compressed, never written)."""
    h5py = pytest.importorskip("h5py")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as weights:
        weights.create_dataset("layers/dense/vars/0", shape=(1 << 30,), dtype="f4", chunks=(1 << 16,),
                               compression="gzip")
    run = run_with_model(tmp_path, {"config.json": "{}", "model.weights.h5": buffer.getvalue()})
    assert (run / "model.keras").stat().st_size < 100_000
    with pytest.raises(RunError, match="its weights declare 4,294,967,296 bytes, over the limit"):
        load_keras(run)


def test_a_genuine_model_passes_the_checks_and_loads(tmp_path):
    import keras

    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    check_keras_file(run / "model.keras")
    loaded, temperature = load_keras(run)
    assert loaded.predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0).shape == (1, 10)
    assert temperature == 1.0
