"""Inputs that cannot break mnistlab: damaged and foreign files, fuzzed images, fuzzed requests.

    pytest -q tests/test_fuzz.py        # ~30 s; benchmarks/reliability.py fuzzes 10,000 requests

Every loader a user can hand a file (config files, images, digit sets, an MNIST path, Keras and
ONNX models) answers a damaged or foreign one with one MnistlabError sentence and nothing else.
Hypothesis checks properties of the preprocessing (prepare_image, normalise_digit) and of config
parsing, and fuzzes image decoding and the HTTP API (a real uvicorn server on loopback, as in
tests/test_serve.py) with damaged files and malformed requests: only clear refusals may come out.
The examples are derandomised, so a run repeats the last one; the benchmark draws afresh.
"""

import base64
import contextlib
import gzip
import io
import json
import logging
import pickle
import socket
import tomllib
import typing
import zipfile

import httpx
import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from mnistlab.config import (
    Config,
    ConfigError,
    FinetuneConfig,
    ModelConfig,
    TrainConfig,
    coerce,
    config_from_dict,
    read_config_file,
    resolve_config,
)
from mnistlab.data import (
    DataError,
    ImageError,
    decode_image,
    load_digit_set,
    load_mnist,
    normalise_digit,
    prepare_image,
)
from mnistlab.errors import MnistlabError
from mnistlab.predict import Predictor
from mnistlab.runs import RunDir, RunError
from mnistlab.runtimes import ExportError, OnnxModel
from mnistlab.serve import Limits, create_app, running

# Pillow warns (UserWarning) about damaged TIFF and EXIF metadata it skips; the decoding fuzz
# makes plenty, and what matters here is what is raised.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

# Derandomised (the same examples every run, no .hypothesis folder); modest counts keep the
# file near half a minute on two cores. Checks that cost more per example lower max_examples.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextlib.contextmanager
def refused(kind: type[MnistlabError] = MnistlabError):
    """Expect `kind` with a one-sentence message; any other exception escapes and fails the test."""
    with pytest.raises(kind) as caught:
        yield caught
    one_line(caught.value)


def one_line(error: Exception) -> None:
    message = str(error)
    assert message.strip() and "\n" not in message and len(message) < 1000, repr(message)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# -- config files ------------------------------------------------------------------------------

BAD_CONFIGS = {
    "binary": (".toml", bytes(range(256))),
    "not UTF-8": (".yaml", b"model:\n  name: \xff\xfe"),
    "UTF-16": (".toml", "[model]\nname = 'x'".encode("utf-16")),
    "TOML syntax": (".toml", b"[model\nkernel_size = "),
    "YAML syntax": (".yaml", b"model: [1, 2"),
    "YAML python tag": (".yaml", b"!!python/object/apply:os.system ['true']"),
    "YAML list": (".yaml", b"- model\n- train\n"),
    "YAML scalar": (".yml", b"42"),
    "NUL in TOML": (".toml", b'[model]\nname = "a\x00"'),
    "unknown table": (".toml", b"[data]\npath = 'x'"),
    "table not a table": (".toml", b"model = 3"),
    "YAML table null": (".yaml", b"model:\n"),
    "unknown field": (".toml", b"[model]\nwidth = 3"),
    "text for int": (".toml", b'[train]\nepochs = "many"'),
    "list for int": (".toml", b"[train]\nepochs = [1]"),
    "table for tuple": (".toml", b"[model]\nconv_filters = {a = 1}"),
    "date for int": (".toml", b"[train]\nepochs = 1979-05-27"),
    "fraction for int": (".toml", b"[train]\nepochs = 2.5"),
    "400-digit float": (".toml", b"[train]\nlearning_rate = " + b"9" * 400),
    "infinite learning rate": (".toml", b"[train]\nlearning_rate = inf"),
    "NaN dropout": (".toml", b"[model]\ndropout = nan"),
    "dropout out of range": (".yaml", b"model: {dropout: 1.5}"),
    "nested too deep (TOML)": (".toml", b"a = " + b"[" * 5000 + b"]" * 5000),
    "nested too deep (YAML)": (".yaml", b"[" * 5000 + b"]" * 5000),
    "YAML aliases": (".yaml", b"a: &a [1, 1, 1]\nb: &b [*a, *a, *a]\nmodel: {conv_filters: *b}"),
    "JSON": (".json", b"{}"),
}


def _resolved(path) -> Config:
    return resolve_config(ModelConfig(), read_config_file(path))


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_files_are_one_config_error(tmp_path, name):
    suffix, content = BAD_CONFIGS[name]
    path = tmp_path / f"config{suffix}"
    path.write_bytes(content)
    with refused(ConfigError):
        _resolved(path)


@pytest.mark.parametrize("path", ["missing.toml", ".", "a\x00b.toml"])
def test_config_paths_that_are_not_files(tmp_path, path):
    with refused(ConfigError):
        read_config_file(tmp_path / path)


FIELDS = {cls: typing.get_type_hints(cls) for cls in (ModelConfig, TrainConfig, FinetuneConfig)}
NAMES = sorted({name for hints in FIELDS.values() for name in hints})
# What a TOML or YAML file can hold, and more (None, sets of keys TOML has no syntax for).
scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400) | st.floats()
    | st.text(max_size=12) | st.dates() | st.datetimes() | st.sampled_from(["relu", "max", "same", "onecycle"])
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(NAMES) | st.text(max_size=8) | st.integers()
config_data = st.dictionaries(
    st.sampled_from(["model", "train", "finetune"]) | st.text(max_size=6),
    st.dictionaries(keys, values, max_size=5) | values,
    max_size=3,
)


def typed(hint) -> st.SearchStrategy:
    """Values of one field's type, in and out of its valid range."""
    if typing.get_origin(hint) is tuple:  # of ints (conv_filters) or of names (extra_train)
        (item,) = {t for t in typing.get_args(hint) if t is not Ellipsis}
        # A flag joins a tuple's names with commas and splits them on commas and spaces.
        name = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=8)
        items = st.integers(0, 300) if item is int else name
        return st.lists(items, max_size=3).map(tuple)
    return {
        bool: st.booleans(),
        int: st.integers(-3, 300),
        float: st.floats(-1, 40, allow_nan=False),
        str: st.sampled_from(["cnn", "mlp", "relu", "gelu", "avg", "valid", "onecycle", "head", ""])
        | st.text(max_size=8),
    }[hint]


# Configs that are mostly valid: fields of their own type, a few of them out of range.
plausible = st.fixed_dictionaries(
    {},
    optional={
        table: st.fixed_dictionaries({}, optional={name: typed(hint) for name, hint in FIELDS[cls].items()})
        for table, cls in (("model", ModelConfig), ("train", TrainConfig), ("finetune", FinetuneConfig))
    },
)


@FUZZ
@given(data=config_data | plausible)
def test_any_config_data_resolves_or_is_one_config_error(data):
    try:
        cfg = resolve_config(ModelConfig(), data)
    except ConfigError as error:
        one_line(error)
        return
    # What resolves is written as TOML and read back to the same Config (the run folder's copy).
    assert config_from_dict(tomllib.loads(tomli_w.dumps(cfg.to_dict()))) == cfg


# Fragments of TOML and YAML, put together at random with random text.
config_text = st.lists(
    st.sampled_from([
        "[model]\n", "[train]\n", "[finetune]\n", "[[model]]\n", "model:\n", "train: {", "  ", "- ", "\n",
        "epochs = ", "epochs: ", "conv_filters = [", "dense_units: [", "]", "}", "dropout = ", "name = ",
        "1", "-7", "0.5", "1e999", "nan", "inf", "true", '"relu"', "'x'", ",", "&a ", "*a", "!!binary ", "#",
        "1979-05-27", "0x1F", "[" * 50,
    ]) | st.text(max_size=6),
    max_size=30,
).map("".join)


@FUZZ
@given(suffix=st.sampled_from([".toml", ".yaml"]), text=config_text)
def test_any_config_text_reads_or_is_one_config_error(scratch, suffix, text):
    path = scratch / f"fuzzed{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = _resolved(path)
    except ConfigError as error:
        one_line(error)
        return
    assert isinstance(cfg, Config)


def _as_flag(value) -> str:
    """How a command-line flag spells a value."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


@FUZZ
@given(data=st.data())
def test_coerce_round_trips_values_and_their_flags(data):
    cls = data.draw(st.sampled_from(list(FIELDS)))
    name = data.draw(st.sampled_from(sorted(FIELDS[cls])))
    hint = FIELDS[cls][name]
    value = data.draw(typed(hint) if hint is not float else st.floats(allow_nan=False))
    assert coerce(cls, name, value) == value
    assert coerce(cls, name, _as_flag(value)) == value  # from a flag, as the CLI passes it


# -- users' images -----------------------------------------------------------------------------


def _pattern(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Grey levels in [0, 1] of one kind of picture: what users send, and what they should not."""
    rows, cols = np.mgrid[:height, :width]
    if kind == "noise":
        return rng.random((height, width))
    if kind == "blank":
        return np.full((height, width), rng.random())
    if kind == "gradient":
        return (rows / max(height - 1, 1) * rng.random() + cols / max(width - 1, 1) * rng.random()) / 2
    if kind == "dot":
        grey = np.zeros((height, width))
        grey[rng.integers(height), rng.integers(width)] = 1
        return grey
    if kind == "extremes":
        return rng.integers(0, 2, (height, width)).astype(float)
    # Strokes: a ring and a bar, light on dark or dark on light, with some noise.
    centre = rng.random(2) * (height, width)
    radius = rng.random() * min(height, width) / 2 + 1
    ink = np.abs(np.hypot(rows - centre[0], cols - centre[1]) - radius) < max(1.0, radius / 5)
    ink |= (np.abs(cols - rng.integers(width)) < max(1, width // 30)) & (rows > rng.integers(height))
    grey = np.clip(ink + rng.normal(0, rng.random() * 0.1, (height, width)), 0, 1)
    return 1 - grey if rng.random() < 0.5 else grey


@st.composite
def grey_arrays(draw) -> tuple[np.ndarray, bool]:
    """(array, valid): a picture of 1..300 px a side as uint8 or floats, sometimes out of range."""
    height, width = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["noise", "blank", "gradient", "dot", "extremes", "strokes", "strokes"]))
    grey = _pattern(kind, height, width, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    dtype = draw(st.sampled_from(["uint8", "float32", "float64", "float16"]))
    if dtype == "uint8":
        array = np.rint(grey * 255).astype(np.uint8)
    else:
        array = grey.astype(dtype)
    spoil = draw(st.sampled_from([None] * 6 + ["nan", "inf", "negative", "above one", "int32", "channels"]))
    if spoil in ("nan", "inf", "negative", "above one") and dtype != "uint8":
        array.flat[draw(st.integers(0, array.size - 1))] = {"nan": np.nan, "inf": np.inf, "negative": -0.5,
                                                             "above one": 1.5}[spoil]
    elif spoil == "int32":
        array = array.astype(np.int32)
    elif spoil == "channels":
        array = np.stack([array] * draw(st.sampled_from([2, 5])), axis=-1)
    else:
        spoil = None
    return array, spoil is None


small_shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)
small_arrays = hnp.arrays(np.uint8, small_shapes) | hnp.arrays(
    st.sampled_from([np.float32, np.float64]), small_shapes, elements=st.floats(0, 1, width=32)
)


def _check_prepared(source: np.ndarray, valid: bool) -> None:
    try:
        prepared = prepare_image(source)
    except ImageError as error:
        assert not valid, f"a valid {source.dtype} {source.shape} array was refused: {error}"
        one_line(error)
        return
    assert valid, f"an invalid {source.dtype} {source.shape} array was accepted"
    assert prepared.image.shape == (28, 28) and prepared.image.dtype == np.uint8
    if not prepared.has_ink:
        assert not prepared.image.any() and prepared.box is None and not prepared.inverted
    else:
        assert prepared.image.any()
        top, left, bottom, right = prepared.box
        assert 0 <= top < bottom <= source.shape[0] and 0 <= left < right <= source.shape[1]


@FUZZ
@given(case=grey_arrays())
def test_prepare_image_on_any_array_gives_a_digit_or_an_image_error(case):
    _check_prepared(*case)


@FUZZ
@given(array=small_arrays)
def test_prepare_image_on_tiny_arrays(array):
    _check_prepared(array, True)


def _mass_centre(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64)
    rows, cols = np.mgrid[:28, :28]
    return float((weights * rows).sum() / weights.sum()), float((weights * cols).sum() / weights.sum())


@FUZZ
@given(case=grey_arrays())
def test_normalise_digit_is_in_range_and_centred(case):
    array, valid = case
    try:
        image = normalise_digit(array)
    except ImageError as error:
        assert not valid, error
        one_line(error)
        return
    assert valid and image.shape == (28, 28) and image.dtype == np.uint8
    if not (array > 0).any():
        assert not image.any()
    if image.any():
        # Centred by mass as MNIST is, within the rounding of the shift and of the grey levels;
        # unless the 20-px box cannot move that far inside 28x28 (mass crowded at one end): then
        # the ink reaches the image's edge on that side.
        ink_rows, ink_cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
        for centre, ink in zip(_mass_centre(image), (ink_rows, ink_cols)):
            assert ink[-1] - ink[0] < 21
            assert abs(centre - 14) <= 1.0 or ink[0] <= 1 or ink[-1] >= 26, (centre, ink[0], ink[-1])


def _encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def _valid_images() -> list[bytes]:
    """A drawn ring in every format and flavour decode_image reads, each a few hundred bytes."""
    rows, cols = np.mgrid[:48, :48]
    ring = np.where(np.abs(np.hypot(rows - 24, cols - 24) - 14) < 3, 0, 255).astype(np.uint8)
    rgba = np.dstack([255 - ring] * 3 + [255 - ring])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turned a quarter
    frames = [Image.fromarray(ring), Image.fromarray(255 - ring)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    pages = io.BytesIO()
    frames[0].save(pages, "TIFF", save_all=True, append_images=frames[1:])
    return [
        _encoded(ring, "PNG"),
        _encoded(rgba, "PNG"),
        _encoded(ring, "JPEG", quality=85),
        _encoded(np.dstack([ring] * 3), "JPEG", progressive=True, exif=exif),
        _encoded(ring, "GIF"),
        animated.getvalue(),
        _encoded(ring, "WEBP"),
        _encoded(rgba, "WEBP", lossless=True),
        _encoded(ring, "TIFF"),
        _encoded(ring, "TIFF", compression="tiff_lzw"),
        _encoded((ring.astype(np.float32) / 255), "TIFF"),
        pages.getvalue(),
        _encoded(ring, "BMP"),
    ]


class Files(list):
    """Files to draw from, whose repr stays short in Hypothesis's reports and warnings."""

    def __repr__(self) -> str:
        return f"<{len(self)} files>"


VALID_IMAGES = Files(_valid_images())
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"GIF89a", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8L", b"BM", b""]


@st.composite
def damaged(draw, sources: list[bytes]) -> bytes:
    """A valid file with bit flips, cuts, a corrupted header, bytes inserted or removed."""
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(["flip", "cut", "header", "insert", "delete"])):
            case "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "cut":
                del data[at:]
            case "header":
                data[at % min(48, len(data))] = draw(st.integers(0, 255))
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
            case "delete":
                del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


image_bytes = (
    damaged(VALID_IMAGES)
    | st.binary(max_size=600)
    | st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGIC), st.binary(max_size=600))
)


@settings(FUZZ, max_examples=400)
@given(data=image_bytes)
def test_decoding_damaged_or_random_bytes_gives_grey_levels_or_an_image_error(data):
    try:
        grey = decode_image(data)
    except ImageError as error:
        one_line(error)
        return
    assert grey.ndim == 2 and grey.dtype == np.float32 and grey.size > 0
    assert np.isfinite(grey).all() and grey.min() >= 0 and grey.max() <= 1
    prepared = prepare_image(grey)  # decoded grey levels are always valid input
    assert prepared.image.shape == (28, 28)


def test_every_valid_sample_decodes():
    for data in VALID_IMAGES:
        assert prepare_image(data).has_ink


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "text", "NUL in path", "NaN pixels"])
def test_image_files_that_are_not_images(tmp_path, case):
    path = tmp_path / "digit.png"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("a digit, I promise")
    elif case == "NUL in path":
        path = str(path) + "\x00.png"
    elif case == "NaN pixels":
        path.write_bytes(_encoded(np.full((8, 8), np.nan, np.float32), "TIFF"))
    with refused(ImageError):
        prepare_image(path)


# -- digit sets and MNIST paths ---------------------------------------------------------------


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npy_header(header: str) -> bytes:
    """An .npy member with a hand-written header and 100 bytes of data."""
    text = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + bytes(100)


def _zip(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


DIGITS = np.zeros((20, 28, 28), np.uint8)
DIGITS[:, 6:22, 12:16] = 255
LABELS = np.arange(20) % 10
GOOD_NPZ = _npz(x=DIGITS, y=LABELS)

BAD_NPZ = {
    "empty": b"",
    "text": b"x,y\n1,2\n",
    "pickle": pickle.dumps({"x": DIGITS, "y": LABELS}),
    "one .npy": _npy(DIGITS),
    "truncated": GOOD_NPZ[: len(GOOD_NPZ) // 2],
    "bit flip": GOOD_NPZ[:300] + bytes([GOOD_NPZ[300] ^ 0x40]) + GOOD_NPZ[301:],
    "objects": _npz(x=np.array([None] * 3, object), y=LABELS[:3]),
    "members not .npy": _zip(**{"x.npy": b"garbage", "y.npy": b"garbage"}),
    "header over memory": _zip(**{"x.npy": _npy_header("{'descr': '|u1', 'fortran_order': False, "
                                                       "'shape': (100000000, 28, 28), }"), "y.npy": b""}),
    "header code": _zip(**{"x.npy": _npy_header("__import__('os').system('false')"), "y.npy": b""}),
    "negative shape": _zip(**{"x.npy": _npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 28), }")}),
    "no y": _npz(x=DIGITS),
    "x_test alone": _npz(x=DIGITS, y=LABELS, x_test=DIGITS),
    "strings": _npz(x=np.array(["a", "b"]), y=np.array([1, 2])),
    "complex": _npz(x=np.ones((2, 5, 5), complex), y=np.array([1, 2])),
    "colour": _npz(x=np.zeros((2, 5, 5, 3)), y=np.array([1, 2])),
    "NaN": _npz(x=np.full((2, 5, 5), np.nan), y=np.array([1, 2])),
    "float labels": _npz(x=DIGITS, y=LABELS.astype(float)),
    "labels out of range": _npz(x=DIGITS, y=LABELS + 10),
    "bad one-hot": _npz(x=DIGITS, y=np.eye(10)[LABELS] * 2),
    "fewer labels": _npz(x=DIGITS, y=LABELS[:5]),
    "blank digits": _npz(x=np.zeros((20, 5, 5)), y=LABELS),
}


@pytest.mark.parametrize("name", list(BAD_NPZ))
def test_bad_npz_digit_sets_are_one_data_error(tmp_path, name):
    path = tmp_path / "digits.npz"
    path.write_bytes(BAD_NPZ[name])
    with refused(DataError):
        load_digit_set(path, progress=False)


def _label_folder(root, labels_csv: bytes, images: dict[str, bytes] | None = None):
    root.mkdir()
    (root / "labels.csv").write_bytes(labels_csv)
    for name, data in (images or {}).items():
        (root / name).write_bytes(data)
    return root


BAD_FOLDERS = {
    "labels not UTF-8": (b"\xff\xfe\x00a", {}),
    "field over the csv limit": (b"a" * 200_000 + b",3\n", {}),
    "label not a digit": (b"a.png,seven\n", {"a.png": VALID_IMAGES[0]}),
    "three columns": (b"a.png,3,x\n", {"a.png": VALID_IMAGES[0]}),
    "listed twice": (b"a.png,3\na.png,4\n", {"a.png": VALID_IMAGES[0]}),
    "missing image": (b"a.png,3\n", {}),
    "image not an image": (b"a.png,3\n", {"a.png": b"GIF89a but no"}),
    "truncated image": (b"a.png,3\n", {"a.png": VALID_IMAGES[0][:100]}),
    "header only": (b"file,label\n", {}),
}


@pytest.mark.parametrize("name", list(BAD_FOLDERS))
def test_bad_image_folders_are_one_data_error(tmp_path, name):
    labels, images = BAD_FOLDERS[name]
    with refused(DataError):
        load_digit_set(_label_folder(tmp_path / "digits", labels, images), progress=False)


@pytest.mark.parametrize("source", ["", "nowhere", "a\x00b", "digits.txt", "usps-copy"])
def test_digit_sources_that_are_none(tmp_path, source):
    (tmp_path / "digits.txt").write_text("1 2 3")
    (tmp_path / "usps-copy").mkdir()
    (tmp_path / "usps-copy" / "zip.train.gz").write_bytes(gzip.compress(b"1 0 0"))
    with refused(DataError):
        load_digit_set(tmp_path / source if source else source, progress=False)


@settings(FUZZ, max_examples=60)
@given(data=damaged(Files([GOOD_NPZ])))
def test_damaged_npz_gives_digits_or_a_data_error(scratch, data):
    path = scratch / "damaged.npz"
    path.write_bytes(data)
    try:
        digits = load_digit_set(path, progress=False)
    except DataError as error:
        one_line(error)
        return
    assert digits.x_train.shape[1:] == (28, 28) and digits.x_train.dtype == np.uint8


IDX_STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
BAD_MNIST = {
    **{f"npz {name}": BAD_NPZ[name] for name in ("empty", "text", "pickle", "one .npy", "truncated", "objects")},
    "npz of other arrays": GOOD_NPZ,
    "npz members not .npy": _zip(**{f"{name}.npy": b"garbage" for name in ("x_train", "y_train", "x_test", "y_test")}),
    "npz header over memory": _zip(x_train=_npy_header("{'descr': '|u1', 'fortran_order': False, "
                                                       "'shape': (100000000, 28, 28), }")),
    "npz wrong shapes": _npz(x_train=DIGITS, y_train=LABELS, x_test=DIGITS, y_test=LABELS),
    "IDX bad magic": {stem: b"\x00\x00\x09\x03" + bytes(16) for stem in IDX_STEMS},
    "IDX short": {stem: b"\x00\x00\x08\x03" + (60000).to_bytes(4, "big") + bytes(10) for stem in IDX_STEMS},
    "IDX header promises more": {stem: b"\x00\x00\x08\x03" + b"\xff" * 12 for stem in IDX_STEMS},
    "IDX gzip damaged": {f"{stem}.gz": b"\x1f\x8b\x08junk" for stem in IDX_STEMS},
    "IDX one missing": {stem: b"\x00\x00\x08\x01" + bytes(4) for stem in IDX_STEMS[1:]},
}


@pytest.mark.parametrize("name", list(BAD_MNIST))
def test_bad_mnist_paths_are_one_data_error(tmp_path, name):
    content = BAD_MNIST[name]
    if isinstance(content, dict):  # a folder of IDX files
        path = tmp_path / "idx"
        path.mkdir()
        for stem, data in content.items():
            (path / stem).write_bytes(data)
    else:
        path = tmp_path / "mnist.npz"
        path.write_bytes(content)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mnist.npz").write_bytes(_npy(DIGITS))  # a damaged cache too: the path must replace it
    with refused(DataError):
        load_mnist(path=path, cache_dir=cache, offline=True, progress=False)


# -- models ------------------------------------------------------------------------------------


def _onnx(inputs=(("image", ["batch", 28, 28, 1]),), classes=10, metadata=None) -> bytes:
    """A linear softmax classifier as ONNX, built node by node (no Keras, no TensorFlow)."""
    import onnx
    from onnx import TensorProto, helper

    weights = np.random.default_rng(0).normal(0, 0.05, (784, classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", [inputs[0][0], "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"]),
        ],
        "linear",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784]),
            helper.make_tensor("weights", TensorProto.FLOAT, [784, classes], weights.ravel()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime 1.20 reads up to 10
    for key, value in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model.SerializeToString()


GOOD_ONNX = _onnx()
BAD_ONNX = {
    "empty": b"",
    "text": b"a model, surely",
    "truncated": GOOD_ONNX[: len(GOOD_ONNX) // 2],
    "byte flipped": GOOD_ONNX[:10] + bytes([GOOD_ONNX[10] ^ 0xFF]) + GOOD_ONNX[11:],
    "a zip": _zip(**{"config.json": b"{}"}),
    "foreign input": _onnx(inputs=(("image", ["batch", 32, 32, 3]),)),
    "foreign output": _onnx(classes=7),
    "two inputs": _onnx(inputs=(("image", ["batch", 28, 28, 1]), ("extra", ["batch", 1]))),
    "temperature not a number": _onnx(metadata={"temperature": "warm"}),
    "temperature negative": _onnx(metadata={"temperature": "-1"}),
}


@pytest.mark.parametrize("name", list(BAD_ONNX))
def test_bad_onnx_models_are_one_export_error(tmp_path, name):
    path = tmp_path / "model.onnx"
    path.write_bytes(BAD_ONNX[name])
    with refused(ExportError):
        Predictor.from_onnx(path)


@pytest.fixture(scope="module")
def keras_files(scratch):
    """A tiny valid model.keras, one whose Lambda layer safe mode must refuse, and a foreign one."""
    import keras

    def saved(model, name):
        path = scratch / f"{name}.keras"
        model.save(path)
        return path.read_bytes()

    inputs = keras.Input((28, 28, 1))
    good = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    code = keras.Model(inputs, keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2)(inputs)))
    foreign_in = keras.Input((32, 32, 3))
    foreign = keras.Model(foreign_in, keras.layers.Dense(5)(keras.layers.Flatten()(foreign_in)))
    return {"good": saved(good, "good"), "lambda": saved(code, "lambda"), "foreign": saved(foreign, "foreign")}


def _keras_case(files: dict[str, bytes], name: str) -> bytes:
    good = files["good"]
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    return {
        "empty": lambda: b"",
        "text": lambda: b"a model, surely",
        "pickle": lambda: pickle.dumps({"weights": [1, 2]}),
        "ONNX": lambda: GOOD_ONNX,
        "truncated": lambda: good[: len(good) // 2],
        "byte flipped": lambda: good[: len(good) // 2] + bytes([good[len(good) // 2] ^ 0xFF])
        + good[len(good) // 2 + 1 :],
        "config not JSON": lambda: _zip(**{**members, "config.json": b"{not json"}),
        "config names os.system": lambda: _zip(**{**members, "config.json": json.dumps(
            {"module": "os", "class_name": "system", "config": "true", "registered_name": None}).encode()}),
        "no weights": lambda: _zip(**{k: v for k, v in members.items() if "weights" not in k}),
        "weights not HDF5": lambda: _zip(**{k: (b"junk" if "weights" in k else v) for k, v in members.items()}),
        "Lambda layer": lambda: files["lambda"],
        "foreign shapes": lambda: files["foreign"],
    }[name]()


KERAS_CASES = ["empty", "text", "pickle", "ONNX", "truncated", "byte flipped", "config not JSON",
               "config names os.system", "no weights", "weights not HDF5", "Lambda layer", "foreign shapes"]


@pytest.mark.parametrize("name", KERAS_CASES)
def test_bad_keras_models_are_one_run_error(tmp_path, keras_files, name):
    (tmp_path / "model.keras").write_bytes(_keras_case(keras_files, name))
    with refused(RunError) as caught:
        Predictor.from_run(tmp_path)
    if name == "Lambda layer":  # refused by Keras's safe mode, not by accident
        assert "Lambda" in str(caught.value)


@pytest.mark.parametrize("metrics", [b"[1, 2]", b"\xff\xfe", b"{", b'{"calibration": "hot"}',
                                     b'{"calibration": {"temperature": "hot"}}',
                                     b'{"calibration": {"temperature": -1}}',
                                     b'{"calibration": {"temperature": NaN}}'])
def test_damaged_metrics_are_one_run_error(tmp_path, keras_files, metrics):
    (tmp_path / "model.keras").write_bytes(keras_files["good"])
    (tmp_path / "metrics.json").write_bytes(metrics)
    with refused(RunError):
        Predictor.from_run(tmp_path)


def test_the_valid_models_load(tmp_path, keras_files):
    (tmp_path / "model.keras").write_bytes(keras_files["good"])
    assert RunDir.open(tmp_path).load_model() is not None
    (tmp_path / "model.onnx").write_bytes(GOOD_ONNX)
    probs = OnnxModel(tmp_path / "model.onnx").predict(np.zeros((2, 28, 28, 1), np.float32))
    assert probs.shape == (2, 10)


# -- the HTTP API ------------------------------------------------------------------------------


class _Tracebacks(logging.Handler):
    """Collects what the server logs with a traceback (uvicorn's "Exception in ASGI application")."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


LIMITS = Limits(max_request_bytes=256 * 1024, max_images=4)  # small, so that "huge" is quick


@pytest.fixture(scope="module")
def server(scratch):
    """(client, tracebacks): a real server over the ONNX classifier above, with LIMITS."""
    model = scratch / "model.onnx"
    model.write_bytes(GOOD_ONNX)
    app = create_app(Predictor.from_onnx(model), scratch / "corrections", run_name="fuzz", runtime="onnx",
                     limits=LIMITS)
    tracebacks = _Tracebacks()
    with running(app, limits=LIMITS) as url, httpx.Client(base_url=url, timeout=60) as client:
        logging.getLogger("uvicorn.error").addHandler(tracebacks)  # after uvicorn configured its logging
        try:
            yield client, tracebacks
        finally:
            logging.getLogger("uvicorn.error").removeHandler(tracebacks)


def _check_answer(response: httpx.Response, path: str) -> None:
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    if response.status_code >= 400:
        assert list(body) == ["error"], body
        one_line(Exception(body["error"]))
    elif path == "/v1/predict":
        assert all(p["status"] in ("ok", "unsure", "no_digit") for p in body["predictions"])
    elif path == "/v1/read":
        assert len(body["text"]) == len(body["digits"])
    else:
        assert response.status_code == 201 and body["label"] in range(10)


uploads = damaged(VALID_IMAGES) | st.sampled_from(VALID_IMAGES) | st.binary(max_size=300)
names = st.sampled_from(["file", "files", "label"]) | st.text(max_size=6)
labels = st.sampled_from(["3", " 7 ", "10", "-1", "x", ""]) | st.text(max_size=4)


@st.composite
def multipart_requests(draw) -> dict:
    files = draw(st.lists(st.tuples(names, st.text(max_size=20), uploads), max_size=5))
    fields = draw(st.dictionaries(names, labels, max_size=2))
    return {"files": [(name, (filename, data)) for name, filename, data in files] or None, "data": fields}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    | uploads.map(lambda data: base64.b64encode(data).decode())
    | uploads.map(lambda data: "data:image/png;base64," + base64.b64encode(data).decode()),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def json_requests(draw) -> dict:
    body = draw(st.dictionaries(st.sampled_from(["image", "images", "label"]) | st.text(max_size=6), json_values,
                                max_size=3) | json_values)
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json"}}


def _multipart_body(data: bytes, boundary: str = "fuzz") -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()


content_types = st.sampled_from([
    "application/json", "multipart/form-data; boundary=fuzz", "multipart/form-data", "multipart/form-data; boundary=",
    "multipart/form-data; boundary=" + "b" * 300, "application/x-www-form-urlencoded", "text/plain", "image/png", "",
]) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@st.composite
def raw_requests(draw) -> dict:
    body = draw(damaged(Files(_multipart_body(image) for image in VALID_IMAGES[:3])) | st.binary(max_size=400)
                | uploads)
    return {"content": body, "headers": {"content-type": draw(content_types)}}


@settings(FUZZ, max_examples=200)
@given(path=st.sampled_from(["/v1/predict", "/v1/read", "/v1/corrections"]),
       request=multipart_requests() | json_requests() | raw_requests())
def test_malformed_requests_get_a_4xx_and_one_line(server, path, request):
    client, tracebacks = server
    _check_answer(client.post(path, **request), path)
    assert not tracebacks.records, tracebacks.records[0].getMessage()


@pytest.mark.parametrize("case", ["empty JSON", "empty multipart", "no body", "over the limit",
                                  "over the limit, chunked", "too many images", "deep JSON", "huge number"])
def test_empty_and_huge_requests(server, case):
    client, tracebacks = server
    big = bytes(LIMITS.max_request_bytes + 1)
    request = {
        "empty JSON": {"content": b"", "headers": {"content-type": "application/json"}},
        "empty multipart": {"content": b"", "headers": {"content-type": "multipart/form-data; boundary=fuzz"}},
        "no body": {},
        "over the limit": {"files": {"file": ("big.png", big)}},
        "over the limit, chunked": {"content": iter([big[:1000], big[1000:]]),
                                    "headers": {"content-type": "application/json"}},
        "too many images": {"json": {"images": [base64.b64encode(VALID_IMAGES[0]).decode()] * 5}},
        "deep JSON": {"content": b'{"image": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                      "headers": {"content-type": "application/json"}},
        "huge number": {"content": b'{"label": ' + b"9" * 5000 + b"}", "headers": {"content-type": "application/json"}},
    }[case]
    response = client.post("/v1/predict", **request)
    assert 400 <= response.status_code < 500
    _check_answer(response, "/v1/predict")
    assert not tracebacks.records


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"\x00\x01\x02" * 50,
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n"
    b"Content-Type: application/json\r\n\r\n{}",
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\n\r\nZZ\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",
], ids=["garbage", "binary", "negative length", "huge length", "bad chunk", "long header"])
def test_broken_http_is_refused_without_a_traceback(server, raw):
    """Below the app: the connection layer (serve.connections) refuses these with a JSON 4xx, or
    closes a connection that never sent a request line; the app logs nothing."""
    client, tracebacks = server
    host, port = client.base_url.host, client.base_url.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    assert status is None or 400 <= status < 500, answer[:200]
    if status is not None:
        assert list(json.loads(answer.partition(b"\r\n\r\n")[2])) == ["error"], answer[:200]
    assert client.get("/healthz").json() == {"status": "ok"}  # still up
    assert not tracebacks.records, tracebacks.records[0].getMessage()
