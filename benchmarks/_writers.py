"""Simulated writers for the "teach it my handwriting" benchmark: digits drawn as the server's page
draws them, in named personal styles that the base models misread, and one ordinary style.

    python benchmarks/_writers.py [RUN ...] [--n 20] [--seed 1000] [--sheet writers.png]

A writer holds, for every digit, one or more stroke templates: pen paths in a unit box (x right,
y down, the digit 1 tall). A sample jitters the template's control points (no one draws a digit
the same way twice), then slants, scales, stretches, turns and places it at random, all from one
seeded generator, and draws it the way src/mnistlab/serve/static/app.js does: black, round-capped,
round-joined strokes on a white 280x280 canvas. The main prints each writer's per-digit accuracy
for the shipped reader and every RUN given (a run folder), ends with one JSON line of the figures,
and saves a contact sheet for a person to check that every digit stays legible (about 10 s on 2
cores). The styles were tuned on seed 0; on seed 1000, 20 drawings per digit, the shipped reader
reads ordinary 100 %, continental 70 %, digital 68.5 %, cursive 75 %, and a `fast` run 98 %,
67 %, 61 %, 64.5 %.
"""

from __future__ import annotations

import argparse
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import header
from PIL import Image, ImageDraw

from mnistlab.predict import load_predictor, model_name

Point = tuple[float, float]
Template = list[list[Point]]  # strokes; a control point written twice in a row is a sharp corner

SIZE = 280  # the page's canvas, px (app.js SIZE)
WIDTH = (0.06, 0.10)  # stroke width, share of SIZE; the page draws 0.08 (app.js STROKE)
HEIGHT = (0.50, 0.75)  # the digit's height, share of SIZE
SLANT = (-0.10, 0.30)  # shear: x moves right by slant times the height above the centre
ASPECT = (0.85, 1.15)  # width multiplier
TURN = 8.0  # rotation, degrees either way
JITTER = 0.025  # standard deviation of each control point's displacement, template units
SHIFT = 0.12  # the largest offset of the digit's centre from the canvas's, share of SIZE
SUPERSAMPLE = 4  # drawn this many times larger, then averaged down: smooth edges


@dataclass(frozen=True)
class Writer:
    """A named handwriting style: digit -> the templates it is drawn from (one chosen per sample)."""

    name: str
    description: str
    templates: dict[int, list[Template]]


@dataclass(frozen=True)
class Drawing:
    """One drawn digit: its strokes in canvas pixels (as pointer events would give them) and the
    canvas as a PNG of the page would decode: (280, 280) uint8, 255 paper, 0 ink."""

    strokes: list[list[Point]]
    image: np.ndarray


def curve(*points: Point) -> list[Point]:
    """A smooth pen path through the points."""
    return list(points)


def line(*points: Point) -> list[Point]:
    """Straight segments with sharp corners."""
    return [points[0]] + [p for p in points[1:-1] for _ in (0, 1)] + [points[-1]]


def oval(cx: float, cy: float, rx: float, ry: float, start: float = -90, turn: float = -360, n: int = 8) -> list[Point]:
    """Control points on an ellipse from angle start (degrees; 0 right, 90 down) turning by turn
    (negative: anticlockwise on screen, the way most people draw an O)."""
    angles = np.radians(start + turn * np.arange(n + 1) / n)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


def spline(points: np.ndarray, step: float = 0.02) -> np.ndarray:
    """Catmull-Rom through the control points, about one point per `step`; a doubled point is a corner."""
    if len(points) == 1:
        return points
    padded = np.concatenate([points[:1], points, points[-1:]])
    out = [points[:1]]
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        if np.allclose(p1, p2):  # the two copies of a corner
            continue
        n = max(1, int(np.ceil(np.linalg.norm(p2 - p1) / step)))
        t = (np.arange(1, n + 1) / n)[:, None]
        out.append(
            0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
        )
    return np.concatenate(out)


def render(strokes: list[list[Point]], width: float = 0.08 * SIZE, size: int = SIZE) -> np.ndarray:
    """The canvas with the strokes (canvas pixels) drawn on it: (size, size) uint8, 255 paper, 0 ink."""
    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 255)
    pen = ImageDraw.Draw(big)
    r = width * SUPERSAMPLE / 2
    for stroke in strokes:
        points = [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in stroke]
        if len(points) > 1:
            pen.line(points, fill=0, width=round(2 * r))
        for x, y in points:  # round caps and joins: a pen tip at every point
            pen.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return np.asarray(big.resize((size, size), Image.Resampling.BOX))


def _draw(template: Template, rng: np.random.Generator) -> Drawing:
    """One sample of a template: jittered, slanted, scaled, stretched, turned, placed, drawn."""
    paths = []
    for stroke in template:
        points = np.array(stroke, float)
        noise = rng.normal(0, JITTER, points.shape)
        for i in range(1, len(points)):  # a corner's two copies move together
            if np.allclose(points[i], points[i - 1]):
                noise[i] = noise[i - 1]
        paths.append(spline(points + noise) - 0.5)
    height = rng.uniform(*HEIGHT) * SIZE
    aspect, slant, turn = rng.uniform(*ASPECT), rng.uniform(*SLANT), np.radians(rng.uniform(-TURN, TURN))
    c, s = np.cos(turn), np.sin(turn)
    matrix = height * np.array([[c, -s], [s, c]]) @ np.array([[aspect, -slant], [0, 1]])
    paths = [p @ matrix.T for p in paths]
    ink = np.concatenate(paths)
    lo, hi = ink.min(0), ink.max(0)
    width = rng.uniform(*WIDTH) * SIZE
    room = np.clip((SIZE - (hi - lo) - width) / 2 - 2, 0, SHIFT * SIZE)
    centre = SIZE / 2 - (lo + hi) / 2 + rng.uniform(-room, room)
    strokes = [[(float(x), float(y)) for x, y in p + centre] for p in paths]
    return Drawing(strokes, render(strokes, width))


def samples(writer: Writer, digit: int, n: int, seed: int) -> list[Drawing]:
    """n drawings of digit in writer's style; the same (writer, digit, n, seed) gives the same ones."""
    rng = np.random.default_rng([seed, digit, zlib.crc32(writer.name.encode())])
    options = writer.templates[digit]
    return [_draw(options[rng.integers(len(options))], rng) for _ in range(n)]


ORDINARY = Writer(
    "ordinary",
    "the usual school shapes, as in MNIST: the control, which the base models read well",
    {
        0: [[oval(0.5, 0.5, 0.3, 0.5, -100, -370)]],
        1: [[line((0.5, 0.0), (0.48, 1.0))], [line((0.38, 0.15), (0.55, 0.0), (0.52, 1.0))]],
        2: [[curve((0.2, 0.25), (0.45, 0.0), (0.75, 0.15), (0.7, 0.45), (0.2, 1.0)) + line((0.2, 1.0), (0.85, 0.98))]],
        3: [[curve((0.2, 0.12), (0.5, 0.0), (0.75, 0.2), (0.45, 0.47), (0.8, 0.7), (0.5, 1.0), (0.15, 0.88))]],
        4: [
            [line((0.6, 0.0), (0.15, 0.65), (0.85, 0.65)), line((0.65, 0.3), (0.65, 1.0))],
            [line((0.22, 0.0), (0.2, 0.55), (0.8, 0.55)), line((0.75, 0.0), (0.75, 1.0))],
        ],
        5: [
            [line((0.75, 0.0), (0.3, 0.0), (0.27, 0.45))
             + curve((0.27, 0.45), (0.55, 0.38), (0.8, 0.65), (0.55, 1.0), (0.2, 0.88))],
        ],
        6: [[curve((0.7, 0.0), (0.35, 0.3), (0.2, 0.7), (0.45, 1.0), (0.75, 0.8), (0.6, 0.5), (0.25, 0.65))]],
        7: [[line((0.15, 0.0), (0.85, 0.0), (0.4, 1.0))]],
        8: [[curve((0.7, 0.1), (0.5, 0.0), (0.3, 0.15), (0.5, 0.45), (0.75, 0.72), (0.5, 1.0),
                  (0.25, 0.72), (0.5, 0.45), (0.7, 0.2), (0.6, 0.05))]],
        9: [[curve((0.75, 0.2), (0.5, 0.0), (0.25, 0.2), (0.45, 0.45), (0.75, 0.25)) + curve((0.75, 0.25), (0.7, 1))]],
    },
)

# The styles below were tuned by drawing them and reading them with the shipped reader and a
# `fast` run: slashed zeros read as 8, closed 4s as 9 or 7, 6s with a flat top as 5, 1s with a
# long up-stroke as 7 or 4, 7s with a curled foot as 3, 9s with a looped tail as 8. Angular and
# looped shapes alone are read right (a rectangle 0, boxy 2, 3, 5, 8, 9; a 2 looped at the foot):
# they make each style one person's hand.
CONTINENTAL = Writer(
    "continental",
    "a European school hand: 0 slashed, 1 with a long up-stroke, 3 flat-topped, 4 closed at the top, "
    "5 with a separate flag, 7 crossed and curled, 8 as two loops, 9 with a straight stem",
    {
        0: [[oval(0.5, 0.5, 0.26, 0.5, -100, -370), line((0.85, -0.08), (0.15, 1.08))]],
        1: [[line((0.1, 0.6), (0.6, 0.0), (0.6, 1.0))]],
        2: [[curve((0.2, 0.25), (0.45, 0.0), (0.75, 0.15), (0.7, 0.45), (0.2, 1.0)) + line((0.2, 1.0), (0.85, 0.98))]],
        3: [[line((0.15, 0.0), (0.85, 0.0), (0.35, 0.45))
             + curve((0.35, 0.45), (0.8, 0.55), (0.8, 0.9), (0.45, 1.0), (0.1, 0.85))]],
        4: [[line((0.7, 0.0), (0.2, 0.0), (0.2, 0.55), (0.95, 0.55)), line((0.7, 0.0), (0.7, 1.0))]],
        5: [[line((0.3, 0.0), (0.27, 0.45)) + curve((0.27, 0.45), (0.55, 0.38), (0.8, 0.65), (0.55, 1.0), (0.2, 0.88)),
             line((0.32, 0.0), (0.85, 0.0))]],
        6: [[curve((0.7, 0.0), (0.35, 0.3), (0.2, 0.7), (0.45, 1.0), (0.75, 0.8), (0.6, 0.5), (0.25, 0.65))]],
        7: [[line((0.15, 0.0), (0.85, 0.0))
             + curve((0.85, 0.0), (0.6, 0.45), (0.5, 0.85), (0.3, 1.0), (0.12, 0.92), (0.12, 0.82)),
             line((0.35, 0.47), (0.85, 0.47))]],
        8: [[oval(0.5, 0.25, 0.23, 0.25, 0, -360), oval(0.5, 0.72, 0.3, 0.28, -90, -360)]],
        9: [[oval(0.5, 0.27, 0.28, 0.27, 0, -360) + line((0.78, 0.27), (0.78, 1.0))]],
    },
)

DIGITAL = Writer(
    "digital",
    "straight segments and sharp corners, like a digital clock: 0 a slashed rectangle, 4 closed, "
    "6 with a top bar, 8 two stacked boxes",
    {
        0: [[line((0.28, 0.0), (0.28, 1.0), (0.72, 1.0), (0.72, 0.0), (0.28, 0.0)), line((0.85, -0.08), (0.15, 1.08))]],
        1: [[line((0.15, 0.5), (0.6, 0.0), (0.6, 1.0))]],
        2: [[line((0.2, 0.0), (0.8, 0.0), (0.8, 0.5), (0.2, 0.5), (0.2, 1.0), (0.8, 1.0))]],
        3: [[line((0.2, 0.0), (0.8, 0.0), (0.8, 1.0), (0.2, 1.0)), line((0.3, 0.5), (0.8, 0.5))]],
        4: [[line((0.7, 0.0), (0.2, 0.0), (0.2, 0.55), (0.95, 0.55)), line((0.7, 0.0), (0.7, 1.0))]],
        5: [[line((0.8, 0.0), (0.2, 0.0), (0.2, 0.5), (0.8, 0.5), (0.8, 1.0), (0.2, 1.0))]],
        6: [[line((0.8, 0.0), (0.2, 0.0), (0.2, 1.0), (0.8, 1.0), (0.8, 0.45), (0.2, 0.45))]],
        7: [[line((0.2, 0.0), (0.8, 0.0), (0.8, 1.0))]],
        8: [[line((0.2, 0.0), (0.8, 0.0), (0.8, 1.0), (0.2, 1.0), (0.2, 0.0)), line((0.2, 0.5), (0.8, 0.5))]],
        9: [[line((0.8, 0.5), (0.2, 0.5), (0.2, 0.0), (0.8, 0.0), (0.8, 1.0), (0.2, 1.0))]],
    },
)

CURSIVE = Writer(
    "cursive",
    "a flowing hand of lead-in strokes, loops and curls: 1 with a long up-stroke, 2 looped at the "
    "foot, 4 closed with a round top, 6 with a flag, 7 curled at the foot, 9 with a looped tail",
    {
        0: [[curve((0.65, 0.15), (0.45, 0.0), (0.2, 0.2), (0.18, 0.6), (0.45, 1.0), (0.78, 0.7), (0.8, 0.3),
                   (0.55, 0.0), (0.35, 0.2))]],
        1: [[line((0.1, 0.6), (0.6, 0.0), (0.6, 1.0))]],
        2: [[curve((0.15, 0.25), (0.45, 0.0), (0.75, 0.15), (0.65, 0.5), (0.3, 0.8), (0.15, 1.0), (0.05, 0.8),
                   (0.3, 0.75), (0.55, 0.95), (0.9, 0.95))]],
        3: [[curve((0.2, 0.12), (0.5, 0.0), (0.75, 0.2), (0.5, 0.45), (0.35, 0.42), (0.45, 0.38), (0.55, 0.5),
                   (0.8, 0.72), (0.5, 1.0), (0.15, 0.88))]],
        4: [[line((0.7, 0.0), (0.3, 0.0)) + curve((0.3, 0.0), (0.2, 0.1), (0.2, 0.3))
             + line((0.2, 0.3), (0.2, 0.55), (0.95, 0.55)), line((0.7, 0.0), (0.7, 1.0))]],
        5: [[curve((0.25, 0.25), (0.22, 0.5), (0.5, 0.42), (0.8, 0.68), (0.55, 1.0), (0.2, 0.9)),
             line((0.5, 0.05), (0.95, 0.0))]],
        6: [[curve((0.9, 0.05), (0.55, 0.02), (0.25, 0.0), (0.15, 0.1), (0.25, 0.15), (0.22, 0.5), (0.3, 0.9),
                   (0.5, 1.0), (0.75, 0.85), (0.75, 0.6), (0.5, 0.48), (0.25, 0.6))]],
        7: [[line((0.15, 0.0), (0.85, 0.0)) + curve((0.85, 0.0), (0.55, 0.5), (0.45, 0.9), (0.25, 1.0), (0.15, 0.85))]],
        8: [[curve((0.8, 0.1), (0.5, 0.0), (0.2, 0.2), (0.5, 0.5), (0.8, 0.8), (0.5, 1.0), (0.2, 0.85)),
             line((0.2, 0.85), (0.8, 0.12))]],
        9: [[curve((0.75, 0.15), (0.5, 0.0), (0.25, 0.2), (0.45, 0.45), (0.78, 0.3), (0.75, 0.7), (0.6, 1.0),
                   (0.35, 0.95), (0.3, 0.8), (0.75, 0.7))]],
    },
)

WRITERS: dict[str, Writer] = {w.name: w for w in (ORDINARY, CONTINENTAL, DIGITAL, CURSIVE)}


def sheet(drawings: dict[str, list[list[Drawing]]], tile: int = 56) -> Image.Image:
    """A contact sheet: per writer, its name over a few rows of samples, one column per digit."""
    rows = max(len(d) for per_digit in drawings.values() for d in per_digit)
    band = 16 + rows * tile
    out = Image.new("L", (10 * tile, band * len(drawings)), 255)
    pen = ImageDraw.Draw(out)
    for w, (name, per_digit) in enumerate(drawings.items()):
        pen.text((4, w * band + 2), name, fill=0)
        for digit, group in enumerate(per_digit):
            for r, drawing in enumerate(group):
                thumb = Image.fromarray(drawing.image).resize((tile, tile), Image.Resampling.BOX)
                out.paste(thumb, (digit * tile, w * band + 16 + r * tile))
        pen.line((0, (w + 1) * band - 1, 10 * tile, (w + 1) * band - 1), fill=160)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run folders whose models read too (the shipped reader always does)")
    parser.add_argument("--n", type=int, default=20, help="samples per digit per writer")
    parser.add_argument("--seed", type=int, default=1000, help="the styles were tuned on seed 0: measure on others")
    parser.add_argument("--sheet", type=Path, help="save a contact sheet PNG of 4 samples per digit per writer")
    args = parser.parse_args()
    header()
    readers = {"reader": load_predictor(None)} | {model_name(run): load_predictor(run) for run in args.runs}
    drawn = {w.name: [samples(w, digit, args.n, args.seed) for digit in range(10)] for w in WRITERS.values()}
    print(f"\naccuracy on {args.n} drawings per digit (seed {args.seed})")
    print(f"{'writer':12} {'model':14}" + "".join(f"{d:>6}" for d in range(10)) + "     all")
    figures = {}
    for name, per_digit in drawn.items():
        for model, predictor in readers.items():
            right = [np.mean([p.digit == d for p in predictor.predict([x.image for x in group])])
                     for d, group in enumerate(per_digit)]
            figures[f"{name}/{model}"] = [round(float(r), 3) for r in right] + [round(float(np.mean(right)), 3)]
            print(f"{name:12} {model:14}" + "".join(f"{r:6.2f}" for r in right) + f"{np.mean(right):8.3f}")
    if args.sheet:
        sheet({name: [group[:4] for group in per_digit] for name, per_digit in drawn.items()}).save(args.sheet)
        print(f"contact sheet: {args.sheet}")
    print(json.dumps({"n": args.n, "seed": args.seed, "accuracy": figures}))


if __name__ == "__main__":
    main()
