"""Example images to try mnistlab on at once: digits written by pen paths in code, put on paper.

    mnistlab samples samples/ && mnistlab predict samples/ && mnistlab read samples/numbers/number-2024.png

Each sample is a digit (or a number) drawn along strokes defined below, on the kinds of paper
users bring: a phone photo of a pencil digit on shaded paper, a pen digit on ruled paper, the
drawing page's canvas and its negative, and a number written in one line. They are made here,
not read or downloaded: no data set is needed, they come out the same on every machine (seeded
noise), and `mnistlab samples` works offline before anything else has been fetched. The files
carry their label in their names, and labels.csv lists the single digits (`file,label`, as
`folders` reads it) so `mnistlab report RUN --folders DIR` scores them. The shipped reader reads
every one right (tests/test_samples.py).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mnistlab.data.folders import LABELS_FILE
from mnistlab.data.mnist import DataError
from mnistlab.files import atomic_write

# Pen paths: each digit is strokes through points in a box 1 high (x right, y down, the width
# about 0.7), drawn through smoothly (Catmull-Rom). A corner is where one stroke ends and the
# next begins.
Stroke = tuple[tuple[float, float], ...]
DIGIT_STROKES: dict[str, tuple[Stroke, ...]] = {
    "0": (((0.50, 0.02), (0.26, 0.14), (0.15, 0.45), (0.22, 0.82), (0.45, 0.99), (0.68, 0.90),
           (0.80, 0.58), (0.76, 0.22), (0.58, 0.03), (0.44, 0.04)),),
    "1": (((0.36, 0.18), (0.58, 0.0)), ((0.58, 0.0), (0.55, 0.5), (0.52, 1.0))),
    "2": (((0.16, 0.24), (0.30, 0.06), (0.52, 0.0), (0.74, 0.10), (0.78, 0.32), (0.62, 0.56),
           (0.38, 0.78), (0.14, 0.99)), ((0.14, 0.99), (0.50, 0.97), (0.88, 0.98))),
    "3": (((0.18, 0.12), (0.42, 0.0), (0.68, 0.06), (0.74, 0.26), (0.56, 0.43), (0.40, 0.47)),
          ((0.52, 0.45), (0.76, 0.58), (0.80, 0.80), (0.58, 0.98), (0.30, 0.98), (0.12, 0.86))),
    "4": (((0.60, 0.0), (0.08, 0.66)), ((0.08, 0.66), (0.50, 0.66), (0.90, 0.64)),
          ((0.68, 0.28), (0.67, 0.62), (0.65, 1.0))),
    "5": (((0.80, 0.02), (0.28, 0.04)), ((0.28, 0.04), (0.22, 0.46)),
          ((0.22, 0.46), (0.46, 0.38), (0.72, 0.46), (0.80, 0.70), (0.66, 0.93), (0.40, 1.0), (0.14, 0.90))),
    "6": (((0.72, 0.02), (0.46, 0.14), (0.26, 0.44), (0.20, 0.74), (0.34, 0.98), (0.62, 0.98),
           (0.78, 0.78), (0.70, 0.55), (0.45, 0.50), (0.24, 0.62)),),
    "7": (((0.10, 0.04), (0.50, 0.03), (0.88, 0.04)), ((0.88, 0.04), (0.62, 0.46), (0.44, 1.0))),
    "8": (((0.70, 0.12), (0.50, 0.0), (0.28, 0.10), (0.30, 0.32), (0.50, 0.47), (0.74, 0.62),
           (0.78, 0.85), (0.55, 1.0), (0.26, 0.90), (0.22, 0.68), (0.44, 0.50), (0.68, 0.32), (0.72, 0.14)),),
    "9": (((0.76, 0.22), (0.56, 0.03), (0.30, 0.07), (0.22, 0.28), (0.38, 0.45), (0.62, 0.40),
           (0.76, 0.22)), ((0.76, 0.22), (0.73, 0.60), (0.68, 1.0))),
}

_SUPERSAMPLE = 4  # strokes are stamped at 4x and averaged down: anti-aliased edges


@dataclass(frozen=True)
class Sample:
    """One example image: where it goes in the folder, what is written in it, and how it looks."""

    file: str  # relative to the samples folder
    label: str  # the digit, or the number, written in it
    about: str  # one line for people
    draw: Callable[[], bytes]  # the encoded file


def _smooth(points: Stroke, step: float) -> np.ndarray:
    """Points along a Catmull-Rom spline through `points`, about `step` apart."""
    p = np.asarray(points, np.float64)
    if len(p) == 2:
        count = max(2, math.ceil(np.linalg.norm(p[1] - p[0]) / step) + 1)
        return p[0] + np.linspace(0, 1, count)[:, None] * (p[1] - p[0])
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = [p[:1]]
    for k in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[k - 1 : k + 3]
        count = max(2, math.ceil(np.linalg.norm(p2 - p1) / step) + 1)
        t = np.linspace(0, 1, count)[1:, None]
        out.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                          + (3 * p1 - p0 - 3 * p2 + p3) * t**3))
    return np.vstack(out)


def stroke_coverage(
    text: str,
    size: tuple[int, int],
    height: float,
    width: float,
    *,
    origin: tuple[float, float] | None = None,
    slant: float = 0.15,
    gap: float = 0.3,
    seed: int = 0,
) -> np.ndarray:
    """Ink coverage in [0, 1] of `text` (digits) written along DIGIT_STROKES, anti-aliased.

    Args:
        size: (width, height) of the image in pixels.
        height: of each digit, in pixels; width: of the pen's line, in pixels.
        origin: (x, y) of the first digit's top left; None centres the text.
        slant: how far right the top leans, per unit of height.
        gap: between digits, a fraction of the height.
        seed: the hand's small wobble (each digit a little higher or lower, larger or smaller).
    """
    rng = np.random.default_rng(seed)
    advance = [0.0]
    for _ in text[1:]:
        advance.append(advance[-1] + (0.75 + gap) * height)
    span = advance[-1] + 0.9 * height
    if origin is None:
        origin = ((size[0] - span) / 2, (size[1] - height) / 2)
    big = Image.new("L", (size[0] * _SUPERSAMPLE, size[1] * _SUPERSAMPLE), 0)
    pen = ImageDraw.Draw(big)
    radius = width * _SUPERSAMPLE / 2
    for digit, dx in zip(text, advance, strict=True):
        grow = 1 + (rng.uniform(-0.05, 0.05) if len(text) > 1 else 0)
        dy = rng.uniform(-0.04, 0.04) * height if len(text) > 1 else 0
        for stroke in DIGIT_STROKES[digit]:
            path = _smooth(stroke, 0.01)
            x = origin[0] + dx + (path[:, 0] + slant * (1 - path[:, 1])) * height * grow
            y = origin[1] + dy + path[:, 1] * height * grow
            # Discs stamped evenly along the path, a fifth of their radius apart: round caps and joins.
            travelled = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))]) * _SUPERSAMPLE
            along = np.linspace(0, travelled[-1], max(2, math.ceil(travelled[-1] / max(radius / 5, 0.5))))
            for cx, cy in zip(np.interp(along, travelled, x) * _SUPERSAMPLE,
                              np.interp(along, travelled, y) * _SUPERSAMPLE, strict=True):
                pen.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    small = big.resize(size, Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255


def _grain(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Smooth random texture in [0, 1], features about `sigma` pixels across."""
    noise = Image.fromarray(np.uint8(rng.uniform(0, 255, shape)))
    blurred = np.asarray(noise.filter(ImageFilter.GaussianBlur(sigma)), np.float32)
    low, high = blurred.min(), blurred.max()
    return (blurred - low) / max(high - low, 1e-6)


def _encode(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    image = Image.fromarray(np.uint8(np.clip(np.rint(pixels), 0, 255)))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(digit: str, seed: int = 7) -> bytes:
    """A phone photo (JPEG, 360x480) of a pencil digit on paper in uneven light: the light falls
    off across the page, a soft shadow lies over one corner, and the sensor adds noise."""
    rng = np.random.default_rng(seed)
    width, height = 360, 480
    ink = stroke_coverage(digit, (width, height), 230, 9, slant=0.12, seed=seed)
    ink *= 0.75 + 0.25 * _grain((height, width), rng, 1.0)  # graphite leaves the paper's grain
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.22 * (cols / width) - 0.12 * (rows / height)
    shadow = np.clip(((cols - 0.95 * width) ** 2 + (rows - 1.05 * height) ** 2) ** 0.5 / (0.55 * height), 0, 1)
    light *= 0.72 + 0.28 * shadow**2
    paper = np.array([238, 232, 220], np.float32) * (0.97 + 0.03 * _grain((height, width), rng, 3.0))[..., None]
    graphite = np.array([92, 92, 98], np.float32)
    seen = (paper * (1 - ink[..., None]) + graphite * ink[..., None]) * light[..., None]
    seen += rng.normal(0, 2.5, seen.shape)
    return _encode(seen, "JPEG", quality=88)


def ruled(digit: str, seed: int = 3) -> bytes:
    """A pen digit on ruled paper, as a scanner sees it (PNG, 320x320): blue rulings it crosses
    and a red margin."""
    size = 320
    page = np.empty((size, size, 3), np.float32)
    page[:] = (250, 250, 245)
    for y in range(28, size, 44):  # rulings 44 px apart, 2 px wide
        page[y : y + 2] = (160, 190, 225)
    page[:, 40:42] = (225, 140, 140)
    ink = stroke_coverage(digit, (size, size), 150, 5, origin=(115, 80), slant=0.1, seed=seed)
    pen = np.array([25, 35, 110], np.float32)
    seen = page * (1 - ink[..., None]) + pen * ink[..., None]
    return _encode(seen, "PNG", optimize=True)


# The drawing page's canvas (serve/static/app.js): 280 px, a round pen 0.08 of it wide, a digit
# spanning about 70 % of it.
_CANVAS = 280
_CANVAS_PEN = 0.08 * _CANVAS


def drawing(digit: str, negative: bool = False) -> bytes:
    """A digit drawn on the drawing page's canvas (PNG): black on white, or white on black."""
    ink = stroke_coverage(digit, (_CANVAS, _CANVAS), 0.7 * _CANVAS, _CANVAS_PEN, slant=0.1)
    return _encode(255 * (ink if negative else 1 - ink), "PNG", optimize=True)


def number(text: str, seed: int = 11) -> bytes:
    """A number written in one line with a dark pen on light paper (PNG, 200 high; 560 wide for
    four digits, 125 more for each more)."""
    ink = stroke_coverage(text, (60 + 125 * len(text), 200), 110, 7, gap=0.3, slant=0.12, seed=seed)
    return _encode(245 - 215 * ink, "PNG", optimize=True)


SAMPLES = (
    Sample("photo-7.jpg", "7", "a pencil 7, photographed on paper in uneven light", lambda: photo("7")),
    Sample("ruled-3.png", "3", "a pen 3 on ruled paper, crossing a ruling", lambda: ruled("3")),
    Sample("drawing-5.png", "5", "a 5 as drawn on `mnistlab serve`'s page: black on white", lambda: drawing("5")),
    Sample("drawing-8.png", "8", "an 8 drawn white on black, as MNIST's own digits are",
           lambda: drawing("8", negative=True)),
    Sample("numbers/number-2024.png", "2024", "a number in one line, for `mnistlab read`", lambda: number("2024")),
)


def labels_table(samples: tuple[Sample, ...] = SAMPLES) -> str:
    """labels.csv for the single digits among `samples` (a number is not one label 0-9)."""
    rows = [f"{s.file},{s.label}" for s in samples if len(s.label) == 1 and "/" not in s.file]
    return "file,label\n" + "".join(f"{row}\n" for row in rows)


def write_samples(folder: str | Path) -> list[Path]:
    """Write every sample and labels.csv into `folder` (made if missing), atomically.

    Only the samples' own names are written; other files in the folder are left alone, and a
    labels.csv that is not the samples' own is refused rather than replaced.

    Returns:
        The files written, labels.csv last.

    Raises:
        DataError: `folder` (or a folder a sample goes in) is a file or cannot be made, or
            holds another labels.csv.
    """
    root = Path(folder)
    table = labels_table()
    labels = root / LABELS_FILE
    _make_folder(root)
    if labels.is_dir() or (labels.exists() and _read_text(labels) != table):
        raise DataError(f"{labels} is already there and is not the samples' own; write the samples into "
                        "another folder (a new one is made).")
    written = []
    for sample in SAMPLES:
        dest = root / sample.file
        _make_folder(dest.parent)
        if dest.is_dir():
            raise DataError(f"cannot write sample {dest}: a folder of that name is in the way.")
        data = sample.draw()
        try:
            atomic_write(dest, lambda out, data=data: out.write(data))
        except OSError as e:
            raise DataError(f"cannot write sample {dest}: {e.strerror or e}.") from None
        written.append(dest)
    try:
        atomic_write(labels, lambda out: out.write(table.encode("utf-8")))
    except OSError as e:
        raise DataError(f"cannot write {labels}: {e.strerror or e}.") from None
    return [*written, labels]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _make_folder(folder: Path) -> None:
    """mkdir -p, with one sentence naming the file in the way when there is one."""
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            raise DataError(f"cannot write the samples into {folder}: {path} is a file, not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot write the samples into {folder}: {e.strerror or e}.") from None
