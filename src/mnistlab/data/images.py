"""One user's digit to MNIST's model input: MNIST's own normalisation of a decoded image.

    python -c "from mnistlab.data import prepare_image; print(prepare_image('seven.jpg'))"

MNIST's recipe (LeCun et al., "The MNIST database"): each NIST digit was scaled so that its
longer side fits a 20x20 box, aspect ratio kept, anti-aliasing giving grey levels; then it was
placed in 28x28 with its centre of mass at the centre. `prepare_image` applies exactly that to a
phone photo, a canvas drawing or a small crop, once `ink` has found the ink (polarity, shadows
and paper texture, faint pencil, ruled and grid paper, contrast, specks and page edges),
thickening thin strokes to MNIST's width.
`segment` renders each digit of a number written in one image the same way; `decode` reads files.

The steps are NumPy and scipy.ndimage; Pillow resizes (with anti-aliasing). For speed, a clean
canvas's ink is found at half its resolution and rendered from the full one, and the filters work
in the ink's box: the server's drawings take a few milliseconds (`benchmarks/serve.py`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from mnistlab.data import fastops
from mnistlab.data.decode import as_grey
from mnistlab.data.ink import DIGIT_BOX, Ink, find_ink, stroke_width
from mnistlab.data.mnist import IMAGE_SIZE

# Bump when the output of prepare_image changes for the same input. 3: faint, ruled and shaded
# pages (issue 14); the development sets' images come out the same as with 2. 4: a shadow's
# corner is no ink (paper.shading); the development sets' answers are unchanged.
PREPROCESSING_VERSION = 4

# Where MNIST puts the centre of mass, (row, column) in pixels: the test digits average (13.99,
# 14.00) and 98 % lie within 0.5 of 14, so rounding the shift reproduces their placement.
_CENTRE = 14.0
# Pieces closer than this fraction of the digit's size belong to it (a 5's detached bar).
_NEAR = 0.3
# MNIST strokes are 2.3 px wide at 28x28 (median; 5th-95th percentile 1.5-3.8, from the distance
# transform of the test digits upscaled x8). Thinner ones (a pen line scaled from 400 px down to
# 20) are dilated before scaling to reach _STROKE_WIDTH.
_THIN_STROKE = 1.5
_STROKE_WIDTH = 2.3


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == has no single truth value
class Prepared:
    """One digit after MNIST's normalisation, ready for preprocess_images."""

    image: np.ndarray  # (28, 28) uint8, light ink on black, MNIST-normalised
    has_ink: bool  # False: blank page or nothing digit-like (image is then all zeros)
    inverted: bool  # the source was dark ink on a light background; False without ink
    # (top, left, bottom, right) of the ink in the decoded image, bottom and right exclusive;
    # None without ink
    box: tuple[int, int, int, int] | None


def prepare_image(source: str | os.PathLike | bytes | np.ndarray) -> Prepared:
    """Decode when needed, then MNIST's normalisation.

    An ndarray is a decoded grey image (H, W) float in [0,1] or uint8 0..255, or an MNIST-style
    uint8 28x28 array (which comes back nearly unchanged). The digit is the largest ink
    component with the pieces near it; use segment_digits for several digits.

    Raises:
        ImageError: as decode_image, or an array of another shape, dtype or range.
    """
    ink = find_ink(as_grey(source))
    if ink is None:
        return Prepared(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8), False, False, None)
    digit = _main_digit(ink)
    width = ink.width if ink.whole and len(digit) == len(ink.kept) else None
    return render_digit(ink, fastops.labels_mask(ink.owner, digit), width)


def normalise_digit(ink: np.ndarray) -> np.ndarray:
    """MNIST's normalisation of a clean digit crop whose polarity is known: box, scale, centre.

    For scanned data sets whose digits are already cut out and cleaned (USPS, UCI): every pixel
    above 0 is ink, none is dropped, and a digit touching the border keeps its strokes, where
    prepare_image would look for paper around it (it fails on 38 of USPS's 2,007 test digits).

    Args:
        ink: (H, W) grey levels, float in [0, 1] or uint8 0..255, light ink on black paper at 0.

    Returns:
        (28, 28) uint8, as Prepared.image; all zeros when no pixel is above 0.

    Raises:
        ImageError: another shape, dtype or range (as prepare_image's arrays).
    """
    grey = as_grey(ink)
    mask = grey > 0
    if not mask.any():
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    top, left, bottom, right = fastops.mask_box(mask)
    image = _centre(_fit_box(grey[top:bottom, left:right]))
    return np.rint(image * 255).astype(np.uint8)


# --- from ink to digits ---------------------------------------------------------------------


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Return the distance in pixels between two boxes along the axis they are farther apart."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3], 0)


def _main_digit(ink: Ink) -> list[int]:
    """Return the labels of the largest component and of the pieces near it, grown repeatedly."""
    pending = sorted(ink.kept, key=lambda label: -ink.areas[label])
    digit = [pending.pop(0)]
    box = ink.boxes[digit[0]]
    grew = True
    while grew:
        grew = False
        size = max(box[2] - box[0], box[3] - box[1])
        for label in list(pending):
            if _gap(box, ink.boxes[label]) <= _NEAR * size:
                digit.append(label)
                pending.remove(label)
                box = fastops.union_box(box, ink.boxes[label])
                grew = True
    return digit


def render_digit(ink: Ink, part: np.ndarray, width: float | None = None) -> Prepared:
    """MNIST's normalisation of the ink in `part` (a working-scale mask): box, scale, centre.

    width: the stroke width of the confident ink in part, when known.
    """
    refined = None if ink.fine is None else _refine(ink, part)
    if refined is None:
        top, left, bottom, right = fastops.mask_box(part)
        inside = part[top:bottom, left:right]
        level = ink.level[top:bottom, left:right]
        confident = inside & (ink.strokes[top:bottom, left:right] > 0)
        scale = ink.scale
    else:
        (top, left, bottom, right), inside, level, confident = refined
        scale = ink.decoded_shape[0] / ink.fine.shape[0]  # as find_ink reckons Ink.scale
        # Half-size strokes 2 px narrower, doubled, are narrower than these: wide enough for
        # MNIST by that measure, they need no exact one.
        least = (ink.width - 2) * ink.fine.shape[0] / part.shape[0]
        width = least if least * DIGIT_BOX >= _THIN_STROKE * max(inside.shape) else None
    crop = _thicken(np.where(inside, level, 0).astype(np.float32), confident, width)
    image = _centre(_fit_box(crop))
    rows, cols = ink.decoded_shape
    box = (
        math.floor(top * scale),
        math.floor(left * scale),
        min(rows, math.ceil(bottom * scale)),
        min(cols, math.ceil(right * scale)),
    )
    return Prepared(np.rint(image * 255).astype(np.uint8), True, ink.inverted, box)


def _refine(
    ink: Ink, part: np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray, np.ndarray] | None:
    """The digit in `part` (a mask at working scale) at the resolution of ink.fine.

    Its pixels are those of the mask, enlarged, and widened by one of its pixels into paper (not
    into other ink, such as the neighbour a digit was cut from), whose grey level (the same
    floor and core) is above 0; its confident ones, those above the threshold.

    Returns:
        (top, left, bottom, right) of the digit in ink.fine, and in that box: the digit's
        pixels, the grey levels and the confident pixels. None if no pixel is above the floor
        there (not seen; the digit is then rendered at working scale).
    """
    fine = ink.fine
    rows_up, cols_up = fine.shape[0] / part.shape[0], fine.shape[1] / part.shape[1]
    top, left, bottom, right = fastops.mask_box(part)
    top, left = max(0, top - 1), max(0, left - 1)
    bottom, right = min(part.shape[0], bottom + 1), min(part.shape[1], right + 1)
    near = part[top:bottom, left:right]
    near = near | (ndi.maximum_filter(near, size=3) & (ink.owner[top:bottom, left:right] == 0))
    # Each fine pixel takes the value of the working pixel its centre falls in.
    fine_top, fine_left = math.floor(top * rows_up), math.floor(left * cols_up)
    fine_bottom = min(fine.shape[0], math.ceil(bottom * rows_up))
    fine_right = min(fine.shape[1], math.ceil(right * cols_up))
    rows = np.clip(((np.arange(fine_top, fine_bottom) + 0.5) / rows_up).astype(int) - top,
                   0, bottom - top - 1)
    cols = np.clip(((np.arange(fine_left, fine_right) + 0.5) / cols_up).astype(int) - left,
                   0, right - left - 1)
    signal = fine[fine_top:fine_bottom, fine_left:fine_right]
    level = np.minimum(np.maximum((signal - ink.floor) / (ink.core - ink.floor), 0), 1)
    inside = near[np.ix_(rows, cols)] & (level > 0)
    if not inside.any():
        return None
    box_top, box_left, box_bottom, box_right = fastops.mask_box(inside)
    box = np.s_[box_top:box_bottom, box_left:box_right]
    return (
        (fine_top + box_top, fine_left + box_left, fine_top + box_bottom, fine_left + box_right),
        inside[box],
        level[box].astype(np.float32),
        inside[box] & (signal[box] > ink.threshold),
    )


def _thicken(crop: np.ndarray, confident: np.ndarray, width: float | None = None) -> np.ndarray:
    """Widen strokes that would come out thinner than MNIST's once the crop is fitted to 20 px.

    width: the confident ink's stroke width, when known (stroke_width otherwise).
    """
    long_side = max(crop.shape)
    if width is None:
        width = stroke_width(confident)
    if width * DIGIT_BOX / long_side >= _THIN_STROKE:
        return crop
    # Widening by r on each side widens the box by 2r too; solve
    # (width + 2r) / (long_side + 2r) = _STROKE_WIDTH / DIGIT_BOX for r.
    ratio = _STROKE_WIDTH / DIGIT_BOX
    radius = (ratio * long_side - width) / (2 * (1 - ratio))
    if radius < 0.5:
        return crop
    pad = math.ceil(radius) + 1
    # A dilation by a disc, as a distance transform (linear time, unlike grey_dilation with a
    # footprint of radius ~20): ink within r of a confident pixel, with a one-pixel soft edge.
    distance = np.sqrt(fastops.feature_transform(~np.pad(confident, pad))[0].astype(np.float64))
    return np.maximum(np.pad(crop, pad), np.clip(radius + 0.5 - distance, 0, 1)).astype(np.float32)


def _fit_box(crop: np.ndarray) -> np.ndarray:
    """Scale so the longer side is DIGIT_BOX, aspect kept, grey levels anti-aliased."""
    height, width = crop.shape
    factor = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size == (width, height):
        return crop
    # Pillow's bilinear filter widens with the reduction factor, so shrinking averages every
    # source pixel (anti-aliased) rather than sampling.
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))


def _centre(patch: np.ndarray) -> np.ndarray:
    """Place patch in 28x28 with its centre of mass at MNIST's, rounded to whole pixels."""
    height, width = patch.shape
    total = float(patch.sum())
    if total > 0:
        row = float(patch.sum(axis=1) @ np.arange(height)) / total
        col = float(patch.sum(axis=0) @ np.arange(width)) / total
    else:  # ink found only by smoothing: centre the box instead
        row, col = (height - 1) / 2, (width - 1) / 2
    top = min(max(math.floor(_CENTRE - row + 0.5), 0), IMAGE_SIZE - height)
    left = min(max(math.floor(_CENTRE - col + 0.5), 0), IMAGE_SIZE - width)
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    image[top : top + height, left : left + width] = np.minimum(np.maximum(patch, 0), 1)
    return image
