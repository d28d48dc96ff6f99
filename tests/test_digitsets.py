"""Tests for the digit sets fine-tuning reads (`digitsets`) and `normalise_digit`.

The oracle is MNIST itself where one is needed: its test digits are MNIST-normalised already, so
normalise_digit gives them back, an .npz of them (either polarity) comes back as it went in, and
drawn as dark-on-white PNGs they come back close to themselves through prepare_image. USPS is read
from /work/shared/data/usps (skipped where that copy is absent); no test downloads anything.
"""

import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnistlab.data import (
    IMAGE_SIZE,
    MNIST_SHA256,
    NUM_CLASSES,
    DataError,
    DigitSet,
    ImageError,
    load_digit_set,
    normalise_digit,
    select_shots,
)
from mnistlab.data import usps as usps_source
from mnistlab.data.folders import labelled_images
from mnistlab.serve.corrections import CorrectionStore

USPS_DIR = Path("/work/shared/data/usps")
USPS_FILES = ("zip.train.gz", "zip.test.gz")
# Per class 0..9, from USPS's zip.info.txt (and /work/shared/data/usps/SOURCE.md).
USPS_TRAIN_COUNTS = [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
USPS_TEST_COUNTS = [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]
# A digit drawn 4x larger and read back through prepare_image correlates with the original at
# least this much (measured: 0.93 at worst over the 30 drawn here; another digit of the same
# class gives 0.51, see test_images.SIMILAR).
SIMILAR = 0.85


def centre_of_mass(image):
    rows, cols = np.indices(image.shape)
    total = image.sum(dtype=np.float64)
    return (rows * image).sum() / total, (cols * image).sum() / total


def png(digit, scale=4):
    """An MNIST digit as a user would draw it: dark ink on white, `scale` times larger."""
    size = (digit.shape[1] * scale, digit.shape[0] * scale)
    image = Image.fromarray(255 - digit).resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def blank_png():
    buffer = io.BytesIO()
    Image.new("L", (112, 112), 255).save(buffer, "PNG")
    return buffer.getvalue()


def per_class(mnist, count):
    """Rows of the first `count` MNIST test digits of each class, class by class."""
    return np.concatenate([np.flatnonzero(mnist.y_test == d)[:count] for d in range(NUM_CLASSES)])


def rows_of(x):
    """Each image's bytes, to compare sets of images regardless of order."""
    return sorted(image.tobytes() for image in x)


def assert_mnist_like(digit_set):
    assert isinstance(digit_set, DigitSet)
    for x, y in ((digit_set.x_train, digit_set.y_train), (digit_set.x_test, digit_set.y_test)):
        assert x.dtype == np.uint8 and x.shape == (len(y), IMAGE_SIZE, IMAGE_SIZE)
        assert y.dtype == np.uint8 and y.ndim == 1 and y.max() < NUM_CLASSES
        assert x.reshape(len(x), -1).max(axis=1).min() > 0  # every kept image has ink
        # Light ink on black: the outer rows and columns hold 0.05 levels on average in MNIST's
        # training digits (a few digits reach them: 813 of 60,000) and in USPS's (87 of 7,291).
        assert np.concatenate([x[:, [0, -1], :].ravel(), x[:, :, [0, -1]].ravel()]).mean() < 1


def best_correlation(image, digit):
    """Pearson correlation of two 28x28 images, best over shifts of up to one pixel."""
    a, b = image.astype(np.float64), digit.astype(np.float64)
    return max(
        np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel(), b.ravel())[0, 1]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


@pytest.fixture(scope="module")
def usps_dir():
    if not all((USPS_DIR / name).is_file() for name in USPS_FILES):
        pytest.skip(f"the USPS files are not in {USPS_DIR}")
    return USPS_DIR


@pytest.fixture(scope="module")
def usps(usps_dir):
    return load_digit_set(usps_dir, progress=False)


@pytest.fixture
def no_download(monkeypatch):
    def refuse(url, dest, progress):
        pytest.fail(f"download attempted: {url}")

    monkeypatch.setattr(usps_source, "download", refuse)


# --- normalise_digit -----------------------------------------------------------------------------


def test_normalise_digit_gives_mnist_digits_back(mnist):
    x = mnist.x_test[:500]
    out = np.stack([normalise_digit(digit) for digit in x])
    assert out.dtype == np.uint8 and out.shape == x.shape
    close = np.abs(out.astype(int) - x.astype(int)) <= 3
    assert close.mean() >= 0.95
    centres = np.array([centre_of_mass(image) for image in out])
    assert (np.abs(centres - 14) <= 0.5).all(axis=1).mean() >= 0.95
    # Float grey levels give the same digit as uint8.
    assert np.array_equal(normalise_digit(x[0] / np.float32(255)), out[0])


def test_normalise_digit_boxes_and_centres_a_small_off_centre_crop():
    ink = np.zeros((40, 40), np.float32)
    ink[2:8, 30:33] = 1.0  # 6 tall, 3 wide, in a corner
    out = normalise_digit(ink)
    rows, cols = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20  # the longer side fitted to MNIST's 20-px box
    assert cols[-1] - cols[0] + 1 == 10  # the aspect ratio kept
    assert np.allclose(centre_of_mass(out), 14, atol=0.5)


def test_normalise_digit_without_ink_gives_zeros():
    out = normalise_digit(np.zeros((16, 16), np.float32))
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE) and out.dtype == np.uint8 and not out.any()


@pytest.mark.parametrize(
    "ink",
    [np.zeros((2, 8, 8)), np.zeros((8, 8), np.int16), np.full((8, 8), 1.5), np.full((8, 8), np.nan)],
    ids=["3-d", "int16", "above-1", "nan"],
)
def test_normalise_digit_rejects_other_arrays(ink):
    with pytest.raises(ImageError):
        normalise_digit(ink)


# --- USPS ----------------------------------------------------------------------------------------


def test_usps_folder_gives_its_own_splits_with_nothing_dropped(usps, usps_dir):
    assert_mnist_like(usps)
    assert np.bincount(usps.y_train, minlength=NUM_CLASSES).tolist() == USPS_TRAIN_COUNTS
    assert np.bincount(usps.y_test, minlength=NUM_CLASSES).tolist() == USPS_TEST_COUNTS
    assert usps.dropped == 0 and len(usps.x_test) == 2007  # every test digit has ink
    assert usps.test_from == "the source's own test split"
    assert str(usps_dir) in usps.source and "zip.train.gz" in usps.source
    centres = np.array([centre_of_mass(image) for image in usps.x_test[:200]])
    assert np.allclose(centres.mean(axis=0), 14, atol=0.5)


def test_checksums_are_sha256_of_each_array_keyed_like_mnist(usps):
    checksums = usps.checksums()
    assert checksums.keys() == MNIST_SHA256.keys()
    assert checksums["y_test"] == hashlib.sha256(usps.y_test.tobytes()).hexdigest()


def test_usps_from_the_cache_offline(usps, usps_dir, tmp_path, no_download):
    (tmp_path / "usps").mkdir()
    for name in USPS_FILES:
        shutil.copy(usps_dir / name, tmp_path / "usps" / name)
    cached = load_digit_set("usps", cache_dir=tmp_path, offline=True, progress=False)
    assert cached.checksums() == usps.checksums()
    assert str(tmp_path / "usps") in cached.source


def test_usps_download_is_verified_then_kept(usps_dir, tmp_path, monkeypatch, capsys):
    def serve(url, dest, progress):  # the published file, as the network would give it
        shutil.copy(usps_dir / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(usps_source, "download", serve)
    directory = tmp_path / "usps"
    directory.mkdir()
    (directory / "zip.test.gz").write_bytes(b"tampered")  # corrupt: replaced, with a warning
    usps_source.fetch_usps(directory, offline=False, progress=False)
    for name in USPS_FILES:
        assert (directory / name).read_bytes() == (usps_dir / name).read_bytes()
    assert sorted(path.name for path in directory.iterdir()) == sorted(USPS_FILES)  # no leftovers
    assert "corrupt" in capsys.readouterr().err


def test_tampered_usps_download_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(usps_source, "download", lambda url, dest, progress: dest.write_bytes(b"x"))
    with pytest.raises(DataError, match="not the published file"):
        load_digit_set("usps", cache_dir=tmp_path, progress=False)
    assert list((tmp_path / "usps").iterdir()) == []


def test_failed_usps_download_names_the_url(tmp_path, monkeypatch):
    def fail(url, dest, progress):
        raise DataError("timed out")

    monkeypatch.setattr(usps_source, "download", fail)
    with pytest.raises(DataError, match=r"Could not download USPS zip\.train\.gz from https://.*timed out"):
        load_digit_set("usps", cache_dir=tmp_path, progress=False)


def test_usps_offline_without_a_cache_names_what_is_missing(tmp_path, no_download):
    with pytest.raises(DataError, match="missing.*--offline.*raw.githubusercontent.com"):
        load_digit_set("usps", cache_dir=tmp_path, offline=True)


def test_tampered_usps_cache_is_rejected_offline(usps_dir, tmp_path, no_download):
    (tmp_path / "usps").mkdir()
    for name in USPS_FILES:
        shutil.copy(usps_dir / name, tmp_path / "usps" / name)
    flipped = bytearray((tmp_path / "usps" / "zip.train.gz").read_bytes())
    flipped[1000] ^= 0xFF
    (tmp_path / "usps" / "zip.train.gz").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="zip.train.gz is corrupt .*sha256"):
        load_digit_set("usps", cache_dir=tmp_path, offline=True)


def test_tampered_usps_folder_is_rejected(usps_dir, tmp_path):
    for name in USPS_FILES:
        shutil.copy(usps_dir / name, tmp_path / name)
    (tmp_path / "zip.test.gz").write_bytes((usps_dir / "zip.test.gz").read_bytes()[:-10])
    with pytest.raises(DataError, match="zip.test.gz is not the published one"):
        load_digit_set(tmp_path)


def test_usps_folder_needs_both_files(usps_dir, tmp_path):
    shutil.copy(usps_dir / "zip.train.gz", tmp_path / "zip.train.gz")
    with pytest.raises(DataError, match="has no zip.test.gz"):
        load_digit_set(tmp_path)


# --- UCI optical digits --------------------------------------------------------------------------


def test_uci_digits_are_split_per_class_by_seed():
    pytest.importorskip("sklearn")
    first = load_digit_set("uci-digits")
    assert_mnist_like(first)
    assert len(first.y_train) + len(first.y_test) + first.dropped == 1797
    totals = np.bincount(first.y_train, minlength=NUM_CLASSES) + np.bincount(first.y_test)
    assert np.array_equal(np.bincount(first.y_test), np.floor(0.2 * totals + 0.5).astype(int))
    assert first.test_from == "20 % held out per class, seed 0"
    assert "scikit-learn" in first.source
    other = load_digit_set("uci-digits", seed=1)
    assert other.checksums()["x_test"] != first.checksums()["x_test"]
    assert rows_of(np.concatenate([other.x_train, other.x_test])) == rows_of(
        np.concatenate([first.x_train, first.x_test])
    )


def test_uci_digits_without_scikit_learn_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"pip install 'mnistlab\[uci\]'"):
        load_digit_set("uci-digits")


# --- folders of images ---------------------------------------------------------------------------


def test_folder_of_class_sub_folders(mnist, tmp_path):
    rows = per_class(mnist, 3)
    for index, row in enumerate(rows):
        label = mnist.y_test[row]
        (tmp_path / str(label)).mkdir(exist_ok=True)
        (tmp_path / str(label) / f"{index:03d}.png").write_bytes(png(mnist.x_test[row]))
    (tmp_path / "4" / "blank.png").write_bytes(blank_png())  # no ink: counted, left out
    (tmp_path / "4" / "notes.txt").write_text("not an image")  # skipped by its suffix
    (tmp_path / "4" / ".hidden.png").write_bytes(b"a crashed write's leftover")  # skipped
    (tmp_path / "other").mkdir()  # not a class

    digit_set = load_digit_set(tmp_path, progress=False)
    assert_mnist_like(digit_set)
    assert digit_set.dropped == 1
    assert np.bincount(digit_set.y_train).tolist() == [2] * NUM_CLASSES
    assert np.bincount(digit_set.y_test).tolist() == [1] * NUM_CLASSES
    assert "sub-folders" in digit_set.source
    # Each digit comes back close to the one that was drawn (the rows are in file order).
    images = np.concatenate([digit_set.x_train, digit_set.x_test])
    labels = np.concatenate([digit_set.y_train, digit_set.y_test])
    for image, label in zip(images, labels):
        drawn = mnist.x_test[rows[mnist.y_test[rows] == label]]
        assert max(best_correlation(image, digit) for digit in drawn) >= SIMILAR


def test_labels_csv_wins_and_unlisted_images_are_ignored(mnist, tmp_path):
    rows = per_class(mnist, 2)
    lines = ["file,label"]
    for index, row in enumerate(rows):
        name = f"img{index}.png"
        (tmp_path / name).write_bytes(png(mnist.x_test[row]))
        lines.append(f"{name},{mnist.y_test[row]}")
    (tmp_path / "unlisted.png").write_bytes(png(mnist.x_test[0]))
    (tmp_path / "7").mkdir()  # a sub-folder too: labels.csv wins over it
    (tmp_path / "7" / "a.png").write_bytes(png(mnist.x_test[0]))
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n\n")

    digit_set = load_digit_set(tmp_path)
    assert len(digit_set.y_train) + len(digit_set.y_test) == 2 * NUM_CLASSES
    assert np.bincount(digit_set.y_test).tolist() == [1] * NUM_CLASSES
    assert "labels.csv" in digit_set.source
    # Without a header, the same rows.
    (tmp_path / "labels.csv").write_text("\n".join(lines[1:]) + "\n")
    assert load_digit_set(tmp_path).checksums() == digit_set.checksums()


def test_corrections_store_is_a_digit_set(mnist, tmp_path):
    store = CorrectionStore(tmp_path, max_files=100, max_bytes=10_000_000)
    for row in per_class(mnist, 2):
        store.add(png(mnist.x_test[row]), int(mnist.y_test[row]))
    (tmp_path / "3" / "crashed-before-its-row.png").write_bytes(png(mnist.x_test[0]))
    digit_set = load_digit_set(tmp_path)
    assert_mnist_like(digit_set)
    assert len(digit_set.y_train) + len(digit_set.y_test) == 2 * NUM_CLASSES
    assert digit_set.source == f"image folder {tmp_path} (labels.csv)"


@pytest.mark.parametrize(
    "rows, message",
    [
        (["file,label", "a.png,12"], "line 2 gives label '12'"),
        (["a.png,3", "a.png"], r"line 2 is not a `file,label` row"),
        (["a.png,3", "b.png,4,extra"], "line 2 is not a `file,label` row"),
        (["a.png,3", "a.png,3"], "line 2 lists a.png again"),
        (["a.png,3", "../b.png,4"], r"line 2 names \.\./b\.png, which is outside"),
        (["a.png,3", "/etc/passwd,4"], r"line 2 names /etc/passwd, which is outside"),
        (["a.png,3", "sub/../../b.png,4"], r"line 2 names sub/\.\./\.\./b\.png, which is outside"),
        (["a.png,3", "sub,4"], r"line 2 names sub, which is a folder, not a regular file"),
    ],
)
def test_bad_labels_csv_rows_are_named(mnist, tmp_path, rows, message):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(png(mnist.x_test[0]))
    (tmp_path / "sub").mkdir()
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=message):
        load_digit_set(tmp_path)


def test_labelled_images_reads_wide_tables_and_folders_named_after_a_digit(tmp_path):
    (tmp_path / "set" / "s1").mkdir(parents=True)
    for name in ("x.png", "y.png"):
        (tmp_path / "set" / "s1" / name).write_bytes(b"not decoded here")
    (tmp_path / "set" / "index.csv").write_text("set,kind,file,label\ns1,photo,s1/x.png,3\ns1,photo,s1/y.png,4\n")
    found = labelled_images(tmp_path / "set")
    assert found.layout == "index.csv"
    assert found.images == [(tmp_path / "set" / "s1" / "x.png", 3), (tmp_path / "set" / "s1" / "y.png", 4)]
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "a.png").write_bytes(b"")
    (tmp_path / "7" / ".hidden.png").write_bytes(b"")  # skipped, as a crashed write's leftover
    assert labelled_images(tmp_path / "7").images == [(tmp_path / "7" / "a.png", 7)]


def test_lenient_labelled_images_leave_bad_rows_out_and_say_why(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("file,label\na.png,3\n../a.png,4\na.png,5\nmissing.png,1\na.png,12\n")
    found = labelled_images(tmp_path, strict=False)
    assert found.images == [(tmp_path / "a.png", 3)]
    assert [reason.split(" line ")[1][:1] for reason in found.skipped] == ["3", "4", "5", "6"]
    assert "outside" in found.skipped[0] and "again" in found.skipped[1]
    with pytest.raises(DataError, match="line 3 names ../a.png, which is outside"):
        labelled_images(tmp_path)


def test_a_link_out_of_the_folder_is_outside_it(mnist, tmp_path):
    """A table reads what lies in its folder: a symbolic link (or a linked sub-folder) pointing
    out is refused like ../, strictly or by leaving its row out; a link within the folder is read."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png(mnist.x_test[0]))
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(mnist.x_test[0]))
    (folder / "within.png").symlink_to(folder / "a.png")
    (folder / "out.png").symlink_to(outside / "secret.png")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    (folder / "labels.csv").write_text("a.png,3\nwithin.png,3\nout.png,4\nlinked/secret.png,5\n")
    with pytest.raises(DataError, match="line 3 names out.png, which is outside"):
        labelled_images(folder)
    found = labelled_images(folder, strict=False)
    assert found.images == [(folder / "a.png", 3), (folder / "within.png", 3)]
    assert ["outside" in reason for reason in found.skipped] == [True, True]


def test_missing_files_of_a_table_are_named(tmp_path):
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "a.png").write_bytes(b"not decoded here")
    (tmp_path / "labels.csv").write_text("file,label\n3/a.png,3\n4/gone.png,4\n")
    with pytest.raises(DataError, match=r"line 3 names 4/gone\.png, which is missing from .* \(moved or deleted"):
        labelled_images(tmp_path)
    found = labelled_images(tmp_path, missing_ok=True)
    assert (found.images, found.missing, found.skipped) == ([(tmp_path / "3" / "a.png", 3)], ["4/gone.png"], [])
    (tmp_path / "3" / "a.png").unlink()
    with pytest.raises(DataError, match=r"every file it lists is missing: 3/a\.png and 1 more\)"):
        labelled_images(tmp_path, missing_ok=True)


def test_corrections_whose_images_were_moved_away_still_fine_tune(mnist, tmp_path, capsys):
    """The server advises moving a full store's images away; the rows they leave behind in
    labels.csv are skipped with one warning line, not an error."""
    store = CorrectionStore(tmp_path, max_files=100, max_bytes=10_000_000)
    names = [store.add(png(mnist.x_test[row]), int(mnist.y_test[row])) for row in per_class(mnist, 3)]
    moved = tmp_path.parent / "moved"
    moved.mkdir()
    for name in names[::3]:  # one image of each digit
        (tmp_path / name).rename(moved / Path(name).name)
    digit_set = load_digit_set(tmp_path)
    assert len(digit_set.y_train) + len(digit_set.y_test) == 2 * NUM_CLASSES
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: 10 images that ")
    assert "labels.csv lists are missing" in warnings[0] and "using the other 20" in warnings[0]
    for name in names:  # every image gone: nothing to fine-tune on is an error
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(DataError, match="holds no images listed in its labels.csv .every file it lists is missing"):
        load_digit_set(tmp_path)


def test_fine_tuning_is_strict_about_other_bad_rows(mnist, tmp_path):
    (tmp_path / "a.png").write_bytes(png(mnist.x_test[0]))
    (tmp_path / "labels.csv").write_text("a.png,3\ngone.png,4\na.png,5\n")
    with pytest.raises(DataError, match="line 3 lists a.png again"):
        load_digit_set(tmp_path)


def test_undecodable_image_is_named(mnist, tmp_path):
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "good.png").write_bytes(png(mnist.x_test[0]))
    (tmp_path / "5" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"bad\.png is not a PNG, JPEG"):
        load_digit_set(tmp_path)


def test_folders_without_digits_are_refused(tmp_path):
    (tmp_path / "3").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_digit_set(tmp_path)
    (tmp_path / "3").rmdir()
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "blank.png").write_bytes(blank_png())
    with pytest.raises(DataError, match=r"no digit to train on \(1 without ink left out\)"):
        load_digit_set(tmp_path)
    shutil.rmtree(tmp_path / "3")
    with pytest.raises(DataError, match="holds neither .* nor sub-folders 0-9"):
        load_digit_set(tmp_path)


# --- .npz files ----------------------------------------------------------------------------------


def test_npz_with_its_own_test_split_comes_back_unchanged(mnist, tmp_path):
    train, test = per_class(mnist, 5), per_class(mnist, 8)[::2]
    path = tmp_path / "digits.npz"
    np.savez(path, x=mnist.x_test[train], y=mnist.y_test[train],
             x_test=mnist.x_test[test], y_test=mnist.y_test[test].astype(np.int64))
    digit_set = load_digit_set(path)
    assert np.array_equal(digit_set.x_train, mnist.x_test[train])
    assert np.array_equal(digit_set.y_train, mnist.y_test[train])
    assert np.array_equal(digit_set.x_test, mnist.x_test[test])
    assert digit_set.test_from == "the source's own test split" and digit_set.dropped == 0
    assert digit_set.source == f"npz file {path}"


@pytest.mark.parametrize(
    "to_file",
    [
        lambda x: 255 - x,  # uint8, dark ink on white
        lambda x: (x / np.float32(255))[..., np.newaxis],  # float, light on black, a channel
        lambda x: 1 - x / np.float64(255),  # float, dark on white
    ],
    ids=["uint8-dark-on-light", "float-light-on-dark-channel", "float-dark-on-light"],
)
def test_npz_either_polarity_and_dtype_and_one_hot_labels(mnist, tmp_path, to_file):
    rows = per_class(mnist, 5)
    x, y = mnist.x_test[rows], mnist.y_test[rows]
    path = tmp_path / "digits.npz"
    np.savez(path, x=to_file(x), y=np.eye(NUM_CLASSES, dtype=np.float32)[y], x_test=x, y_test=y)
    digit_set = load_digit_set(path)
    assert np.array_equal(digit_set.y_train, y)
    assert np.abs(digit_set.x_train.astype(int) - x.astype(int)).max() <= 1


def test_npz_split_is_stratified_and_seeded(mnist, tmp_path):
    counts = [1, 2, 3, 5, 10, 20, 7, 8, 9, 40]
    rows = np.concatenate([np.flatnonzero(mnist.y_test == d)[:n] for d, n in enumerate(counts)])
    x, y = mnist.x_test[rows].copy(), mnist.y_test[rows]
    x[0] = 0  # a blank image (of the single 0): dropped and counted
    path = tmp_path / "digits.npz"
    np.savez(path, x=x, y=y)
    first = load_digit_set(path, test_fraction=0.2, seed=0)
    assert first.dropped == 1
    # Half up, at least one each side for two or more, a lone digit (or none) trains.
    assert np.bincount(first.y_test, minlength=NUM_CLASSES).tolist() == [0, 1, 1, 1, 2, 4, 1, 2, 2, 8]
    assert rows_of(np.concatenate([first.x_train, first.x_test])) == rows_of(x[1:])
    assert load_digit_set(path, seed=0).checksums() == first.checksums()
    assert load_digit_set(path, seed=1).checksums()["x_test"] != first.checksums()["x_test"]
    half = load_digit_set(path, test_fraction=0.5)
    assert half.test_from == "50 % held out per class, seed 0"
    assert np.bincount(half.y_test, minlength=NUM_CLASSES).tolist() == [0, 1, 2, 3, 5, 10, 4, 4, 5, 20]


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


X = np.zeros((3, 28, 28), np.uint8)
X[:, 10:18, 12:15] = 255
Y = np.array([1, 2, 3])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: write(p, x=X), r"must hold arrays x and y; it holds \['x'\]"),
        (lambda p: write(p, x=X[0], y=Y), r"must be images \(N, H, W\)"),
        (lambda p: write(p, x=X[..., None].repeat(3, -1), y=Y), r"must be images \(N, H, W\)"),
        (lambda p: write(p, x=X.astype(np.int16), y=Y), "must be uint8 0-255 or float 0-1, not int16"),
        (lambda p: write(p, x=X * 1.0, y=Y), "floats from 0 to 255"),
        (lambda p: write(p, x=np.full((3, 28, 28), np.nan), y=Y), "grey levels must lie in"),
        (lambda p: write(p, x=X[:0], y=Y[:0]), "is empty"),
        (lambda p: write(p, x=X, y=np.array([1, 2, 10])), "labels from 1 to 10, not 0-9"),
        (lambda p: write(p, x=X, y=np.array([1, -2, 3], np.int8)), "labels from -2 to 3"),
        (lambda p: write(p, x=X, y=Y * 1.0), "must be integer labels"),
        (lambda p: write(p, x=X, y=np.full((3, 10), 0.5)), "rows are not one-hot"),
        (lambda p: write(p, x=X, y=Y[:2]), "3 images in x but 2 labels in y"),
        (lambda p: write(p, x=X, y=Y, x_test=X), "one of x_test and y_test"),
        (lambda p: write(p, x=X, y=Y, x_test=X, y_test=Y[:1]), "in x_test but 1 labels in y_test"),
        (lambda p: write(p, x=np.array([X, "a"], dtype=object), y=Y), "holds Python objects"),
        (lambda p: p.write_text("x,y\n1,2\n"), "is not an .npz file"),
        (lambda p: p.write_bytes(b"PK\x03\x04 damaged"), "could not be read as an .npz file"),
        (lambda p: p.write_bytes(b""), "could not be read as an .npz file"),
        (lambda p: np.save(p.with_suffix(".npy"), X) or p.with_suffix(".npy").rename(p),
         "a single .npy array"),
    ],
    ids=[
        "no-y", "2-d", "3-channels", "int16", "float-255", "nan", "empty", "label-10",
        "label-negative", "float-labels", "bad-one-hot", "lengths", "x_test-alone",
        "test-lengths", "objects", "text", "damaged-zip", "empty-file", "npy",
    ],
)
def test_bad_npz_files_raise_one_clear_error(tmp_path, make, message):
    path = tmp_path / "digits.npz"
    make(path)
    with pytest.raises(DataError, match=message):
        load_digit_set(path)


# --- what is not a digit set ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, message",
    [
        ("mnist", "'mnist' does not exist; a digit set is one of: 'usps', 'uci-digits'"),
        ("notes.txt", "is not a folder or an .npz file"),
    ],
)
def test_other_sources_list_what_is_accepted(tmp_path, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=message):
        load_digit_set(source)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_test_fraction_must_leave_both_splits(fraction):
    with pytest.raises(DataError, match="test_fraction must lie between 0 and 1"):
        load_digit_set("uci-digits", test_fraction=fraction)


def test_import_of_mnistlab_data_leaves_digitsets_unloaded():
    code = (
        "import sys, mnistlab.data; "
        "print(sorted(m for m in ('mnistlab.data.digitsets', 'PIL', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# --- select_shots --------------------------------------------------------------------------------


def test_select_shots_takes_k_per_class_seeded_and_nested():
    y = np.repeat(np.arange(NUM_CLASSES), np.arange(10, 20)).astype(np.uint8)
    x = np.arange(len(y))  # each "image" its own row number
    picked_x, picked_y = select_shots(x, y, shots=5, seed=0)
    assert np.bincount(picked_y).tolist() == [5] * NUM_CLASSES
    assert np.array_equal(y[picked_x], picked_y) and np.all(np.diff(picked_x) > 0)
    again, _ = select_shots(x, y, shots=5, seed=0)
    assert np.array_equal(again, picked_x)
    assert not np.array_equal(select_shots(x, y, shots=5, seed=1)[0], picked_x)
    fewer, _ = select_shots(x, y, shots=3, seed=0)
    assert set(fewer) <= set(picked_x)  # growing K adds digits, changes none
    everything, _ = select_shots(x, y, shots=10, seed=0)
    assert len(everything) == 10 * NUM_CLASSES


@pytest.mark.parametrize(
    "shots, y, message",
    [
        (11, np.repeat(np.arange(NUM_CLASSES), np.arange(10, 20)), "but 0 has 10"),
        (1, np.arange(9).repeat(3), "but 9 has 0"),
        (0, np.arange(10), "positive integer"),
        (2.5, np.arange(10), "positive integer"),
        (True, np.arange(10), "positive integer"),
        (1, np.arange(10) * 1.0, "integer labels"),
        (1, np.arange(11), "0..9"),
    ],
)
def test_select_shots_refuses_what_it_cannot_give(shots, y, message):
    with pytest.raises(DataError, match=message):
        select_shots(np.zeros(len(y)), y, shots=shots, seed=0)


def test_select_shots_needs_one_label_per_image():
    with pytest.raises(DataError, match="as many integer labels as images"):
        select_shots(np.zeros(5), np.arange(10), shots=1, seed=0)
