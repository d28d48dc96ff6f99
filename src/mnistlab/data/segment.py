"""A number written in one image to its digits, left to right, each MNIST-normalised.

    python -c "from mnistlab.data import segment_digits; print(len(segment_digits('42.png')))"

The ink is found as for one digit (`ink`); its components are then grouped into digits (a 5's
detached bar, a 1 the pen broke), groups too wide for one digit are cut where the least ink
crosses, and each digit goes through the same rendering as `prepare_image` (`images`).
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np

from mnistlab.data import fastops
from mnistlab.data.decode import as_grey
from mnistlab.data.images import Prepared, render_digit
from mnistlab.data.ink import Ink, find_ink

# A group wider than this times the median digit height holds several digits, each about
# _DIGIT_ASPECT times as wide as high (MNIST's median box is 15x20).
_WIDE = 1.2
_DIGIT_ASPECT = 0.75
# ... unless a part would be less than this fraction of the group's height (a 2's long tail).
_PART_HEIGHT = 0.65
# A piece under this fraction of a digit's area is part of the digit whose columns it overlaps
# or nearly touches (a 5's bar, a 2's detached tail), as is a piece stacked above or below it (a
# broken 1). Nearly: a gap under this fraction of the digit's height.
_MINOR = 0.2
_NEAR_GAP = 0.1


def segment_digits(source: str | os.PathLike | bytes | np.ndarray) -> list[Prepared]:
    """The digits of a multi-digit number written in one image, left to right.

    Each is MNIST-normalised as by prepare_image, with its box in the decoded image. Pieces
    overlapping in x are one digit (a 5's detached bar); a piece too wide for one digit is cut
    into 2 or 3 where the least ink crosses. An image without ink gives [].

    Raises:
        ImageError: as prepare_image.
    """
    ink = find_ink(as_grey(source))
    if ink is None:
        return []
    parts = _split_wide(ink, _group_pieces(ink))
    digits = [render_digit(ink, part) for part in parts]
    return sorted(digits, key=lambda digit: (digit.box[1], digit.box[3]))


def _group_pieces(ink: Ink) -> list[list[int]]:
    """Group the components that make one digit: a 5's bar, a 7's crossbar, a 1 the pen broke.

    Largest first, each piece joins the group whose columns it overlaps most, if that overlap
    is half the narrower of the two; or if their columns overlap or nearly touch and the piece is
    minor (under _MINOR of the group's area or half its height) or stacked above or below it (no
    rows in common). Digits side by side share rows, and columns only at their edges.
    """
    groups: list[tuple[list[int], tuple[int, int, int, int], int]] = []
    for label in sorted(ink.kept, key=lambda label: -ink.areas[label]):
        top, left, bottom, right = ink.boxes[label]
        best, best_overlap = None, -math.inf
        for index, (_, group_box, group_area) in enumerate(groups):
            group_height = group_box[2] - group_box[0]
            overlap = min(right, group_box[3]) - max(left, group_box[1])  # < 0: a gap
            narrower = min(right - left, group_box[3] - group_box[1])
            shared_rows = min(bottom, group_box[2]) - max(top, group_box[0])
            minor = ink.areas[label] < _MINOR * group_area or bottom - top < group_height / 2
            near = overlap >= -_NEAR_GAP * group_height
            joins = overlap >= narrower / 2 or (near and (minor or shared_rows <= 0))
            if joins and overlap / narrower > best_overlap:
                best, best_overlap = index, overlap / narrower
        if best is None:
            groups.append(([label], ink.boxes[label], ink.areas[label]))
        else:
            labels, group_box, group_area = groups[best]
            groups[best] = (
                labels + [label],
                fastops.union_box(group_box, ink.boxes[label]),
                group_area + ink.areas[label],
            )
    return [labels for labels, _, _ in groups]


def _split_wide(ink: Ink, groups: list[list[int]]) -> list[np.ndarray]:
    """Return one pixel mask per digit, cutting groups too wide for one digit into 2 or 3."""
    masks = [np.isin(ink.owner, labels) for labels in groups]
    boxes = [fastops.mask_box(mask) for mask in masks]
    digit_height = float(np.median([box[2] - box[0] for box in boxes]))
    parts = []
    for mask, box in zip(masks, boxes):
        width = box[3] - box[1]
        count = round(width / (_DIGIT_ASPECT * digit_height)) if width > _WIDE * digit_height else 1
        # Fewer cuts when a part would be flat: that is a long tail or bar, not a digit.
        for tries in range(min(count, 3), 1, -1):
            pieces = _cut(ink, mask, box, tries)
            heights = [piece_box[2] - piece_box[0] for piece_box in map(fastops.mask_box, pieces)]
            if len(pieces) == tries and min(heights) >= _PART_HEIGHT * (box[2] - box[0]):
                parts.extend(pieces)
                break
        else:
            parts.append(mask)
    return parts


def _cut(ink: Ink, mask: np.ndarray, box: tuple[int, int, int, int], count: int) -> list[np.ndarray]:
    """Cut a group's pixels into `count` column ranges where the fewest ink pixels cross."""
    _, left, _, right = box
    width = right - left
    confident = mask & (ink.strokes > 0)
    profile = confident[:, left:right].sum(axis=0)
    cuts = [left]
    for k in range(1, count):
        # Within a quarter digit of the even split; among equal columns, the nearest to it.
        expected = k * width / count
        reach = max(1, round(width / count / 4))
        low, high = max(1, round(expected) - reach), min(width - 1, round(expected) + reach)
        window = np.arange(low, high + 1)
        cuts.append(left + int(window[np.lexsort((np.abs(window - expected), profile[window]))[0]]))
    cuts.append(right)
    pieces = []
    for start, stop in itertools.pairwise(cuts):
        piece = np.zeros_like(mask)
        piece[:, start:stop] = mask[:, start:stop]
        if (piece & confident).any():
            pieces.append(piece)
    return pieces
