"""Finding a digit's ink in grey levels: polarity, background, threshold, components, stroke width.

    python -c "from mnistlab.data import decode, ink; print(ink.find_ink(decode.as_grey('seven.jpg')).boxes)"

`find_ink` tells the ink's polarity, removes shadows and shading with a large-scale estimate of
the paper (`paper`), thresholds where the ink stands out from the paper's noise, erases the lines
of ruled and grid paper, labels the pieces and drops specks, page edges and shading left over;
it gives an `Ink` at a working scale, which `images` renders as MNIST digits (`segment` too,
several). For speed a clean canvas's ink is found at half its resolution, and the filters work
in the ink's box (`fastops`). `benchmarks/ink.py` measures it on faint, thin and ruled pages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from mnistlab.data import fastops, paper

# MNIST scaled each digit so its longer side fits 20x20 (aspect kept), then centred it by mass in
# 28x28: 4 pixels of margin on each side when centred. Every MNIST test digit's nonzero pixels
# span exactly 20 on the longer side (measured on the first 2,000). Defined here, below `images`
# which scales to it, because finding the ink sizes its thresholds by it too.
DIGIT_BOX = 20

# Ink is found on a copy whose longer side is at most this many pixels: a digit needs far fewer
# for its 20-pixel box, and it bounds the time of the filters on 40-megapixel photos.
_WORK_SIZE = 640

# A clean canvas's ink is found at half the resolution when its largest piece spans this many
# pixels there (3 times the 20-px box) and its strokes are this wide (2 px and a margin).
_HALF_EXTENT = 3 * DIGIT_BOX
_HALF_STROKE = 3.0
# The second estimate's window, in stroke widths: wider than a stroke with margin for the blobs
# where strokes cross.
_BACKGROUND_STROKES = 4
# Paper brightness below which a shadow is not divided out any further (noise would explode).
_DARKEST_PAPER = 0.1
# Ink must differ from paper by paper.MIN_CONTRAST, and by this many standard deviations of the
# paper's noise (paper.noise where the ink is, on a photo): pure noise split by Otsu gives 2.7
# (Gaussian) to 3.5 (uniform); the lowest in the development sets is 13 (a photo).
_MIN_SNR = 6.0
# Where the paper is not one level and Otsu's threshold over the whole page is less than this
# many standard deviations of the paper's noise above its level, it split the noise: a thin faint
# stroke is too few pixels (benchmarks/ink.py: 120-grey pencil on shaded paper). Otsu's threshold
# is then computed near the pixels _CANDIDATE_SNR standard deviations above the paper (or the top
# 0.1 %, if fewer), grown by _CANDIDATE_REACH pixels.
_NOISE_SPLIT = 4.0
_CANDIDATE_SNR = 10.0
_CANDIDATE_REACH = 2
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


@dataclass(frozen=True, eq=False)
class Ink:
    """What find_ink found, at working scale (the decoded image shrunk by `scale`)."""

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
    width: float  # pixels, the kept ink's stroke width (stroke_width)
    # Every confident pixel of the kept ink is in owner: a digit made of all of it has `width`.
    whole: bool
    floor: float  # the signal at level 0 ...
    core: float  # ... and at level 1
    threshold: float  # the signal above which (smoothed) ink is confident
    # The signal (as _separate's) at twice this resolution, where the digits are rendered from
    # (images.render_digit); None: they are rendered from `level`.
    fine: np.ndarray | None = None


def find_ink(grey: np.ndarray) -> Ink | None:
    """Find digit ink in grey levels; None for a blank page or noise."""
    work, scale = _shrink(grey)
    inverted = paper.is_dark_on_light(work)
    if inverted:
        work = 1 - work
    background = paper.background(work, min(work.shape) * paper.BACKGROUND_FRACTION)
    # On a clean canvas, whose paper has one level, the ink is found on a copy half the size
    # (its statistics do not change with the resolution there: the paper is 0) and the digit is
    # rendered from this one (`images`). Half the time of a 280-px drawing, and the same digit
    # within 2 grey levels on the development drawings (at worst 0.999 correlated on 190 MNIST
    # test digits drawn 280 px wide). Not where the copy would lose ink: a digit under three box
    # widths there, strokes under 3 px, or none found.
    if isinstance(background, float) and min(work.shape) >= 2 * paper.SMALL:
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
) -> Ink | None:
    """Find digit ink in work (light ink on dark) with background removed (see find_ink)."""
    window = min(work.shape) * paper.BACKGROUND_FRACTION
    found = _separate(work, background, inverted)
    if found is None:
        return None
    kept_mask = fastops.labels_mask(found.strokes, found.kept)
    width = stroke_width(kept_mask)
    if not isinstance(background, float) and _BACKGROUND_STROKES * width < window:
        # Again with a window a few strokes wide: it follows shadows and shading more closely
        # (what a wide one leaves at a shadow's edge can pass for ink). A background that is
        # one level for all would come out the same.
        found = _separate(work, paper.background(work, _BACKGROUND_STROKES * width), inverted)
        if found is None:
            return None
        kept_mask = fastops.labels_mask(found.strokes, found.kept)
        width = stroke_width(kept_mask)
    signal, strokes, kept = found.signal, found.strokes, found.kept
    confident = kept_mask if len(kept) == len(found.areas) - 1 else strokes > 0

    # Grey levels: paper at 0, the stroke core (90th percentile of confident kept ink) at 1.
    # Paper's level is its median plus three robust standard deviations (1.4826 MAD), so texture
    # goes too while the anti-aliased rims of strokes, also below the threshold, do not count.
    median, spread = _paper_statistics(signal, confident)
    floor = min(median + 3 * spread, found.threshold)
    core = max(fastops.percentiles(signal[kept_mask], [90])[0], floor + 1e-3)
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
    around = fastops.box_slices(confident, math.ceil(reach) + 1)
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
        squared, rows, cols = fastops.feature_transform(near_strokes == 0)
        faint &= squared <= fastops.squared_within(reach)
    faint, count = ndi.label(faint, structure=fastops.EIGHT_CONNECTED)
    touching = np.zeros(count + 1, bool)
    touching[faint[near_strokes > 0]] = True
    touching[0] = False
    attached = touching[faint]
    if not attached.any():  # no pixel above the paper's floor: what passed was smoothing's
        return None
    owner = np.zeros(strokes.shape, np.int32)
    owner[around][attached] = 1 if single else near_strokes[rows[attached], cols[attached]]
    full_level = np.zeros(strokes.shape, np.float32)
    full_level[around][attached] = level[attached]
    boxes = {
        label: (rows.start, cols.start, rows.stop, cols.stop)
        for label in kept
        for rows, cols in [found.slices[label - 1]]
    }
    return Ink(
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


def _paper_statistics(signal: np.ndarray, confident: np.ndarray) -> tuple[float, float]:
    """Return the median of the paper's signal and its robust standard deviation (1.4826 MAD)."""
    # On a clean canvas most of the paper is exactly 0, the least a signal can be: so are both
    # figures then, without sorting the paper's pixels twice.
    paper_count = confident.size - int(np.count_nonzero(confident))
    lit = int(np.count_nonzero(signal)) - int(np.count_nonzero(signal[confident]))
    if paper_count - lit > paper_count // 2:
        return 0.0, 0.0
    values = signal[~confident]
    median = float(fastops.median(values))
    return median, 1.4826 * float(fastops.median(np.abs(values - median)))


@dataclass(frozen=True, eq=False)
class _Separation:
    """Ink told from paper at working scale, light on dark."""

    signal: np.ndarray  # float32 grey levels minus the background estimate, >= 0
    threshold: float  # Otsu's level on the smoothed signal (_threshold)
    strokes: np.ndarray  # int32 label of each confident component (8-connected), 0 for paper
    areas: np.ndarray  # pixels per label, index 0 for paper
    kept: list[int]  # labels that are not specks or page edges
    extent: int  # pixels, the longer side of the largest kept component's box
    slices: list[tuple[slice, slice]]  # the box of each label (ndi.find_objects), from label 1


def _separate(
    work: np.ndarray, background: np.ndarray | float, inverted: bool
) -> _Separation | None:
    """Remove the background (paper.background), threshold, erase rulings, label components.

    Args:
        work: grey levels at working scale, light ink on dark.
        background: the paper's level, per pixel or one for all.
        inverted: work is a negative: its background is paper, whose brightness also scales
            the ink's contrast.

    Returns None for a blank page or noise: too little contrast between the two sides of the
    threshold, or ink made of many similar small pieces, or too small to be a digit, once page
    edges and shading (paper.shading) are left out.
    """
    signal = _signal(work, background, inverted)
    # Smoothing only for the decision of what is ink: noise loses amplitude, strokes wider than
    # the kernel keep theirs. Grey levels themselves stay unsmoothed.
    sigma = min(work.shape) / 400 if min(work.shape) >= paper.SMALL else 0
    smooth = fastops.gaussian_filter(signal, sigma) if sigma else signal
    threshold, spread = _threshold(smooth)
    confident = smooth > threshold
    if not isinstance(background, float):  # paper that is not one level: it may be ruled
        lines = paper.find_lines(confident)
        if lines:
            signal = paper.erase_lines(signal, lines)
            smooth = fastops.gaussian_filter(signal, sigma) if sigma else signal
            threshold, spread = _threshold(smooth)
            confident = smooth > threshold
    if not confident.any() or confident.all():
        return None
    below, above = smooth[~confident], smooth[confident]
    contrast = above.mean() - below.mean()
    # The paper's spread where the ink is, where known (shadows amplify it, texture varies).
    noise = below.std() if spread is None else float(spread[confident].mean())
    if contrast < paper.MIN_CONTRAST or contrast < _MIN_SNR * noise:
        return None
    strokes, count, slices = fastops.label(confident)
    areas = np.bincount(strokes.ravel(), minlength=count + 1)
    edges = _page_edges(strokes, areas, slices)
    candidates = [label for label in range(1, count + 1) if label not in edges]
    if candidates and not isinstance(background, float):
        # Shading, among the pieces that are not specks beside the largest: they are few.
        largest = max(areas[candidates])
        pieces = [label for label in candidates if areas[label] >= _SPECK_FRACTION * largest]
        shaded = paper.shading(work, background, strokes, count, pieces)
        candidates = [label for label in candidates if label not in shaded]
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


def _shrink(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Return grey scaled so its longer side is at most _WORK_SIZE, and the factor it shrank by."""
    scale = max(grey.shape) / _WORK_SIZE
    if scale <= 1:
        return grey, 1.0
    size = (max(1, round(grey.shape[1] / scale)), max(1, round(grey.shape[0] / scale)))
    work = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR))
    return work, grey.shape[0] / work.shape[0]


def _threshold(smooth: np.ndarray) -> tuple[float, np.ndarray | None]:
    """Return Otsu's level for a smoothed signal, and the paper's noise per pixel where known.

    Over the whole image, unless that level lies within the paper's noise (_NOISE_SPLIT): a
    thin faint stroke is then too few pixels for Otsu's method, which splits the noise. Then near
    the pixels that stand out from the paper's noise (_CANDIDATE_SNR), where the ink is a fair
    share of what is split.
    """
    threshold = _otsu(smooth)
    if 2 * np.count_nonzero(smooth) <= smooth.size or min(smooth.shape) < paper.SMALL:
        return threshold, None  # a clean canvas (paper at exactly 0) or no room for blocks
    level, spread = paper.noise(smooth)
    typical = float(fastops.median(level.ravel())) + _NOISE_SPLIT * float(fastops.median(spread.ravel()))
    if threshold >= typical:
        return threshold, spread
    score = (smooth - level) / np.maximum(spread, 1e-6)
    candidates = score >= min(_CANDIDATE_SNR, fastops.percentiles(score, [99.9])[0])
    near = ndi.binary_dilation(candidates, iterations=_CANDIDATE_REACH)
    return _otsu(smooth[near]), spread


def _otsu(values: np.ndarray) -> float:
    """Return Otsu's threshold: the level that maximises the between-class variance."""
    top = float(values.max())
    if top <= 0:
        return math.inf
    counts, edges = fastops.histogram(values, top)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)
    weight_above = weight_below[-1] - weight_below
    mass_below = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = mass_below / weight_below
        mean_above = (mass_below[-1] - mass_below) / weight_above
        between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return float(edges[1:][np.argmax(np.where(np.isnan(between), -1.0, between))])


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


def stroke_width(confident: np.ndarray) -> float:
    """Estimate the stroke width in pixels: twice the distance to paper along the strokes' ridge."""
    if not confident.any():
        return 0.0
    confident = confident[fastops.box_slices(confident, 0)]  # the paper beyond is the padding's
    padded = np.zeros((confident.shape[0] + 2, confident.shape[1] + 2), bool)
    padded[1:-1, 1:-1] = confident
    squared = fastops.feature_transform(padded)[0][1:-1, 1:-1]
    # Squared distances in integers find the same ridge; the square roots only where needed.
    ridge = confident & (squared >= ndi.maximum_filter(squared, size=3))
    return 2 * float(fastops.median(np.sqrt(squared[ridge].astype(np.float64)))) if ridge.any() else 0.0
