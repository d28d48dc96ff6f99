"""One user's digit to MNIST's model input: MNIST's own normalisation of a decoded image.

    python -c "from mnistlab.data import prepare_image; print(prepare_image('seven.jpg'))"

MNIST's recipe (LeCun et al., "The MNIST database"): each NIST digit was scaled so that its
longer side fits a 20x20 box, aspect ratio kept, anti-aliasing giving grey levels; then it was
placed in 28x28 with its centre of mass at the centre. `prepare_image` applies exactly that to a
phone photo, a canvas drawing or a small crop, once it has found the ink: polarity from the
border, shadows and paper texture removed with a large-scale background estimate, contrast
normalised, specks and page edges dropped, thin strokes thickened to MNIST's width.
`segment` does the same for each digit of a number written in one image; `decode` reads files.

The steps are NumPy and scipy.ndimage; Pillow resizes (with anti-aliasing).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from mnistlab.data.decode import _as_grey
from mnistlab.data.mnist import IMAGE_SIZE

PREPROCESSING_VERSION = 1  # bump when the output of prepare_image changes for the same input
# MNIST scaled each digit so its longer side fits 20x20 (aspect kept), then centred it by mass in
# 28x28: 4 pixels of margin on each side when centred. Every MNIST test digit's nonzero pixels
# span exactly 20 on the longer side (measured on the first 2,000).
DIGIT_BOX = 20

# Where MNIST puts the centre of mass, (row, column) in pixels: the test digits average (13.99,
# 14.00) and 98 % lie within 0.5 of 14, so rounding the shift reproduces their placement.
_CENTRE = 14.0
# Ink is found on a copy whose longer side is at most this many pixels: a digit needs far fewer
# for its 20-pixel box, and it bounds the time of the filters on 40-megapixel photos.
_WORK_SIZE = 640

# Percent of pixels in each tail compared with the border's level to tell polarity, in turn.
_POLARITY_TAILS = (0.5, 0.1, 0.0)
# Shorter side (px) below which there is no room for a local background estimate: the border's
# median stands in. Also the size from which ink is smoothed before thresholding.
_SMALL = 64
# The first background estimate is a grey opening this fraction of the shorter side wide: three
# times the widest strokes in the development set (0.11 of the side, marker on a canvas), and
# narrower than most shadows.
_BACKGROUND_FRACTION = 1 / 3
# The second estimate's window, in stroke widths: wider than a stroke with margin for the blobs
# where strokes cross.
_BACKGROUND_STROKES = 4
# Paper brightness below which a shadow is not divided out any further (noise would explode).
_DARKEST_PAPER = 0.1
# Ink must differ from paper by this much of the grey range (13 of 255 levels) ...
_MIN_CONTRAST = 0.05
# ... and by this many standard deviations of the paper: pure noise split by Otsu gives 2.7
# (Gaussian) to 3.5 (uniform); the lowest in the development set is 10 (a blurred photo).
_MIN_SNR = 6.0
# The largest piece of ink must hold this share of all of it (salt-and-pepper noise: < 1 %; a
# 20-digit number: 5 %) and span this many working pixels, or this share of the longer side.
_MIN_SHARE = 0.05
_MIN_EXTENT = 4
_MIN_EXTENT_FRACTION = 0.02
# Components with less area than this fraction of the largest are specks (dust, paper texture).
_SPECK_FRACTION = 0.05
# A page edge is ink touching the border with at least 90 % of its pixels within this fraction
# of the image from the border, running along at least _EDGE_LENGTH of a side.
_EDGE_DEPTH = 0.1
_EDGE_LENGTH = 0.3
# Faint ink is ignored below this fraction of the stroke core in digits larger than 2 x 20 px:
# JPEG ringing 2-9 px from strokes is 2 % of it (99th percentile, quality 85).
_FAINT = 0.05
# Faint ink reaches at most half a stroke width, or this many pixels, beyond confident ink.
_RIM = 2
# Pieces closer than this fraction of the digit's size belong to it (a 5's detached bar).
_NEAR = 0.3
# MNIST strokes are 2.3 px wide at 28x28 (median; 5th-95th percentile 1.5-3.8, from the distance
# transform of the test digits upscaled x8). Thinner ones (a pen line scaled from 400 px down to
# 20) are dilated before scaling to reach _STROKE_WIDTH.
_THIN_STROKE = 1.5
_STROKE_WIDTH = 2.3
_EIGHT = np.ones((3, 3), bool)  # 8-connectivity: diagonal pixels of a thin stroke stay joined


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
    ink = _find_ink(_as_grey(source))
    if ink is None:
        return Prepared(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8), False, False, None)
    return _render(ink, np.isin(ink.owner, _main_digit(ink)))



# --- finding the ink ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Ink:
    """What _find_ink found, at working scale (the decoded image shrunk by `scale`)."""

    level: np.ndarray  # float32 0 (paper) .. 1 (stroke core), light ink; 0 away from the ink
    strokes: np.ndarray  # int32 label of each confident ink component (8-connected), 0 elsewhere
    owner: np.ndarray  # int32 the stroke label each faint ink pixel belongs to, 0 for paper
    kept: list[int]  # stroke labels that are digit ink: not specks, not page edges
    boxes: dict[int, tuple[int, int, int, int]]  # (top, left, bottom, right) per kept label
    areas: dict[int, int]  # pixels per kept label
    scale: float  # decoded pixels per working pixel, >= 1
    decoded_shape: tuple[int, int]
    inverted: bool  # the source was dark on light


def _find_ink(grey: np.ndarray) -> _Ink | None:
    """Find digit ink in grey levels; None for a blank page or noise."""
    work, scale = _shrink(grey)
    inverted = _is_dark_on_light(work)
    if inverted:
        work = 1 - work
    window = min(work.shape) * _BACKGROUND_FRACTION
    found = _separate(work, window, inverted)
    if found is not None and min(work.shape) >= _SMALL:
        # Again with a window a few strokes wide: it follows shadows and shading more closely
        # (what a wide one leaves at a shadow's edge can pass for ink).
        narrower = _BACKGROUND_STROKES * _stroke_width(np.isin(found.strokes, found.kept))
        if narrower < window:
            found = _separate(work, narrower, inverted)
    if found is None:
        return None
    signal, confident, strokes, kept = found.signal, found.strokes > 0, found.strokes, found.kept

    # Grey levels: paper at 0, the stroke core (90th percentile of confident kept ink) at 1.
    # Paper's level is its median plus three robust standard deviations (1.4826 MAD), so texture
    # goes too while the anti-aliased rims of strokes, also below the threshold, do not count.
    paper = signal[~confident]
    median = float(np.median(paper))
    spread = 1.4826 * float(np.median(np.abs(paper - median)))
    floor = min(median + 3 * spread, found.threshold)
    kept_mask = np.isin(strokes, kept)
    core = max(float(np.percentile(signal[kept_mask], 90)), floor + 1e-3)
    # Below a few percent of the core, a pixel of a large digit is as likely compression ringing
    # as ink and would widen the box; in a digit near 20 px it is MNIST's own anti-aliasing.
    if found.extent > 2 * DIGIT_BOX:
        floor = max(floor, median + _FAINT * (core - median))
    level = np.clip((signal - floor) / (core - floor), 0, 1).astype(np.float32)
    # Faint ink (anti-aliased rims, blur) counts where it is connected to confident ink and
    # within half a stroke width of it, so JPEG ringing on flat paper does not spread the box;
    # it belongs to the nearest confident component, so a dropped speck takes its halo along.
    distance, (rows, cols) = ndi.distance_transform_edt(~confident, return_indices=True)
    reach = max(_RIM, _stroke_width(kept_mask) / 2)
    faint, _ = ndi.label((level > 0) & (distance <= reach), structure=_EIGHT)
    attached = (faint > 0) & np.isin(faint, np.unique(faint[confident]))
    owner = np.where(attached, strokes[rows, cols], 0).astype(np.int32)
    level = np.where(owner > 0, level, 0).astype(np.float32)
    slices = ndi.find_objects(strokes)
    boxes = {
        label: (slices[label - 1][0].start, slices[label - 1][1].start,
                slices[label - 1][0].stop, slices[label - 1][1].stop)
        for label in kept
    }
    return _Ink(
        level=level,
        strokes=strokes,
        owner=owner,
        kept=kept,
        boxes=boxes,
        areas={label: int(found.areas[label]) for label in kept},
        scale=scale,
        decoded_shape=grey.shape,
        inverted=inverted,
    )


@dataclass(frozen=True, eq=False)
class _Separation:
    """Ink told from paper at working scale, light on dark."""

    signal: np.ndarray  # float32 grey levels minus the background estimate, >= 0
    threshold: float  # Otsu's level on the smoothed signal
    strokes: np.ndarray  # int32 label of each confident component (8-connected), 0 for paper
    areas: np.ndarray  # pixels per label, index 0 for paper
    kept: list[int]  # labels that are not specks or page edges
    extent: int  # pixels, the longer side of the largest kept component's box


def _separate(work: np.ndarray, window: float, inverted: bool) -> _Separation | None:
    """Remove the background (a grey opening `window` px wide), threshold, label components.

    Args:
        work: grey levels at working scale, light ink on dark.
        inverted: work is a negative: its background is paper, whose brightness also scales
            the ink's contrast.

    Returns None for a blank page or noise: too little contrast between the two sides of the
    threshold, or ink made of many similar small pieces, or too small to be a digit.
    """
    background = _background(work, window)
    signal = np.clip(work - background, 0, None)
    if inverted:
        # Ink reflects a fixed fraction of the light that reaches it: in a shadow its contrast
        # shrinks with the paper's brightness, 1 - background. Dividing restores it.
        signal = np.clip(signal / np.maximum(1 - background, _DARKEST_PAPER), 0, 1)
    # Smoothing only for the decision of what is ink: noise loses amplitude, strokes wider than
    # the kernel keep theirs. Grey levels themselves stay unsmoothed.
    sigma = min(work.shape) / 400 if min(work.shape) >= _SMALL else 0
    smooth = ndi.gaussian_filter(signal, sigma) if sigma else signal
    threshold = _otsu(smooth)
    confident = smooth > threshold
    if not confident.any() or confident.all():
        return None
    paper, ink = smooth[~confident], smooth[confident]
    contrast = ink.mean() - paper.mean()
    if contrast < _MIN_CONTRAST or contrast < _MIN_SNR * paper.std():
        return None
    strokes, count = ndi.label(confident, structure=_EIGHT)
    areas = np.bincount(strokes.ravel(), minlength=count + 1)
    edges = _page_edges(strokes, count, areas)
    candidates = [label for label in range(1, count + 1) if label not in edges]
    if not candidates:
        return None
    largest = max(candidates, key=lambda label: areas[label])
    rows, cols = ndi.find_objects(strokes)[largest - 1]
    extent = max(rows.stop - rows.start, cols.stop - cols.start)
    # Noise: salt and pepper passes the contrast test, but no piece of it stands out.
    if areas[largest] < _MIN_SHARE * areas[candidates].sum():
        return None
    if extent < max(_MIN_EXTENT, _MIN_EXTENT_FRACTION * max(work.shape)):  # a dot of dust
        return None
    kept = [label for label in candidates if areas[label] >= _SPECK_FRACTION * areas[largest]]
    return _Separation(signal, threshold, strokes.astype(np.int32), areas, kept, extent)


def _shrink(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Return grey scaled so its longer side is at most _WORK_SIZE, and the factor it shrank by."""
    scale = max(grey.shape) / _WORK_SIZE
    if scale <= 1:
        return grey, 1.0
    size = (max(1, round(grey.shape[1] / scale)), max(1, round(grey.shape[0] / scale)))
    work = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR))
    return work, grey.shape[0] / work.shape[0]


def _border(grey: np.ndarray) -> np.ndarray:
    """Return the pixels of the outer ring, 1/20 of the shorter side deep (at least one)."""
    depth = max(1, min(grey.shape) // 20)
    return np.concatenate([
        grey[:depth].ravel(), grey[-depth:].ravel(),
        grey[depth:-depth, :depth].ravel(), grey[depth:-depth, -depth:].ravel(),
    ])


def _is_dark_on_light(grey: np.ndarray) -> bool:
    """Tell the polarity: does the ink (the far tail from the border's level) lie below it?"""
    paper = np.median(_border(grey))
    # The most robust tails that decide: 0.5 % of the pixels ignores specks and highlights, but
    # a thin pen line or a small digit on a large page may cover less, down to a few pixels.
    for percent in _POLARITY_TAILS:
        darkest, lightest = np.percentile(grey, [percent, 100 - percent])
        difference = (paper - darkest) - (lightest - paper)
        if abs(difference) > _MIN_CONTRAST:
            break
    return bool(difference > 0)


def _background(work: np.ndarray, window: float) -> np.ndarray | float:
    """Estimate paper (light ink on dark): shading, shadows and page beyond the edge included."""
    if min(work.shape) < _SMALL:
        return float(np.median(_border(work)))
    # A grey opening removes every bright structure narrower than its window (strokes) and keeps
    # wider ones (shadows, gradients, a dark table beyond the page) with their edges sharp.
    size = max(3, round(window))
    return ndi.grey_opening(work, size=(size, size), mode="nearest")


def _otsu(values: np.ndarray) -> float:
    """Return Otsu's threshold: the level that maximises the between-class variance."""
    top = float(values.max())
    if top <= 0:
        return math.inf
    counts, edges = np.histogram(values, bins=256, range=(0, top))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)
    weight_above = weight_below[-1] - weight_below
    mass_below = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = mass_below / weight_below
        mean_above = (mass_below[-1] - mass_below) / weight_above
        between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return float(edges[1:][np.nanargmax(np.nan_to_num(between, nan=-1.0))])


def _page_edges(strokes: np.ndarray, count: int, areas: np.ndarray) -> set[int]:
    """Return the labels of components that hug the image border: page edges, table, frames."""
    height, width = strokes.shape
    ring = np.unique(np.concatenate([strokes[0], strokes[-1], strokes[:, 0], strokes[:, -1]]))
    depth_rows, depth_cols = math.ceil(_EDGE_DEPTH * height), math.ceil(_EDGE_DEPTH * width)
    band = np.zeros(strokes.shape, bool)
    band[:depth_rows] = band[-depth_rows:] = True
    band[:, :depth_cols] = band[:, -depth_cols:] = True
    in_band = np.bincount(strokes[band], minlength=count + 1)
    slices = ndi.find_objects(strokes)
    edges = set()
    for label in ring[ring > 0]:
        rows, cols = slices[label - 1]
        long = max((rows.stop - rows.start) / height, (cols.stop - cols.start) / width)
        if in_band[label] >= 0.9 * areas[label] and long >= _EDGE_LENGTH:
            edges.add(int(label))
    return edges


# --- from ink to digits ---------------------------------------------------------------------


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Return the distance in pixels between two boxes along the axis they are farther apart."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3], 0)


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _main_digit(ink: _Ink) -> list[int]:
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
                box = _union(box, ink.boxes[label])
                grew = True
    return digit


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _render(ink: _Ink, part: np.ndarray) -> Prepared:
    """MNIST's normalisation of the ink in `part` (a working-scale mask): box, scale, centre."""
    top, left, bottom, right = _mask_box(part)
    inside = part[top:bottom, left:right]
    crop = np.where(inside, ink.level[top:bottom, left:right], 0).astype(np.float32)
    crop = _thicken(crop, inside & (ink.strokes[top:bottom, left:right] > 0))
    image = _centre(_fit_box(crop))
    rows, cols = ink.decoded_shape
    box = (
        math.floor(top * ink.scale),
        math.floor(left * ink.scale),
        min(rows, math.ceil(bottom * ink.scale)),
        min(cols, math.ceil(right * ink.scale)),
    )
    return Prepared(np.rint(image * 255).astype(np.uint8), True, ink.inverted, box)


def _stroke_width(confident: np.ndarray) -> float:
    """Estimate the stroke width in pixels: twice the distance to paper along the strokes' ridge."""
    distance = ndi.distance_transform_edt(np.pad(confident, 1))[1:-1, 1:-1]
    ridge = confident & (distance >= ndi.maximum_filter(distance, size=3))
    return 2 * float(np.median(distance[ridge])) if ridge.any() else 0.0


def _thicken(crop: np.ndarray, confident: np.ndarray) -> np.ndarray:
    """Widen strokes that would come out thinner than MNIST's once the crop is fitted to 20 px."""
    long_side = max(crop.shape)
    width = _stroke_width(confident)
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
    distance = ndi.distance_transform_edt(~np.pad(confident, pad))
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
    top = int(np.clip(math.floor(_CENTRE - row + 0.5), 0, IMAGE_SIZE - height))
    left = int(np.clip(math.floor(_CENTRE - col + 0.5), 0, IMAGE_SIZE - width))
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    image[top : top + height, left : left + width] = np.clip(patch, 0, 1)
    return image
