"""Ways of writing a digit that MNIST's writers (American census staff and students) seldom use,
made from MNIST's own digits, for training a reader of everybody's handwriting.

    mnistlab train --model cnn --writing-variants flagged-ones

"flagged-ones": the 1 most of continental Europe, Latin America and much of Asia writes, a
vertical stroke with a long up-stroke (the flag) from its top down to the left. MNIST's 1s are
almost all a bare stroke, so a model trained on it reads a flagged 1 as a 7, and sure of it: the
two errors the first shipped reader made on benchmarks/realworld.py's 327 images were such 1s,
read as 7 at 86 % and 92 %. Each variant copies a share of the training digits of one class and
draws the missing stroke on the copy, in the digit's own stroke width and ink.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mnistlab.data.mnist import DataError

# Copies made of each training digit's class, as a share of that class: enough that the variant
# is common (a third of the 1s a model sees), not so many that the bare 1 looks rare.
VARIANT_SHARE = 0.5


def _segment_distance(rows: np.ndarray, cols: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre (rows, cols) to the segment start-end, in pixels."""
    d = end - start
    t = np.clip(((rows - start[0]) * d[0] + (cols - start[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(rows - (start[0] + t * d[0]), cols - (start[1] + t * d[1]))


def draw_stroke(image: np.ndarray, start: np.ndarray, end: np.ndarray, width: float, ink: float) -> np.ndarray:
    """`image` (H, W uint8, bright ink on black) with a straight stroke from `start` to `end`
    ((row, col) in pixels, the image's corner at (0, 0)), `width` pixels wide, anti-aliased over
    one pixel, drawn at grey level `ink` where it is brighter than what is there."""
    # Pixel (r, c) covers r..r+1 and c..c+1: its centre is half a pixel in.
    rows, cols = np.indices(image.shape, dtype=np.float32) + 0.5
    coverage = np.clip(width / 2 + 0.5 - _segment_distance(rows, cols, start, end), 0.0, 1.0)
    return np.maximum(image, np.rint(coverage * ink)).astype(np.uint8)


def _stroke_width(image: np.ndarray, height: float) -> float:
    """A bare 1 is one stroke: its ink area over its height is the stroke's width (1.5-4 px)."""
    return float(np.clip((image > 127).sum() / max(height, 1), 1.5, 4.0))


# The steepest lean, from upright, of a 1 that is given a flag: on a 1 leaning further, any
# flag turns into a 7's bar, and a writer who leans that far crosses the 7 instead.
MAX_LEAN_DEGREES = 20


def flag_one(image: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A 1 given the flag of the continental 1: from the top of its stroke, down to the left at
    35-60 degrees from the stroke and at least 25 degrees below the horizontal, a quarter to
    nearly half of the digit's height long; None for a 1 too small or leaning too far to take one.

    A 7's bar is longer, and meets its stem at 60-80 degrees; the flag stays short of both.
    """
    rows, cols = np.nonzero(image > 127)
    if len(rows) < 8:  # too little of a digit to find its stroke
        return None
    points = np.stack([rows, cols], axis=1).astype(np.float32) + 0.5
    centred = points - points.mean(axis=0)
    down = np.linalg.eigh(centred.T @ centred)[1][:, -1]  # the stroke's direction (principal axis)
    down = down if down[0] > 0 else -down
    lean = np.degrees(np.arctan2(-down[1], down[0]))  # > 0: the top leans right, as most 1s do
    if abs(lean) > MAX_LEAN_DEGREES:
        return None
    along = centred @ down
    height = float(along.max() - along.min())
    start = points[along <= along.min() + 1.5].mean(axis=0)  # the top of the stroke
    phi = np.deg2rad(rng.uniform(35, min(60.0, 65.0 - lean)))  # from the stroke; 65 - lean from upright
    flag = np.array([down[0] * np.cos(phi) + down[1] * np.sin(phi), -down[0] * np.sin(phi) + down[1] * np.cos(phi)])
    end = start + rng.uniform(0.25, 0.45) * height * flag
    ink = float(np.percentile(image[image > 127], 90))
    return draw_stroke(image, start, end, _stroke_width(image, height), ink)


# name -> (the class it rewrites, the function that rewrites one digit)
WRITING_VARIANTS: dict[str, tuple[int, Callable[[np.ndarray, np.random.Generator], np.ndarray | None]]] = {
    "flagged-ones": (1, flag_one),
}


def writing_variants(
    x: np.ndarray, y: np.ndarray, names: tuple[str, ...], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """New training digits: for each variant in `names`, VARIANT_SHARE of the digits of its
    class in (x, y), drawn with `seed`, rewritten into that variant (those that can be).

    Returns:
        (images, labels), uint8 (N, 28, 28) and y's dtype; empty when `names` is.

    Raises:
        DataError: a name that is not in WRITING_VARIANTS.
    """
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for name in names:
        if name not in WRITING_VARIANTS:
            raise DataError(f"unknown writing variant {name!r}; choose from {', '.join(WRITING_VARIANTS)}.")
        label, rewrite = WRITING_VARIANTS[name]
        chosen = np.flatnonzero(y == label)
        chosen = rng.choice(chosen, int(len(chosen) * VARIANT_SHARE), replace=False) if len(chosen) else chosen
        made = [image for image in (rewrite(x[i], rng) for i in chosen) if image is not None]
        images += made
        labels += [label] * len(made)
    if not images:
        return np.zeros((0, *x.shape[1:]), np.uint8), np.zeros(0, y.dtype)
    return np.stack(images), np.asarray(labels, y.dtype)
