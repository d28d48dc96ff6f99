"""Tests for finding ink on real paper (`ink`, `paper`): faint pencil, thin pens, rulings, shadows.

    pytest tests/test_ink.py

Small generated pages, a few of what benchmarks/ink.py sweeps (on MNIST digits' own strokes,
there): digits drawn with a pencil or a thin pen on paper that is shaded, ruled or squared,
through a phone's blur, noise and JPEG. The digit must be found where it is; blank paper must not.
"""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from mnistlab.data import decode, ink, paper, prepare_image

SHAPE = (240, 280)  # the page, px
PAPER = 245  # white paper's grey level in full light


# Pen paths in a 200-px box: a person's 1, 2, 4 and 7.
PATHS = {
    1: [(95, 25), (108, 185)],
    2: [(50, 70), (70, 38), (110, 28), (145, 48), (150, 85), (120, 122), (50, 182), (165, 180)],
    4: [(128, 185), (128, 25), (40, 130), (172, 128)],
    7: [(38, 40), (162, 38), (88, 185)],
}


def strokes(digit, width):
    """Coverage (0..1) of a pen `width` px wide drawing `digit` (PATHS) on the page."""
    canvas = Image.new("L", (SHAPE[1] * 4, SHAPE[0] * 4), 0)
    path = [(4 * (x + 40), 4 * (y + 20)) for x, y in PATHS[digit]]
    ImageDraw.Draw(canvas).line(path, fill=255, width=round(4 * width), joint="curve")
    small = canvas.resize(SHAPE[::-1], Image.Resampling.BOX)  # anti-aliased, as a camera sees it
    return np.asarray(small, np.float32) / 255


def photo(coverage, ink_level, rulings=None, light="even", seed=0, quality=50):
    """A phone's JPEG of ink (grey level on white) over paper, ruled every 110 px, in `light`."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    sheet = np.full(SHAPE, PAPER / 255, np.float32)
    texture = ndi.gaussian_filter(rng.normal(0, 1, SHAPE), 6)
    sheet += 5 / 255 * texture / texture.std()
    if rulings:
        width, level = (3, 150) if rulings == "dark grid" else (2, 185)
        lines = (rows + 0.01 * cols + 17 + 29 * seed) % 110 < width
        if rulings != "lined":
            lines |= (cols - 0.01 * rows + 31 + 37 * seed) % 110 < width
        sheet = np.where(lines, level / 255, sheet)
    reflect = sheet * (1 - coverage) + np.minimum(ink_level / 255, sheet) * coverage
    if light == "gradient":
        reflect = reflect * (1 - 0.55 * cols / SHAPE[1])
    elif light == "shadow":
        reflect = reflect * np.where(cols + 0.5 * rows < 150, 0.55, 1.0)
    grey = ndi.gaussian_filter(255 * reflect, 1.0) + rng.normal(0, 4, SHAPE)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def on_the_digit(result, coverage):
    """Whether the box found is the digit's (within 6 px on every side)."""
    rows, cols = np.flatnonzero(coverage.any(axis=1)), np.flatnonzero(coverage.any(axis=0))
    truth = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    return result.has_ink and np.abs(np.subtract(result.box, truth)).max() <= 6


@pytest.mark.parametrize("digit", [2, 4, 7])
def test_faint_pencil_on_shaded_paper_is_found(digit):
    # Grey-120 pencil, 2 px, light falling to half across the page: before issue 14 this
    # came back no_digit (the gradient's range passed for ink, Otsu split the paper's noise).
    coverage = strokes(digit, 2)
    result = prepare_image(photo(coverage, 120, light="gradient", seed=digit))
    assert on_the_digit(result, coverage) and result.inverted


@pytest.mark.parametrize("rulings", ["lined", "grid", "dark grid"])
def test_thin_pen_on_ruled_paper_is_found(rulings):
    for digit in (1, 7):  # thin straight strokes, like the rulings, crossing them
        coverage = strokes(digit, 2)
        result = prepare_image(photo(coverage, 40, rulings=rulings, seed=digit))
        assert on_the_digit(result, coverage), (rulings, digit)


@pytest.mark.parametrize(
    "rulings, light", [("lined", "even"), ("grid", "even"), ("dark grid", "even"), ("grid", "gradient"),
                       (None, "shadow"), ("lined", "shadow"), (None, "gradient")],
)
def test_blank_paper_has_no_ink(rulings, light):
    for seed in range(3):
        page = photo(np.zeros(SHAPE, np.float32), 0, rulings=rulings, light=light, seed=seed)
        assert not prepare_image(page).has_ink, seed


def test_polarity_in_uneven_light():
    # A thin faint stroke is fewer pixels than a gradient's darkest and lightest tails.
    coverage = strokes(1, 1.5)
    grey = decode.as_grey(photo(coverage, 150, light="gradient", quality=90))
    assert paper.is_dark_on_light(grey)
    assert not paper.is_dark_on_light(1 - grey)


def test_rulings_are_found_and_erased():
    mask = np.zeros((200, 300), bool)
    rows, cols = np.mgrid[:200, :300]
    mask |= np.abs(rows - 0.02 * cols - 50) < 1.5  # a ruling, tilted
    mask |= np.abs(cols - 150) < 1  # a grid's column
    mask[60:150, 80:84] = True  # a digit's stroke crossing the ruling
    lines = paper.find_lines(mask)
    assert sorted(axis for axis, *_ in lines) == [0, 1]
    erased = paper.erase_lines(mask.astype(np.float32), lines)
    assert not erased[5:195, 100:140].any() and not erased[5:45, 140:160].any()
    assert erased[60:150, 80:84].all()  # the stroke stays whole across the ruling
    # A digit's thick bar along the rows is no ruling, however long.
    bar = np.zeros((200, 300), bool)
    bar[90:110, 10:290] = True
    assert paper.find_lines(bar) == []


def test_shadow_corners_are_not_ink():
    # A shadow narrowing to a point is narrower than the background's opening there: what the
    # opening leaves has the shadow's estimated level beside it, which ink never has.
    rows, cols = np.mgrid[:240, :280]
    work = np.where(cols < 40 + 0.6 * rows, 0.45, 0.04).astype(np.float32)  # light ink on dark
    level = paper.background(work, min(work.shape) * paper.BACKGROUND_FRACTION)
    left = work - level > 0.2
    strokes_, count = ndi.label(left)
    assert count and paper.shading(work, level, strokes_, count, list(range(1, count + 1)))
    assert ink.find_ink(work) is None
