"""Tests for users' images: decoding (`decode`), MNIST's normalisation (`images`), `segment`.

The oracle is MNIST itself: each test builds what a user would send from MNIST test digits (a
photo of the digit on shaded paper, a rotated phone JPEG, a canvas drawing, a written number) and
checks that preprocessing gives the digits back.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from mnistlab import data
from mnistlab.data import (
    DIGIT_BOX,
    MAX_PIXELS,
    PREPROCESSING_VERSION,
    DataError,
    ImageError,
    Prepared,
    decode,
    decode_image,
    images,
    ink,
    paper,
    prepare_image,
    segment,
    segment_digits,
)

SAMPLE = range(12)  # the MNIST test digits most tests rebuild: every class but 3 and 8
# The same digit preprocessed twice may land one pixel apart: MNIST's recipe rounds the shift
# that centres the mass, so similarity() allows that. Below this a digit is deformed, not just
# moved. Measured on 200 test digits: another digit of the same class gives 0.51 (median; 99th
# percentile 0.84), the digit turned a quarter 0.24 (0.61).
SIMILAR = 0.85


def similarity(image, digit):
    """Best Pearson correlation of two 28x28 images over shifts of up to one pixel."""
    a, b = image.astype(np.float64), digit.astype(np.float64)
    return max(
        np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel(), b.ravel())[0, 1]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def upscale(digit, factor):
    """The digit as a smooth high-resolution scan: bilinear, like a camera sees a pen stroke."""
    size = (digit.shape[1] * factor, digit.shape[0] * factor)
    return np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.BILINEAR))


def encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def ink_box(image):
    """(top, left, bottom, right) of the nonzero pixels, bottom and right exclusive."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def centre_of_mass(image):
    return np.array(ndi.center_of_mass(image.astype(np.float64)))


def png_header(width, height):
    """A valid PNG whose IHDR claims width x height 1-bit pixels, with almost no pixel data."""

    def chunk(kind, payload):
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey, no interlace
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# --- the API ---------------------------------------------------------------------------------


def test_constants_and_names():
    assert DIGIT_BOX + 2 * 4 == data.IMAGE_SIZE  # MNIST's 20x20 box with a 4-pixel margin
    assert isinstance(PREPROCESSING_VERSION, int)
    assert MAX_PIXELS == 40_000_000
    assert issubclass(ImageError, DataError)
    # The package re-exports each module's names (loaded on first use).
    assert decode.decode_image is decode_image and decode.ImageError is ImageError
    assert images.prepare_image is prepare_image and segment.segment_digits is segment_digits
    assert {"prepare_image", "segment_digits", "decode_image"} <= set(dir(data))


def test_mnist_digits_pass_through_nearly_unchanged(mnist):
    digits = mnist.x_test[:200]
    prepared = [prepare_image(digit) for digit in digits]
    for digit, result in zip(digits, prepared):
        assert isinstance(result, Prepared)
        assert result.image.dtype == np.uint8 and result.image.shape == (28, 28)
        assert result.has_ink and not result.inverted
        assert result.box == ink_box(digit)
        np.testing.assert_allclose(centre_of_mass(result.image), centre_of_mass(digit), atol=0.1)
    errors = [np.abs(r.image.astype(int) - d).mean() for r, d in zip(prepared, digits)]
    assert max(errors) < 2  # grey levels out of 255; measured: median 0.14, max 0.75


# --- MNIST digits rebuilt as users' images ---------------------------------------------------


def test_small_digit_off_centre_in_large_canvas(mnist):
    for index in SAMPLE:
        digit = mnist.x_test[index]
        canvas = np.zeros((300, 400), np.uint8)
        canvas[37:65, 251:279] = digit
        result = prepare_image(canvas)
        assert similarity(result.image, digit) > 0.99
        top, left, bottom, right = ink_box(digit)
        assert result.box == (37 + top, 251 + left, 37 + bottom, 251 + right)


def test_dark_on_light_enlarged_ten_times(mnist):
    for index in SAMPLE:
        digit = mnist.x_test[index]
        result = prepare_image(255 - upscale(digit, 10))
        assert result.inverted
        assert similarity(result.image, digit) > SIMILAR, index


def test_photo_with_gradient_noise_and_shadow(mnist):
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:360, :480]
    paper = np.linspace(0.55, 0.9, 480)[np.newaxis, :] * np.ones((360, 1))  # light from the right
    shadow = np.where(cols + 0.5 * rows < 300, 0.6, 1.0)  # a hand's hard shadow across the digit
    for index in SAMPLE:
        digit = mnist.x_test[index]
        page = paper.copy()
        page[70:294, 150:374] *= 1 - 0.75 * upscale(digit, 8) / 255  # ink absorbs 75 %
        page = page * shadow + rng.normal(0, 0.03, page.shape)
        result = prepare_image(np.clip(page, 0, 1).astype(np.float32))
        assert similarity(result.image, digit) > SIMILAR, index


@pytest.mark.parametrize("orientation, quarter_turns", [(3, 2), (6, 1), (8, 3)])
def test_jpeg_with_exif_orientation(mnist, orientation, quarter_turns):
    for index in SAMPLE:
        digit = mnist.x_test[index]
        upright = np.full((200, 260), 235, np.uint8)  # not square: a wrong turn changes the shape
        upright[20:188, 50:218] -= (upscale(digit, 6) * 0.8).astype(np.uint8)
        # The camera stores the pixels turned; the tag says how to turn them back.
        stored = Image.fromarray(np.rot90(upright, quarter_turns).copy()).convert("RGB")
        exif = Image.Exif()
        exif[0x0112] = orientation
        photo = encode(stored, "JPEG", quality=85, exif=exif)
        assert decode_image(photo).shape == upright.shape
        assert similarity(prepare_image(photo).image, digit) > SIMILAR, index


@pytest.mark.parametrize(
    "colour, inverted",
    [((20, 40, 160), True), ((255, 255, 255), False)],
    ids=["blue-strokes", "white-strokes"],
)
def test_canvas_drawing_with_transparent_background(mnist, colour, inverted):
    for index in SAMPLE:
        digit = mnist.x_test[index]
        alpha = upscale(digit, 5)
        pixels = np.zeros(alpha.shape + (4,), np.uint8)
        pixels[..., :3] = colour  # transparent pixels are black (0, 0, 0, 0), as canvases save
        pixels[..., 3] = alpha
        result = prepare_image(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
        assert result.inverted == inverted
        assert similarity(result.image, digit) > SIMILAR, index


def test_page_edge_is_not_ink(mnist):
    rng = np.random.default_rng(1)
    for index in SAMPLE:
        digit = mnist.x_test[index]
        page = np.full((300, 300), 0.8)
        page[60:228, 90:258] *= 1 - 0.8 * upscale(digit, 6) / 255
        page[:, :25] = 0.15  # the dark table beyond the page's left edge
        page = np.clip(page + rng.normal(0, 0.02, page.shape), 0, 1).astype(np.float32)
        result = prepare_image(page)
        assert result.box[1] >= 90
        assert similarity(result.image, digit) > SIMILAR, index


def test_thin_strokes_get_mnist_width(mnist):
    # A 3-pixel pen line in a digit 280 px tall would be 0.2 px wide once the digit is 20 px.
    mass = mnist.x_test.astype(np.float64).sum(axis=(1, 2)) / 255
    low, high = np.percentile(mass, [5, 95])  # MNIST digits hold 45 to 148 pixels' worth of ink
    shapes = {
        "7": [(100, 80), (300, 80), (170, 330)],
        "4": [(250, 330), (250, 60), (90, 250), (320, 250)],
        "0": None,
    }
    for name, points in shapes.items():
        canvas = Image.new("L", (400, 400), 255)
        if points is None:
            ImageDraw.Draw(canvas).ellipse((130, 60, 270, 340), outline=40, width=3)
        else:
            ImageDraw.Draw(canvas).line(points, fill=40, width=3)
        result = prepare_image(np.asarray(canvas))
        assert low <= result.image.sum() / 255 <= high, name


def test_clean_canvas_is_read_at_half_resolution(mnist, monkeypatch):
    # The server's case: a 280x280 drawing on a white canvas. Its ink is found on a half-size
    # copy and the digit rendered from the full one; found at full size instead, it must come
    # out the same but for grey levels and, rarely, a pixel of its box.
    canvases = [np.asarray(Image.fromarray(255 - mnist.x_test[index]).resize((280, 280)))
                for index in SAMPLE]
    strokes = Image.new("RGBA", (280, 280), "white")  # a canvas's own PNG: opaque RGBA
    ImageDraw.Draw(strokes).line([(70, 60), (210, 60), (120, 230)], fill="black", width=22)
    canvases.append(encode(strokes, "PNG"))
    fast = [prepare_image(canvas) for canvas in canvases]
    assert ink.find_ink(decode.as_grey(canvases[0])).fine is not None  # the half-size copy
    monkeypatch.setattr(ink, "_HALF_EXTENT", np.inf)  # no digit is that large: full size
    assert ink.find_ink(decode.as_grey(canvases[0])).fine is None
    for index, (canvas, half) in enumerate(zip(canvases, fast)):
        full = prepare_image(canvas)
        assert half.has_ink and half.inverted and full.inverted
        assert np.abs(np.subtract(half.box, full.box)).max() <= 1, index
        assert np.corrcoef(half.image.ravel(), full.image.ravel())[0, 1] > 0.99, index


def test_background_of_a_clean_canvas_is_its_paper(mnist):
    # A canvas whose edge is one grey level skips the background estimate: a grey opening (what
    # it would be) finds that level everywhere, the strokes being narrower than its window.
    for index in SAMPLE:
        work = upscale(mnist.x_test[index], 10).astype(np.float32) / 255  # light ink on dark
        window = min(work.shape) * paper.BACKGROUND_FRACTION
        assert paper.background(work, window) == 0.0
        opening = ndi.grey_opening(work, size=round(window), mode="nearest")
        assert np.abs(opening).max() < 1 / 255


@pytest.mark.parametrize(
    "page",
    [
        np.ones((200, 200), np.float32),
        np.zeros((50, 80), np.uint8),
        np.full((28, 28), 128, np.uint8),
        np.linspace(0, 1, 300, dtype=np.float32)[np.newaxis].repeat(200, axis=0),
        np.clip(np.random.default_rng(0).normal(0.5, 0.15, (300, 300)), 0, 1),
        np.random.default_rng(1).random((300, 300)),
        np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8),
        (np.random.default_rng(3).random((200, 200)) < 0.05).astype(np.float32),
    ],
    ids=["white", "black", "grey", "gradient", "gaussian-noise", "uniform-noise", "noise-28",
         "salt"],
)
def test_blank_pages_and_noise_have_no_ink(page):
    result = prepare_image(page)
    assert not result.has_ink
    assert result.box is None and not result.image.any()
    assert segment_digits(page) == []


# --- decoding ----------------------------------------------------------------------------------


GREY = np.zeros((40, 60), np.uint8)
GREY[10:30, 25:35] = 200


@pytest.mark.parametrize(
    "image, fmt, options",
    [
        (Image.fromarray(GREY), "PNG", {}),
        (Image.fromarray(GREY), "GIF", {}),
        (Image.fromarray(GREY), "TIFF", {}),
        (Image.fromarray(GREY), "WEBP", {"lossless": True}),
        (Image.fromarray(GREY), "BMP", {}),
        (Image.fromarray(GREY.astype(np.uint16) * 257), "PNG", {}),  # 16 bits per pixel
        (Image.fromarray(GREY).convert("LA"), "PNG", {}),
        (Image.fromarray(GREY).convert("P"), "PNG", {}),
        (Image.fromarray(np.stack([GREY] * 3, axis=-1)).convert("CMYK"), "TIFF", {}),
    ],
    ids=["png", "gif", "tiff", "webp", "bmp", "png-16bit", "la", "palette", "cmyk"],
)
def test_formats_and_modes_decode_to_grey(image, fmt, options):
    grey = decode_image(encode(image, fmt, **options))
    assert grey.dtype == np.float32 and grey.shape == GREY.shape
    np.testing.assert_allclose(grey, GREY / 255, atol=1 / 255)


@pytest.mark.parametrize("fmt", ["GIF", "MPO"])
def test_first_frame_of_several(fmt):
    first, second = Image.fromarray(GREY).convert("RGB"), Image.fromarray(255 - GREY).convert("RGB")
    content = encode(first, fmt, save_all=True, append_images=[second])
    with Image.open(io.BytesIO(content)) as image:
        assert (image.format, image.n_frames) == (fmt, 2)  # the test's premise
    error = np.abs(decode_image(content) - GREY / 255).mean()
    assert error < 0.01  # JPEG-coded MPO is lossy; the second frame would give 0.6


def test_decode_image_reads_paths(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(GREY).save(path)
    np.testing.assert_array_equal(decode_image(path), decode_image(str(path)))


TRUNCATED_PNG = encode(Image.fromarray(GREY), "PNG")[:80]
TRUNCATED_JPEG = encode(Image.fromarray(GREY), "JPEG")[:300]


@pytest.mark.parametrize(
    "content, words",
    [
        (TRUNCATED_PNG, "damaged or truncated"),
        (TRUNCATED_JPEG, "damaged or truncated"),
        (b"12,7,cat\n", "is not a PNG, JPEG"),
        (b"", "is empty"),
        (png_header(20_000, 20_000), "more than 40,000,000 pixels"),  # Pillow's bomb error
        (png_header(10_000, 10_000), "more than 40,000,000 pixels"),  # Pillow's bomb warning
        (png_header(8_000, 6_000), "8000x6000 (48,000,000 pixels)"),  # our own limit
    ],
    ids=["truncated-png", "truncated-jpeg", "text", "empty", "bomb", "100-megapixels", "48-mp"],
)
def test_unusable_files_raise_one_line(tmp_path, recwarn, content, words):
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    for source in (path, content):
        with pytest.raises(ImageError) as caught:
            decode_image(source, name="upload.bin")
        message = str(caught.value)
        assert words in message and "upload.bin" in message and "\n" not in message
    # The headers claiming huge sizes hold 64 bytes of pixels: decoding them would have failed
    # as truncated, so the size was judged from the header. And Pillow's warning stayed inside.
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        prepare_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder, not a regular file"):
        decode_image(tmp_path)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros((28, 28, 2), np.uint8), "shape"),
        (np.zeros((0, 28), np.uint8), "shape"),
        (np.zeros((28, 28), np.int64), "uint8 0..255 or float 0..1"),
        (np.full((28, 28), 255.0), "in [0, 1]"),
        (np.full((28, 28), np.nan), "in [0, 1]"),
    ],
)
def test_arrays_are_checked(array, words):
    with pytest.raises(ImageError, match=words.replace("[", r"\[").replace("]", r"\]")):
        prepare_image(array)


# --- numbers ------------------------------------------------------------------------------------


def first_of(mnist, label, k=0):
    """The k-th MNIST test digit of a class, so every test names its digits by what they are."""
    return mnist.x_test[np.flatnonzero(mnist.y_test == label)[k]]


def write_number(digits, gaps, scale=3):
    """Pen on paper: the digits' ink boxes side by side, `gaps` pixels apart (negative overlaps).

    Returns the page (dark on light, enlarged `scale` times) and the ink at MNIST scale.
    """
    crops = [digit[slice(*ink_box(digit)[::2]), slice(*ink_box(digit)[1::2])] for digit in digits]
    height = max(crop.shape[0] for crop in crops)
    width = sum(crop.shape[1] for crop in crops) + sum(gaps) + 20
    ink = np.zeros((height + 20, width), np.uint8)
    left = 10
    for crop, gap in zip(crops, [0, *gaps]):
        left += gap
        top = 10 + (height - crop.shape[0]) // 2
        region = ink[top : top + crop.shape[0], left : left + crop.shape[1]]
        np.maximum(region, crop, out=region)
        left += crop.shape[1]
    return 255 - upscale(ink, scale), ink


def pieces(ink):
    return ndi.label(ink > 64, structure=np.ones((3, 3)))[1]


def check_number(page, digits, threshold=0.8):
    found = segment_digits(page)
    assert len(found) == len(digits)
    lefts = [digit.box[1] for digit in found]
    assert lefts == sorted(lefts)
    for result, digit in zip(found, digits):
        assert result.has_ink and result.inverted
        assert similarity(result.image, digit) > threshold


def test_number_with_gaps(mnist):
    for k in range(3):
        digits = [first_of(mnist, 2, 2 * k), first_of(mnist, 0, k), first_of(mnist, 2, 2 * k + 1),
                  first_of(mnist, 6, k)]
        page, _ = write_number(digits, [8, 5, 12])
        check_number(page, digits, threshold=SIMILAR)


def test_number_photographed(mnist):
    rng = np.random.default_rng(2)
    for k in range(2):
        digits = [first_of(mnist, 2, 2 * k), first_of(mnist, 0, k), first_of(mnist, 2, 2 * k + 1),
                  first_of(mnist, 6, k)]
        page, _ = write_number(digits, [8, 5, 12], scale=5)
        width = page.shape[1]
        light = np.linspace(0.6, 0.9, width) * np.where(np.arange(width) < 0.4 * width, 0.7, 1)
        photo = light * page / 255 + rng.normal(0, 0.02, page.shape)  # shaded, shadowed, noisy
        pixels = Image.fromarray((np.clip(photo, 0, 1) * 255).astype(np.uint8))
        check_number(encode(pixels, "JPEG", quality=80), digits, threshold=SIMILAR)


def test_touching_digits_are_cut(mnist):
    digits = [first_of(mnist, 3, 0), first_of(mnist, 8, 0), first_of(mnist, 5, 0)]
    page, ink = write_number(digits, [-3, -3])
    assert pieces(ink) < 3  # the test's premise: some digits touch
    check_number(page, digits, threshold=0.75)  # the cut takes a little of each neighbour


def test_broken_digit_is_one(mnist):
    seven = first_of(mnist, 7).copy()
    top = ink_box(seven)[0]
    seven[top + 5 : top + 7] = 0  # the pen skipped: the bar is apart from the stem
    digits = [first_of(mnist, 4), seven, first_of(mnist, 9)]
    page, ink = write_number(digits, [8, 8])
    assert pieces(ink) == 4  # the test's premise: the 7 is in two pieces
    check_number(page, digits, threshold=SIMILAR)


def test_wide_digit_with_detached_tail_is_one(mnist):
    for k in range(3):
        two = first_of(mnist, 2, k)
        top, left, bottom, right = ink_box(two)
        page = np.zeros((28, 48), np.uint8)
        page[:, :28] = two
        page[bottom - 3 : bottom - 1, right + 1 : right + 13] = 255  # the base, drawn on after a lift
        assert pieces(page) == 2 and (right + 13 - left) > 1.2 * (bottom - top)  # the premise
        found = segment_digits(page)
        assert len(found) == 1
        assert found[0].box == ink_box(page)


def test_single_digit_is_one_segment(mnist):
    found = segment_digits(mnist.x_test[0])
    assert len(found) == 1
    np.testing.assert_array_equal(found[0].image, prepare_image(mnist.x_test[0]).image)
