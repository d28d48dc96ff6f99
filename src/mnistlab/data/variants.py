"""Ways of writing a digit that MNIST's writers (American census staff and students) seldom use,
made from MNIST's own digits, for training a reader of everybody's handwriting.

    mnistlab train --model cnn --writing-variants flagged-ones

"flagged-ones": the 1 most of continental Europe, Latin America and much of Asia writes, a
vertical stroke with a long up-stroke (the flag) from its top down to the left. MNIST's 1s are
almost all a bare stroke, so a model trained on it reads a flagged 1 as a 7, and sure of it: the
two errors the first shipped reader made on benchmarks/realworld.py's 327 images were such 1s,
read as 7 at 86 % and 92 %.

"hooked-ends": the curl a ballpoint or fine pen leaves where it lands or lifts, at the ends of a
2 or a 6, turned toward the digit's middle. MNIST's digits, written in pencil on forms and
smoothed to 20 px, seldom keep one; at 28x28 a curl at the top of a 6 closes into a small loop,
and the shipped reader read such a 6 (a fine-pen photo in realworld2) as an 8, 99 % sure. Other
digits are left alone: a curl at the top of a 1, 4, 7 or 9 makes a 9's loop, and one at an end
of a 3 or 5 closes its bowl into an 8's, 9's or 6's (0 and 8 seldom have an end).

Each variant copies a share of the training digits of its classes and draws the missing stroke
on the copy, in the digit's own stroke width and ink.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mnistlab.data.images import normalise_digit
from mnistlab.data.mnist import DataError

# Copies made of a flagged variant's class, as a share of that class: enough that the variant
# is common (a third of the 1s a model sees), not so many that the bare 1 looks rare.
VARIANT_SHARE = 0.5
# Copies given a hooked end, as a share of each class it applies to: a habit of some pens and
# writers, not a way of writing the digit, so it stays the exception.
HOOK_SHARE = 0.25
HOOKED_DIGITS = (2, 6)


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


def thin(mask: np.ndarray) -> np.ndarray:
    """The one-pixel-wide skeleton of a binary mask (H, W), by Zhang and Suen's thinning
    (CACM 27(3), 1984): peel removable border pixels, from the south-east then the north-west,
    until none is left."""
    skeleton = np.pad(mask.astype(bool), 1)
    while True:
        changed = False
        for first in (True, False):
            p = skeleton
            # The 8 neighbours clockwise from north: P2..P9 in the paper.
            n = [np.roll(p, shift, axis=(0, 1)) for shift in
                 ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))]
            count = sum(x.astype(np.uint8) for x in n)
            # 0 -> 1 transitions around the ring: a pixel on a single border run has exactly one.
            runs = sum((~n[i] & n[(i + 1) % 8]).astype(np.uint8) for i in range(8))
            if first:
                keep_open = ~(n[0] & n[2] & n[4]) & ~(n[2] & n[4] & n[6])
            else:
                keep_open = ~(n[0] & n[2] & n[6]) & ~(n[0] & n[4] & n[6])
            remove = p & (count >= 2) & (count <= 6) & (runs == 1) & keep_open
            if remove.any():
                skeleton = p & ~remove
                changed = True
        if not changed:
            return skeleton[1:-1, 1:-1]


_NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def _neighbours(skeleton: np.ndarray, here: tuple[int, int]) -> list[tuple[int, int]]:
    rows, cols = skeleton.shape
    return [(here[0] + dr, here[1] + dc) for dr, dc in _NEIGHBOURS
            if 0 <= here[0] + dr < rows and 0 <= here[1] + dc < cols and skeleton[here[0] + dr, here[1] + dc]]


def _unstair(skeleton: np.ndarray) -> np.ndarray:
    """The skeleton without the corner pixels of its staircases: a pixel whose only two
    neighbours touch each other (one above or below it, one beside it) joins nothing they do not."""
    skeleton = skeleton.copy()
    for r, c in np.argwhere(skeleton):
        near = _neighbours(skeleton, (int(r), int(c)))
        if len(near) == 2 and max(abs(near[0][0] - near[1][0]), abs(near[0][1] - near[1][1])) == 1:
            skeleton[r, c] = False
    return skeleton


def stroke_ends(skeleton: np.ndarray, back: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ends of a skeleton's (H, W bool) strokes: each as (point, direction), the point the end
    pixel's centre (row, col) and the direction the stroke runs out of it, from the pixel `back`
    steps along the stroke."""
    skeleton = _unstair(skeleton)
    ends = []
    for r, c in np.argwhere(skeleton):
        path = [(int(r), int(c))]
        ahead = _neighbours(skeleton, path[0])
        if len(ahead) != 1:
            continue  # inside a stroke, at a fork, or a dot
        while len(path) < back + 1 and len(ahead) == 1:  # none or more: the stroke ends or forks
            path.append(ahead[0])
            ahead = [pixel for pixel in _neighbours(skeleton, ahead[0]) if pixel not in path]
        if len(path) < back + 1:
            continue  # a spur of thinning, not a stroke
        direction = np.subtract(path[0], path[-1]).astype(np.float32)
        ends.append((np.array(path[0], np.float32) + 0.5, direction / np.linalg.norm(direction)))
    return ends


def hook_end(image: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The digit with a pen's hook at one of its stroke ends: the stroke runs on, turns 90-200
    degrees toward the digit's middle on a radius of 1-2.5 px, and may run on up to 4 px; then
    the digit is boxed, scaled and centred again, as the preprocessing would have had it. None
    for a digit without a stroke end."""
    mask = image > 127
    skeleton = thin(mask)
    ends = stroke_ends(skeleton)
    if not ends:
        return None
    point, heading = ends[rng.integers(len(ends))]
    width = float(np.clip(mask.sum() / skeleton.sum(), 1.5, 4.0))  # ink area over stroke length
    # The curl turns toward the digit's middle (its centre of mass): turned away, it is a flick
    # that makes other shapes (a 6's top flicked left reads as a 2).
    rows, cols = np.nonzero(mask)
    toward = np.array([rows.mean() + 0.5, cols.mean() + 0.5]) - point
    side = 1.0 if heading[0] * toward[1] - heading[1] * toward[0] >= 0 else -1.0
    radius, turn = rng.uniform(1.0, 2.5), np.deg2rad(rng.uniform(90, 200)) * side
    step = 0.5  # px along the pen's path
    points = [point]
    for i in range(int(abs(turn) * radius / step) + int(rng.uniform(0, 4) / step)):
        if i * step < abs(turn) * radius:  # on the curl, then straight on
            angle = side * step / radius  # a turn of the (row, col) heading
            heading = np.array([heading[0] * np.cos(angle) - heading[1] * np.sin(angle),
                                heading[0] * np.sin(angle) + heading[1] * np.cos(angle)], np.float32)
        points.append(points[-1] + step * heading)
    margin = 8  # room for the hook past the digit's box (4 px from the image's edge)
    path = np.array(points) + margin
    ink = float(np.percentile(image[mask], 90))
    out = np.pad(image, margin)
    for start, end in zip(path[:-1], path[1:], strict=True):
        out = draw_stroke(out, start, end, width, ink)
    return normalise_digit(out)


# name -> (the classes it rewrites, the share of each it copies, the function that rewrites one digit)
WRITING_VARIANTS: dict[str, tuple[tuple[int, ...], float,
                                   Callable[[np.ndarray, np.random.Generator], np.ndarray | None]]] = {
    "flagged-ones": ((1,), VARIANT_SHARE, flag_one),
    "hooked-ends": (HOOKED_DIGITS, HOOK_SHARE, hook_end),
}


def writing_variants(
    x: np.ndarray, y: np.ndarray, names: tuple[str, ...], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """New training digits: for each variant in `names`, its share of the digits of each of its
    classes in (x, y), drawn with `seed`, rewritten into that variant (those that can be).

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
        classes, share, rewrite = WRITING_VARIANTS[name]
        for label in classes:
            chosen = np.flatnonzero(y == label)
            chosen = rng.choice(chosen, int(len(chosen) * share), replace=False) if len(chosen) else chosen
            made = [image for image in (rewrite(x[i], rng) for i in chosen) if image is not None]
            images += made
            labels += [label] * len(made)
    if not images:
        return np.zeros((0, *x.shape[1:]), np.uint8), np.zeros(0, y.dtype)
    return np.stack(images), np.asarray(labels, y.dtype)
