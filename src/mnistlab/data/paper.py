"""The paper under a digit's ink: its polarity, its level in uneven light, its noise, its rulings.

    python -c "from mnistlab.data import decode, paper; print(paper.is_dark_on_light(decode.as_grey('seven.jpg')))"

What `ink` needs to know of the paper before it can tell ink from it: which way the ink lies
(dark on light or light on dark), the paper's level at each pixel (shading, shadows, a table
beyond the page), how much it varies by itself (sensor noise, texture, JPEG), and where it is
printed with the lines of ruled or grid paper. Also what the level estimate leaves behind of a
shadow, so it is not taken for ink. Arrays are grey levels in [0, 1] at `ink`'s working scale.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from mnistlab.data import fastops

# Shorter side (px) below which there is no room for a local estimate of the paper: the
# border's median stands in. Also the size from which `ink` smooths before thresholding.
SMALL = 64
# The paper's first level estimate is a grey opening this fraction of the shorter side wide:
# three times the widest strokes in the development set (0.11 of the side, marker on a canvas),
# and narrower than most shadows.
BACKGROUND_FRACTION = 1 / 3
# Ink must differ from paper by this much of the grey range (13 of 255 levels).
MIN_CONTRAST = 0.05
# An image whose outermost pixels all lie this close to the border's median (2 of 255 levels)
# is a clean canvas: its paper is one level.
_FLAT = 2 / 255
# Percent of pixels in each tail compared with the paper's level to tell polarity, in turn.
_POLARITY_TAILS = (0.5, 0.1, 0.0)
# The paper's level for telling polarity is a median on a copy this many pixels high.
_COARSE = 48
# The paper's noise is measured in square blocks of this fraction of the shorter side (at least
# 8 px): small enough to follow a shadow, large enough for a robust spread.
_NOISE_BLOCKS = 16
# Ruled and grid lines: tilted up to _LINE_SLOPE (rise over run), straight within a pixel across
# at least _LINE_SPAN of the image (rulings run edge to edge; a handwritten 1 is not that straight),
# each of their rows (at a tilt) holding _LINE_FILL of a full line, and at most _LINE_WIDTH of the
# shorter side (or 3 px) wide: a 3-px ruling blurred by a phone spans 8 px of a 350-px photo.
_LINE_SLOPE = 0.1
_LINE_SPAN = 0.85
# ... of the part of the image it crosses: a ruling that leaves by a side crosses at least this
# share of the image's width to count.
_LINE_CLIPPED = 0.7
_LINE_FILL = 0.3
_LINE_WIDTH = 0.04
# Bins examined as possible lines, most votes first: enough for a page of grid in a photo.
_LINE_TRIES = 200
# Ink has the paper's level below it around at least this share of its outline (`shading`).
_SURROUNDED = 0.75

# (axis, slope, low, high): a line along rows (axis 0) or columns (axis 1), its rows (columns)
# at the image's middle from low to high inclusive, shifting by slope per pixel along it.
Line = tuple[int, float, int, int]


def border(grey: np.ndarray) -> np.ndarray:
    """Return the pixels of the outer ring, 1/20 of the shorter side deep (at least one)."""
    depth = max(1, min(grey.shape) // 20)
    return np.concatenate([
        grey[:depth].ravel(), grey[-depth:].ravel(),
        grey[depth:-depth, :depth].ravel(), grey[depth:-depth, -depth:].ravel(),
    ])


def _is_clean(grey: np.ndarray, paper: float) -> bool:
    """Whether the outermost pixels all lie at the border's level: a canvas, not a photo."""
    edge = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    return bool(np.abs(edge - paper).max() <= _FLAT)


def is_dark_on_light(grey: np.ndarray) -> bool:
    """Tell the polarity: does the ink (the far tail from the paper's level) lie below it?"""
    paper = float(fastops.median(border(grey)))
    if min(grey.shape) >= SMALL and not _is_clean(grey, paper):
        # Paper in uneven light: its level here and there, from a median (which, unlike the
        # opening of `background`, favours neither polarity), so that a gradient's or shadow's
        # range does not pass for ink. It decided wrongly for 2 to 7 in 10 faint digits on
        # shaded paper when measured from the border's level (benchmarks/ink.py).
        grey = grey - _paper_level(grey)
        paper = 0.0
    # The most robust tails that decide: 0.5 % of the pixels ignores specks and highlights, but
    # a thin pen line or a small digit on a large page may cover less, down to a few pixels.
    for percent in _POLARITY_TAILS:
        darkest, lightest = fastops.percentiles(grey, [percent, 100 - percent])
        difference = (paper - darkest) - (lightest - paper)
        if abs(difference) > MIN_CONTRAST:
            break
    return bool(difference > 0)


def _paper_level(grey: np.ndarray) -> np.ndarray:
    """Return the paper's level at each pixel: a median over a third of the shorter side.

    Computed on a copy _COARSE pixels high (each pixel the mean of those it covers) and enlarged
    back: thin ink is a minority of every window there, shading is smooth.
    """
    factor = min(grey.shape) / _COARSE
    size = (max(1, round(grey.shape[1] / factor)), max(1, round(grey.shape[0] / factor)))
    coarse = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BOX))
    # Along rows, then along columns: a step stays where it is (as with a square window), in
    # a tenth of the time.
    window = round(_COARSE * BACKGROUND_FRACTION)
    level = ndi.median_filter(coarse, size=(1, window), mode="nearest")
    level = ndi.median_filter(level, size=(window, 1), mode="nearest")
    return np.asarray(Image.fromarray(level).resize(grey.shape[::-1], Image.Resampling.BILINEAR))


def background(work: np.ndarray, window: float) -> np.ndarray | float:
    """Estimate paper (light ink on dark): shading, shadows and page beyond the edge included.

    Returns one level for all (a float) for a clean canvas or an image too small for a local
    estimate, else the level per pixel.
    """
    paper = float(fastops.median(border(work)))
    # A canvas is clean when its outermost pixels are all at the border's level (strokes may
    # reach into the border, seldom to the edge); an opening gives that level everywhere then,
    # unless there is a shadow within or a blob of ink wider than the window.
    if min(work.shape) < SMALL or _is_clean(work, paper):
        return paper
    # A grey opening removes every bright structure narrower than its window (strokes) and keeps
    # wider ones (shadows, gradients, a dark table beyond the page) with their edges sharp.
    size = max(3, round(window))
    return ndi.grey_opening(work, size=(size, size), mode="nearest")


def noise(smooth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's level and spread (a standard deviation) around each pixel of a signal.

    Measured in blocks and enlarged back: what is left of shading, and noise that a shadow
    amplifies (`ink` divides it out), differ across the page.
    """
    block = 2 * max(4, min(smooth.shape) // (2 * _NOISE_BLOCKS))  # even
    rows, cols = smooth.shape[0] // block, smooth.shape[1] // block
    # Every other pixel of every other row: as good a quartile, in a quarter of the time.
    cells = smooth[: rows * block : 2, : cols * block : 2].reshape(rows, block // 2, cols, block // 2)
    cells = cells.transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    # Ink only raises the signal: the spread is measured below the median (median minus lower
    # quartile: 0.6745 standard deviations of Gaussian noise), where ink does not reach.
    quarter, half = cells.shape[-1] // 4, cells.shape[-1] // 2
    parts = np.partition(cells, [quarter, half], axis=-1)
    level = parts[..., half]
    spread = (level - parts[..., quarter]) / 0.6745
    # Blocks whose spread is well above the typical block's hold ink (or an edge) over half of
    # them: they take the figures of the nearest block of paper.
    inky = spread > 2 * np.median(spread)
    if inky.any() and not inky.all():
        nearest = ndi.distance_transform_edt(inky, return_distances=False, return_indices=True)
        level, spread = level[tuple(nearest)], spread[tuple(nearest)]
    level = ndi.median_filter(level, size=3, mode="nearest").astype(np.float32)
    spread = ndi.median_filter(spread, size=3, mode="nearest").astype(np.float32)
    size = smooth.shape[::-1]
    return (np.asarray(Image.fromarray(level).resize(size, Image.Resampling.BILINEAR)),
            np.asarray(Image.fromarray(spread).resize(size, Image.Resampling.BILINEAR)))


def find_lines(confident: np.ndarray) -> list[Line]:
    """Find the lines of ruled or grid paper in confident ink: straight, thin, edge to edge."""
    found: list[Line] = []
    widest = max(3, math.ceil(_LINE_WIDTH * min(confident.shape)))
    for axis in (0, 1):
        mask = confident if axis == 0 else confident.T
        height, width = mask.shape
        # Only pixels in runs across the line's direction no longer than a line is wide vote:
        # a digit's strokes along that direction, and blobs, do not.
        across = ndi.minimum_filter1d(mask.view(np.uint8), widest + 3, axis=0)
        mask = mask & ~ndi.maximum_filter1d(across, widest + 3, axis=0).view(bool)
        if np.count_nonzero(mask.any(axis=0)) < _LINE_SPAN * width:
            continue  # no line crosses enough columns: no need to look for one
        rows, cols = np.nonzero(mask)
        # A Hough transform over the tilts a line can have: each pixel votes, per tilt, for the
        # row it would cross the middle column at; a line is a few rows with votes from nearly
        # every column. Tilts 1.5 px per image width apart and rows counted three together: a
        # line between two tilts still lands in one group.
        step = 1.5 / width
        slopes = np.arange(-_LINE_SLOPE, _LINE_SLOPE + step / 2, step)
        pad = math.ceil(_LINE_SLOPE * width / 2) + 2
        bins = height + 2 * pad
        offsets = np.rint(rows - slopes[:, np.newaxis] * (cols - width / 2)).astype(np.int64) + pad
        flat = (np.arange(len(slopes))[:, np.newaxis] * bins + offsets).ravel()
        counts = np.bincount(flat, minlength=len(slopes) * bins).reshape(len(slopes), bins)
        groups = counts.copy()
        groups[:, 1:] += counts[:, :-1]
        groups[:, :-1] += counts[:, 1:]
        taken = np.zeros(rows.size, bool)
        candidates = np.flatnonzero(groups >= _LINE_SPAN * _LINE_CLIPPED * width)
        along = np.arange(width) - width / 2
        for index in candidates[np.argsort(groups.ravel()[candidates])[::-1]][:_LINE_TRIES]:
            tilt, middle = divmod(int(index), bins)
            # The columns where the line is within the image: a tilted one may leave by a side.
            crossing = np.rint(middle - pad + slopes[tilt] * along)
            length = np.count_nonzero((crossing >= 0) & (crossing < height))
            band = (np.abs(offsets[tilt] - middle) <= 1) & ~taken
            # Votes from nearly every one of those columns, not many from a few (a digit's bar).
            covered = np.count_nonzero(np.bincount(cols[band], minlength=width))
            if length < _LINE_CLIPPED * width or covered < _LINE_SPAN * length:
                continue
            low = high = middle
            while low > 0 and counts[tilt, low - 1] >= _LINE_FILL * width:
                low -= 1
            while high + 1 < bins and counts[tilt, high + 1] >= _LINE_FILL * width:
                high += 1
            if high - low + 1 > widest:
                continue  # a page's edge, a table: wider than any ruling
            taken |= (offsets[tilt] >= low) & (offsets[tilt] <= high)
            found.append((axis, float(slopes[tilt]), low - pad, high - pad))
    return found


def erase_lines(image: np.ndarray, lines: list[Line]) -> np.ndarray:
    """Fill each line across its width with the lesser of the pixels on either side of it.

    Paper on both sides gives paper; a stroke crossing the line, ink on both sides, stays whole.
    """
    image = image.copy()
    for axis, slope, low, high in lines:
        view = image if axis == 0 else image.T
        height, width = view.shape
        cols = np.arange(width)
        shift = slope * (cols - width / 2)
        before = np.floor(low + shift).astype(np.int64) - 2  # a pixel of margin for blur
        after = np.ceil(high + shift).astype(np.int64) + 2
        above = view[np.clip(before, 0, height - 1), cols]
        below = view[np.clip(after, 0, height - 1), cols]
        fill = np.where(before < 0, below, np.where(after >= height, above, np.minimum(above, below)))
        for step in range(1, int((after - before).max())):
            row = before + step
            inside = (row < after) & (row >= 0) & (row < height)
            view[row[inside], cols[inside]] = fill[inside]
    return image


def shading(
    work: np.ndarray, level: np.ndarray, strokes: np.ndarray, count: int, labels: list[int]
) -> set[int]:
    """Return the labels of pieces that the paper's level does not surround: shading left over.

    The opening of `background` cuts off a shadow's corners narrower than its window: the corner
    stays in the signal with the shadow's level estimated right beside it, on the cut side. Ink
    stands above the paper's level on every side: a piece is ink when, for most pixels 2 px
    around it, it rises from the level there by at least half its rise from the level under it,
    and stands no lower than that pixel itself. The level knows no ink and no blur, so neither changes
    the first test; the second catches a corner the level follows only part of the way, which
    the shadow beyond it matches (in benchmarks/ink.py, a shadow's edge meeting the page's: 1 of
    200 blank pages found ink before it, 10 of 1,100 in --big before and 5 after, for 2 of 1,440
    readable pages). Beyond the image's border there is no paper: a piece the border cuts is not
    surrounded there.

    Args:
        work: grey levels, light ink on dark; level: `background` of it, per pixel.
        strokes: labels of the pieces (0 for paper), count of them; labels: those to test.
    """
    # In the pieces' box widened by the ring (and padded where that passes the border).
    top, left, bottom, right = fastops.mask_box(fastops.labels_mask(strokes, labels))
    top, left = top - 2, left - 2
    box = strokes[max(top, 0) : bottom + 2, max(left, 0) : right + 2]
    pad = ((max(-top, 0), max(bottom + 2 - strokes.shape[0], 0)),
           (max(-left, 0), max(right + 2 - strokes.shape[1], 0)))
    squared, rows, cols = fastops.feature_transform(np.pad(box == 0, pad, constant_values=True))
    ring = (squared >= 2) & (squared <= 4)
    near_rows, near_cols = rows[ring] + top, cols[ring] + left
    ring_rows, ring_cols = (index + offset for index, offset in zip(np.nonzero(ring), (top, left)))
    height, width = work.shape
    inside = (ring_rows >= 0) & (ring_rows < height) & (ring_cols >= 0) & (ring_cols < width)
    rows, cols = np.clip(ring_rows, 0, height - 1), np.clip(ring_cols, 0, width - 1)
    beside = level[rows, cols]
    piece = work[near_rows, near_cols]
    surrounded = inside & (piece - beside >= 0.5 * (piece - level[near_rows, near_cols])) & (work[rows, cols] <= piece)
    owners = strokes[near_rows, near_cols]
    total = np.bincount(owners, minlength=count + 1)
    paper = np.bincount(owners, weights=surrounded & np.isin(owners, labels), minlength=count + 1)
    return {label for label in labels if paper[label] < _SURROUNDED * total[label]}
