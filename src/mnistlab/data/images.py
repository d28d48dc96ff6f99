"""One user's digit to MNIST's model input: MNIST's own normalisation of a decoded image.

    python -c "from mnistlab.data import prepare_image; print(prepare_image('seven.jpg'))"

MNIST's recipe (LeCun et al., "The MNIST database"): each NIST digit was scaled so that its
longer side fits a 20x20 box, aspect ratio kept, anti-aliasing giving grey levels; then it was
placed in 28x28 with its centre of mass at the centre. `prepare_image` applies exactly that to a
phone photo, a canvas drawing or a small crop, once it has found the ink: polarity from the
border, shadows and paper texture removed with a large-scale background estimate, contrast
normalised, specks and page edges dropped, thin strokes thickened to MNIST's width.
`segment` does the same for each digit of a number written in one image; `decode` reads files.

The steps are NumPy and scipy.ndimage; Pillow resizes (with anti-aliasing). For speed, a clean
canvas's ink is found at half its resolution and rendered from the full one, and the filters work
in the ink's box: the server's drawings take a few milliseconds (`benchmarks/serve.py`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from mnistlab.data.decode import _as_grey
from mnistlab.data.mnist import IMAGE_SIZE

PREPROCESSING_VERSION = 2  # bump when the output of prepare_image changes for the same input
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
# An image whose outermost pixels all lie this close to the border's median (2 of 255 levels)
# is a clean canvas.
_FLAT = 2 / 255
# A clean canvas's ink is found at half the resolution when its largest piece spans this many
# pixels there (3 times the 20-px box) and its strokes are this wide (2 px and a margin).
_HALF_EXTENT = 3 * DIGIT_BOX
_HALF_STROKE = 3.0
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
    digit = _main_digit(ink)
    width = ink.width if ink.whole and len(digit) == len(ink.kept) else None
    return _render(ink, _labels_mask(ink.owner, digit), width)


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
    grey = _as_grey(ink)
    mask = grey > 0
    if not mask.any():
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    top, left, bottom, right = _mask_box(mask)
    image = _centre(_fit_box(grey[top:bottom, left:right]))
    return np.rint(image * 255).astype(np.uint8)


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
    extent: int  # pixels, the longer side of the largest kept component's box
    width: float  # pixels, the kept ink's stroke width (_stroke_width)
    # Every confident pixel of the kept ink is in owner: a digit made of all of it has `width`.
    whole: bool
    floor: float  # the signal at level 0 ...
    core: float  # ... and at level 1
    threshold: float  # the signal above which (smoothed) ink is confident
    # The signal (as _separate's) at twice this resolution, where the digits are rendered from
    # (_refine); None: they are rendered from `level`.
    fine: np.ndarray | None = None


def _find_ink(grey: np.ndarray) -> _Ink | None:
    """Find digit ink in grey levels; None for a blank page or noise."""
    work, scale = _shrink(grey)
    inverted = _is_dark_on_light(work)
    if inverted:
        work = 1 - work
    background = _background(work, min(work.shape) * _BACKGROUND_FRACTION)
    # On a clean canvas, whose paper has one level, the ink is found on a copy half the size
    # (its statistics do not change with the resolution there: the paper is 0) and the digit is
    # rendered from this one (_refine). Half the time of a 280-px drawing, and the same digit
    # within 2 grey levels on the development drawings (at worst 0.999 correlated on 190 MNIST
    # test digits drawn 280 px wide). Not where the copy would lose ink: a digit under three box
    # widths there, strokes under 3 px, or none found.
    if isinstance(background, float) and min(work.shape) >= 2 * _SMALL:
        size = (round(work.shape[1] / 2), round(work.shape[0] / 2))
        half = np.asarray(Image.fromarray(work).resize(size, Image.Resampling.BILINEAR))
        ink = _ink_at(half, background, inverted, grey.shape[0] / half.shape[0], grey.shape)
        if ink is not None and ink.extent >= _HALF_EXTENT and ink.width >= _HALF_STROKE:
            return replace(ink, fine=_signal(work, background, inverted))
    return _ink_at(work, background, inverted, scale, grey.shape)


def _ink_at(
    work: np.ndarray,
    background: np.ndarray | float,
    inverted: bool,
    scale: float,
    decoded_shape: tuple[int, int],
) -> _Ink | None:
    """Find digit ink in work (light ink on dark) with background removed (see _find_ink)."""
    window = min(work.shape) * _BACKGROUND_FRACTION
    found = _separate(work, background, inverted)
    if found is None:
        return None
    kept_mask = _labels_mask(found.strokes, found.kept)
    width = _stroke_width(kept_mask)
    if not isinstance(background, float) and _BACKGROUND_STROKES * width < window:
        # Again with a window a few strokes wide: it follows shadows and shading more closely
        # (what a wide one leaves at a shadow's edge can pass for ink). A background that is
        # one level for all would come out the same.
        found = _separate(work, _background(work, _BACKGROUND_STROKES * width), inverted)
        if found is None:
            return None
        kept_mask = _labels_mask(found.strokes, found.kept)
        width = _stroke_width(kept_mask)
    signal, strokes, kept = found.signal, found.strokes, found.kept
    confident = kept_mask if len(kept) == len(found.areas) - 1 else strokes > 0

    # Grey levels: paper at 0, the stroke core (90th percentile of confident kept ink) at 1.
    # Paper's level is its median plus three robust standard deviations (1.4826 MAD), so texture
    # goes too while the anti-aliased rims of strokes, also below the threshold, do not count.
    median, spread = _paper_statistics(signal, confident)
    floor = min(median + 3 * spread, found.threshold)
    core = max(_percentiles(signal[kept_mask], [90])[0], floor + 1e-3)
    # Below a few percent of the core, a pixel of a large digit is as likely compression ringing
    # as ink and would widen the box; in a digit near 20 px it is MNIST's own anti-aliasing.
    if found.extent > 2 * DIGIT_BOX:
        floor = max(floor, median + _FAINT * (core - median))
    # Faint ink (anti-aliased rims, blur) counts where it is connected to confident ink and
    # within half a stroke width of it, so JPEG ringing on flat paper does not spread the box;
    # it belongs to the nearest confident component, so a dropped speck takes its halo along.
    # Nothing farther than that reach counts: the work is done in the confident ink's box
    # widened by it, which holds every pixel's nearest confident one too.
    reach = max(_RIM, width / 2)
    around = _box_slices(confident, math.ceil(reach) + 1)
    near_strokes = strokes[around]
    level = np.minimum(np.maximum((signal[around] - floor) / (core - floor), 0), 1)
    level = level.astype(np.float32, copy=False)
    faint = level > 0
    # One confident component and no faint pixel beyond a square that fits in the reach (the
    # usual canvas drawing): every faint pixel is within reach, and it belongs to that component.
    # Otherwise the distances and the nearest component come from a distance transform.
    square = ndi.maximum_filter(near_strokes > 0, 2 * math.floor(reach / math.sqrt(2)) + 1)
    single = len(found.areas) == 2 and not (faint & ~square).any()
    if not single:
        squared, rows, cols = _nearest(near_strokes == 0)
        faint &= squared <= _squared_within(reach)
    faint, count = ndi.label(faint, structure=_EIGHT)
    touching = np.zeros(count + 1, bool)
    touching[faint[near_strokes > 0]] = True
    touching[0] = False
    attached = touching[faint]
    owner = np.zeros(strokes.shape, np.int32)
    owner[around][attached] = 1 if single else near_strokes[rows[attached], cols[attached]]
    full_level = np.zeros(strokes.shape, np.float32)
    full_level[around][attached] = level[attached]
    boxes = {
        label: (rows.start, cols.start, rows.stop, cols.stop)
        for label in kept
        for rows, cols in [found.slices[label - 1]]
    }
    return _Ink(
        level=full_level,
        strokes=strokes,
        owner=owner,
        kept=kept,
        boxes=boxes,
        areas={label: int(found.areas[label]) for label in kept},
        scale=scale,
        decoded_shape=decoded_shape,
        inverted=inverted,
        extent=found.extent,
        width=width,
        # Unless some confident pixel fell below the floor (and so out of the digit's mask).
        whole=not (kept_mask[around] & ~attached).any(),
        floor=floor,
        core=core,
        threshold=found.threshold,
    )


def _labels_mask(labels: np.ndarray, chosen: list[int]) -> np.ndarray:
    """Return where labels (>= 0) is one of chosen (> 0, distinct): np.isin in a third the time."""
    count = int(labels.max())
    if chosen and len(chosen) == count == max(chosen):  # all of them
        return labels > 0
    table = np.zeros(max([count, *chosen]) + 1, bool)
    table[chosen] = True
    return table[labels]


def _paper_statistics(signal: np.ndarray, confident: np.ndarray) -> tuple[float, float]:
    """Return the median of the paper's signal and its robust standard deviation (1.4826 MAD)."""
    # On a clean canvas most of the paper is exactly 0, the least a signal can be: so are both
    # figures then, without sorting the paper's pixels twice.
    paper_count = confident.size - int(np.count_nonzero(confident))
    lit = int(np.count_nonzero(signal)) - int(np.count_nonzero(signal[confident]))
    if paper_count - lit > paper_count // 2:
        return 0.0, 0.0
    paper = signal[~confident]
    median = float(_median(paper))
    return median, 1.4826 * float(_median(np.abs(paper - median)))


def _median(values: np.ndarray) -> np.floating:
    """np.median of a 1-D array without NaNs, bit for bit, without its overhead (10 us a call)."""
    half = values.size // 2
    if values.size % 2:
        return np.partition(values, half)[half]
    part = np.partition(values, [half - 1, half])
    return (part[half - 1] + part[half]) / 2  # NumPy scalars: its mean, in the array's precision


def _percentiles(values: np.ndarray, percents: list[float]) -> list[float]:
    """np.percentile(values, percents) for a list of percents, bit for bit, by one partition.

    NumPy's linear interpolation (Hyndman and Fan's 7th), whose checks and dispatch cost 30 us a
    call: most of the time of a 28x28 image's quantiles.
    """
    values = values.ravel()
    last = values.size - 1
    positions = [last * (percent / 100) for percent in percents]
    lows = [last if position >= last else math.floor(position) for position in positions]
    part = np.partition(values, sorted({*lows, *(min(low + 1, last) for low in lows)}))
    results = []
    for position, low in zip(positions, lows):
        below, above = part[low], part[min(low + 1, last)]
        step = float(above - below)  # in the array's precision, as NumPy subtracts
        weight = position - low if position < last else 1.0
        results.append(
            float(below) + step * weight if weight < 0.5 else float(above) - step * (1 - weight)
        )
    return results


def _nearest(paper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each pixel's squared distance to the nearest False pixel, and that pixel's indices.

    scipy's feature transform, with the squared distances in integers: distance_transform_edt
    spends as long again on float64 distances for the whole image.
    """
    rows, cols = ndi.distance_transform_edt(paper, return_distances=False, return_indices=True)
    down = rows - np.arange(paper.shape[0], dtype=np.int32)[:, np.newaxis]
    across = cols - np.arange(paper.shape[1], dtype=np.int32)
    return down * down + across * across, rows, cols


def _squared_within(distance: float) -> int:
    """Return the largest integer whose square root (float64, as scipy's) is at most distance."""
    squared = math.floor(distance * distance)
    while math.sqrt(squared + 1) <= distance:
        squared += 1
    while squared >= 0 and math.sqrt(squared) > distance:
        squared -= 1
    return squared


def _box_slices(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Return the slices of mask's bounding box widened by margin pixels, within the image."""
    top, left, bottom, right = _mask_box(mask)
    return (slice(max(0, top - margin), bottom + margin),
            slice(max(0, left - margin), right + margin))


@dataclass(frozen=True, eq=False)
class _Separation:
    """Ink told from paper at working scale, light on dark."""

    signal: np.ndarray  # float32 grey levels minus the background estimate, >= 0
    threshold: float  # Otsu's level on the smoothed signal
    strokes: np.ndarray  # int32 label of each confident component (8-connected), 0 for paper
    areas: np.ndarray  # pixels per label, index 0 for paper
    kept: list[int]  # labels that are not specks or page edges
    extent: int  # pixels, the longer side of the largest kept component's box
    slices: list[tuple[slice, slice]]  # the box of each label (ndi.find_objects), from label 1


def _separate(
    work: np.ndarray, background: np.ndarray | float, inverted: bool
) -> _Separation | None:
    """Remove the background (_background), threshold, label components.

    Args:
        work: grey levels at working scale, light ink on dark.
        background: the paper's level, per pixel or one for all.
        inverted: work is a negative: its background is paper, whose brightness also scales
            the ink's contrast.

    Returns None for a blank page or noise: too little contrast between the two sides of the
    threshold, or ink made of many similar small pieces, or too small to be a digit.
    """
    signal = _signal(work, background, inverted)
    # Smoothing only for the decision of what is ink: noise loses amplitude, strokes wider than
    # the kernel keep theirs. Grey levels themselves stay unsmoothed.
    sigma = min(work.shape) / 400 if min(work.shape) >= _SMALL else 0
    smooth = _smooth(signal, sigma) if sigma else signal
    threshold = _otsu(smooth)
    confident = smooth > threshold
    if not confident.any() or confident.all():
        return None
    paper, ink = smooth[~confident], smooth[confident]
    contrast = ink.mean() - paper.mean()
    if contrast < _MIN_CONTRAST or contrast < _MIN_SNR * paper.std():
        return None
    strokes, count, slices = _label(confident)
    areas = np.bincount(strokes.ravel(), minlength=count + 1)
    edges = _page_edges(strokes, areas, slices)
    candidates = [label for label in range(1, count + 1) if label not in edges]
    if not candidates:
        return None
    largest = max(candidates, key=lambda label: areas[label])
    rows, cols = slices[largest - 1]
    extent = max(rows.stop - rows.start, cols.stop - cols.start)
    # Noise: salt and pepper passes the contrast test, but no piece of it stands out.
    if areas[largest] < _MIN_SHARE * areas[candidates].sum():
        return None
    if extent < max(_MIN_EXTENT, _MIN_EXTENT_FRACTION * max(work.shape)):  # a dot of dust
        return None
    kept = [label for label in candidates if areas[label] >= _SPECK_FRACTION * areas[largest]]
    return _Separation(signal, threshold, strokes, areas, kept, extent, slices)


def _signal(work: np.ndarray, background: np.ndarray | float, inverted: bool) -> np.ndarray:
    """Return the ink's signal: work (light ink on dark) above the background, >= 0."""
    if isinstance(background, float) and background == 0 and work.min() >= 0 and work.max() <= 1:
        return work  # paper at 0 (a white or black canvas): the steps below would change nothing
    signal = np.maximum(work - background, 0)
    if inverted:
        # Ink reflects a fixed fraction of the light that reaches it: in a shadow its contrast
        # shrinks with the paper's brightness, 1 - background. Dividing restores it.
        if isinstance(background, float):  # a Python float keeps float32 (NumPy's would not)
            signal = np.minimum(signal / max(1 - background, _DARKEST_PAPER), 1)
        else:
            signal = np.minimum(signal / np.maximum(1 - background, _DARKEST_PAPER), 1)
    return signal


# On a clean canvas the ink covers a part of the image and the paper's signal is exactly 0: the
# filters below work on the ink's box (with the margin they reach), the rest stays 0, and the
# results are the same to the bit.


def _smooth(signal: np.ndarray, sigma: float) -> np.ndarray:
    """ndi.gaussian_filter(signal, sigma) for signal >= 0, computed in the box of its nonzeros."""
    if not signal.any():
        return signal.copy()
    reach = int(4.0 * sigma + 0.5)  # scipy's kernel radius (truncate=4)
    box = _box_slices(signal > 0, reach)
    smooth = np.zeros_like(signal)
    smooth[box] = ndi.gaussian_filter(signal[box], sigma)
    return smooth


def _label(mask: np.ndarray) -> tuple[np.ndarray, int, list[tuple[slice, slice]]]:
    """ndi.label (8-connected) and ndi.find_objects of mask, computed in the box of mask."""
    top, left, bottom, right = _mask_box(mask)
    inner, count = ndi.label(mask[top:bottom, left:right], _EIGHT)
    labels = np.zeros(mask.shape, np.int32)
    labels[top:bottom, left:right] = inner
    slices = [
        (slice(rows.start + top, rows.stop + top), slice(cols.start + left, cols.stop + left))
        for rows, cols in ndi.find_objects(inner)
    ]
    return labels, count, slices


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
    paper = float(_median(_border(grey)))
    # The most robust tails that decide: 0.5 % of the pixels ignores specks and highlights, but
    # a thin pen line or a small digit on a large page may cover less, down to a few pixels.
    for percent in _POLARITY_TAILS:
        darkest, lightest = _percentiles(grey, [percent, 100 - percent])
        difference = (paper - darkest) - (lightest - paper)
        if abs(difference) > _MIN_CONTRAST:
            break
    return bool(difference > 0)


def _background(work: np.ndarray, window: float) -> np.ndarray | float:
    """Estimate paper (light ink on dark): shading, shadows and page beyond the edge included."""
    paper = float(_median(_border(work)))
    # No room for a local estimate, or a clean canvas: the border's level. A canvas is clean
    # when its outermost pixels are all at that level (strokes may reach into the border, seldom
    # to the edge); an opening gives that level everywhere then, unless there is a shadow
    # within or a blob of ink wider than the window.
    edge = np.concatenate([work[0], work[-1], work[1:-1, 0], work[1:-1, -1]])
    if min(work.shape) < _SMALL or np.abs(edge - paper).max() <= _FLAT:
        return paper
    # A grey opening removes every bright structure narrower than its window (strokes) and keeps
    # wider ones (shadows, gradients, a dark table beyond the page) with their edges sharp.
    size = max(3, round(window))
    return ndi.grey_opening(work, size=(size, size), mode="nearest")


def _otsu(values: np.ndarray) -> float:
    """Return Otsu's threshold: the level that maximises the between-class variance."""
    top = float(values.max())
    if top <= 0:
        return math.inf
    counts, edges = _histogram(values, top)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)
    weight_above = weight_below[-1] - weight_below
    mass_below = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = mass_below / weight_below
        mean_above = (mass_below[-1] - mass_below) / weight_above
        between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return float(edges[1:][np.argmax(np.where(np.isnan(between), -1.0, between))])


def _histogram(values: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram(values, bins=256, range=(0, top)) for values in [0, top], sooner on a canvas.

    The zeros, most of a clean canvas, go to the first bin (where NumPy puts them) uncounted by
    its arithmetic, which is repeated below for the others: the same counts and edges, in a
    quarter of the time on a drawing and a third on a 28x28 digit.
    """
    if 2 * np.count_nonzero(values) > values.size:  # a photo: leaving out its zeros costs more
        return np.histogram(values, bins=256, range=(0, top))
    edges = np.linspace(0, top, 257, dtype=values.dtype)
    nonzero = values[values > 0]
    index = (nonzero / np.float64(top) * 256).astype(np.intp)
    index[index == 256] = 255
    # NumPy's corrections for values within a rounding error of an edge.
    index[nonzero < edges[index]] -= 1
    index[(nonzero >= edges[index + 1]) & (index != 255)] += 1
    counts = np.bincount(index, minlength=256)
    counts[0] += values.size - nonzero.size
    return counts, edges


def _page_edges(
    strokes: np.ndarray, areas: np.ndarray, slices: list[tuple[slice, slice]]
) -> set[int]:
    """Return the labels of components that hug the image border: page edges, table, frames."""
    height, width = strokes.shape
    ring = np.unique(np.concatenate([strokes[0], strokes[-1], strokes[:, 0], strokes[:, -1]]))
    if not ring.any():
        return set()
    depth_rows, depth_cols = math.ceil(_EDGE_DEPTH * height), math.ceil(_EDGE_DEPTH * width)
    band = np.zeros(strokes.shape, bool)
    band[:depth_rows] = band[-depth_rows:] = True
    band[:, :depth_cols] = band[:, -depth_cols:] = True
    in_band = np.bincount(strokes[band], minlength=len(areas))
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


def _render(ink: _Ink, part: np.ndarray, width: float | None = None) -> Prepared:
    """MNIST's normalisation of the ink in `part` (a working-scale mask): box, scale, centre.

    width: the stroke width of the confident ink in part, when known.
    """
    refined = None if ink.fine is None else _refine(ink, part)
    if refined is None:
        top, left, bottom, right = _mask_box(part)
        inside = part[top:bottom, left:right]
        level = ink.level[top:bottom, left:right]
        confident = inside & (ink.strokes[top:bottom, left:right] > 0)
        scale = ink.scale
    else:
        (top, left, bottom, right), inside, level, confident = refined
        scale = ink.decoded_shape[0] / ink.fine.shape[0]  # as _shrink's
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
    ink: _Ink, part: np.ndarray
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
    top, left, bottom, right = _mask_box(part)
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
    box_top, box_left, box_bottom, box_right = _mask_box(inside)
    box = np.s_[box_top:box_bottom, box_left:box_right]
    return (
        (fine_top + box_top, fine_left + box_left, fine_top + box_bottom, fine_left + box_right),
        inside[box],
        level[box].astype(np.float32),
        inside[box] & (signal[box] > ink.threshold),
    )


def _stroke_width(confident: np.ndarray) -> float:
    """Estimate the stroke width in pixels: twice the distance to paper along the strokes' ridge."""
    if not confident.any():
        return 0.0
    confident = confident[_box_slices(confident, 0)]  # the paper beyond is the padding's
    padded = np.zeros((confident.shape[0] + 2, confident.shape[1] + 2), bool)
    padded[1:-1, 1:-1] = confident
    squared = _nearest(padded)[0][1:-1, 1:-1]
    # Squared distances in integers find the same ridge; the square roots only where needed.
    ridge = confident & (squared >= ndi.maximum_filter(squared, size=3))
    return 2 * float(_median(np.sqrt(squared[ridge].astype(np.float64)))) if ridge.any() else 0.0


def _thicken(crop: np.ndarray, confident: np.ndarray, width: float | None = None) -> np.ndarray:
    """Widen strokes that would come out thinner than MNIST's once the crop is fitted to 20 px.

    width: the confident ink's stroke width, when known (_stroke_width otherwise).
    """
    long_side = max(crop.shape)
    if width is None:
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
    distance = np.sqrt(_nearest(~np.pad(confident, pad))[0].astype(np.float64))
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
