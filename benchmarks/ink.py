"""Ink finding on generated pages: faint pencil, thin pens, ruled and grid paper, shadows, camera noise.

    python benchmarks/ink.py [RUN | model.onnx] [--big] [--digits N]

Each page is a real MNIST test digit re-inked: upscaled 10 times (its 20-px box becomes 200 px),
thresholded, thinned to a one-pixel skeleton (Zhang and Suen) and drawn again at the chosen stroke
width (a distance transform, anti-aliased) and ink darkness, on paper, in light, through a camera:

- ink: its grey level on white (255) paper, 30 (black pen) to 230 (a whisper of pencil); pencil
  has grain (a third of its darkness varies from pixel to pixel);
- width: the stroke width in pixels at that resolution, 1.5 to 12 (MNIST's strokes would be 23);
- paper: plain (245), textured (fibres: blotches and grain, about 6 levels), lined (a 2-px line of
  190 every 1.1 digit heights), grid (190 every 0.6 digit heights), dark grid (150, 3 px);
- light: even, a gradient (full to 45 % across the page), a hard shadow (55 %), a vignette;
- camera: Gaussian blur (sigma, px), sensor noise (standard deviation, grey levels), JPEG quality.

A digit is **found** when prepare_image does not say no_digit, and **boxed** when its box also
covers the digit (intersection over union >= 0.5); **read** when the model (RUN folder or ONNX
file; without one only found and boxed are reported) gives its label.

**A person can read it** when the stroke stands out from its paper: its contrast after blur
(paper minus ink times erf(width / (2 sqrt(2) sigma)), the peak of a blurred line) is at least
8 % of the paper's brightness and at least 4 times the noise's standard deviation, in the
darkest light on the page. Lines, texture and JPEG do not change that: people read through
them. The target (issue 14) is measured on the readable digit pages: >= 95 % found and read.
The blank pages (the same papers, lights and cameras, no digit) must all say no_digit.

Groups: faint (darkness x width on shaded paper, and in even light; pencil with grain), camera
(blur, noise, JPEG one at a time), thin (pen lines 1.5-2 px, on plain and grid paper, digits 200
and 100 px tall), ruled (lined, grid, dark grid), light (gradient, hard shadow, vignette), blank.
The table gives every condition; the summary the share of pages per group and over all readable
pages. Ends with one JSON line of every figure. The default sweep (92 conditions x 20 digits)
takes about two minutes on 2 cores; --big (finer steps, every paper in every light, 50 digits)
about twelve.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.special import erf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

from mnistlab.data import load_mnist, prepare_image  # noqa: E402

FACTOR = 10  # MNIST's 28 px to the source resolution: the 20-px digit box becomes 200 px
PAPER = 245  # grey level of plain paper in full light
READABLE_CONTRAST = 0.08  # of the paper's brightness
READABLE_SNR = 4.0  # contrast / noise standard deviation
TARGET = 0.95
PHONE = {"blur": 1.0, "noise": 5.0, "jpeg": 60}  # what a phone adds to a page photo


@dataclass(frozen=True)
class Condition:
    """How one page is made; `digit` False: a blank page that must say no_digit."""

    group: str
    ink: float = 30  # grey level of the ink on white paper
    width: float = 4.0  # stroke width, px
    paper: str = "plain"  # plain | texture | lined | grid | darkgrid
    light: str = "even"  # even | gradient | shadow | vignette
    blur: float = 0.0  # Gaussian sigma, px
    noise: float = 0.0  # standard deviation, grey levels
    jpeg: int | None = None  # quality; None: a lossless array
    grain: bool = False  # pencil: the ink's darkness varies along the stroke
    factor: int = FACTOR  # source pixels per MNIST pixel
    digit: bool = True

    @property
    def name(self) -> str:
        parts = [f"ink {self.ink:g} w {self.width:g}" if self.digit else "no digit", self.paper, self.light]
        camera = [f"blur {self.blur:g}" if self.blur else "", f"noise {self.noise:g}" if self.noise else "",
                  f"jpeg {self.jpeg}" if self.jpeg else "", "grain" if self.grain else "",
                  f"x{self.factor}" if self.factor != FACTOR else ""]
        return " ".join(parts + [c for c in camera if c])

    def readable(self) -> bool:
        """Whether a person can read the digit: see the module's docstring."""
        if not self.digit:
            return False
        darkest = {"even": 1.0, "gradient": 0.45, "shadow": 0.55, "vignette": 0.6}[self.light]
        ink = self.ink + (PAPER - self.ink) / 6 if self.grain else self.ink  # grain lightens on average
        peak = erf(self.width / (2 * math.sqrt(2) * self.blur)) if self.blur else 1.0
        contrast = (PAPER - ink) * peak * darkest
        return bool(contrast >= READABLE_CONTRAST * PAPER * darkest and contrast >= READABLE_SNR * self.noise)


def sweep(big: bool) -> list[Condition]:
    """The conditions: darkness x width on shaded paper through a phone, then one change at a time."""
    inks = (60, 90, 120, 150, 180, 200, 230)
    if big:
        inks = (40, 60, 75, 90, 105, 120, 135, 150, 165, 180, 200, 215, 230)
    widths = (1.5, 3, 5, 8, 12) if not big else (1.5, 2, 3, 4, 5, 6.5, 8, 10, 12)
    # Pencil and faint pens on shaded paper (textured, light falling off across the page) ...
    conditions = [Condition("faint", ink, width, paper="texture", light="gradient", **PHONE)
                  for ink in inks for width in widths]
    # ... and in even light.
    conditions += [Condition("faint", ink, 3, **PHONE) for ink in inks]
    pencil = Condition("faint", 120, 4, **PHONE, grain=True)
    conditions += [pencil, replace(pencil, paper="texture", light="gradient", jpeg=50),
                   replace(pencil, ink=150, width=3, blur=1.5, paper="texture", jpeg=50)]
    base = Condition("camera", 120, 4, **PHONE)
    for blur in (0, 2, 3):
        conditions.append(replace(base, blur=blur))
    for noise in (0, 10, 15) + ((20,) if big else ()):
        conditions.append(replace(base, noise=noise))
    for jpeg in (None, 85, 30):
        conditions.append(replace(base, jpeg=jpeg))
    for ink, width, factor in ((30, 1.5, FACTOR), (30, 2, FACTOR), (60, 1.5, FACTOR), (30, 1.5, 5), (90, 2, 5)):
        conditions += [Condition("thin", ink, width, paper=paper, factor=factor, **PHONE)
                       for paper in ("plain", "grid")]
    for paper in ("lined", "grid", "darkgrid"):
        for ink, width in ((30, 2), (30, 5), (120, 3), (120, 6)) + (((90, 1.5), (150, 4)) if big else ()):
            conditions.append(Condition("ruled", ink, width, paper=paper, **PHONE))
    for light in ("gradient", "shadow", "vignette"):
        for ink, width in ((30, 4), (120, 4)) + (((90, 2), (150, 6)) if big else ()):
            conditions.append(Condition("light", ink, width, paper="texture", light=light, **PHONE))
    blanks = [("plain", "even"), ("texture", "even"), ("lined", "even"), ("grid", "even"),
              ("darkgrid", "even"), ("plain", "gradient"), ("texture", "shadow"), ("grid", "vignette")]
    if big:  # every paper in every light
        blanks = [(paper, light) for paper in ("plain", "texture", "lined", "grid", "darkgrid")
                  for light in ("even", "gradient", "shadow", "vignette")]
    for paper, light in blanks:
        conditions.append(Condition("blank", paper=paper, light=light, digit=False, **PHONE))
    conditions += [Condition("blank", paper="texture", blur=0.5, noise=12, jpeg=40, digit=False),
                   Condition("blank", paper="lined", light="shadow", digit=False)]
    return conditions


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang and Suen's thinning: the one-pixel skeleton of a binary shape, connectivity kept."""
    image = np.pad(mask, 1).astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            core = image[1:-1, 1:-1]
            # P2..P9, clockwise from the pixel above.
            p = [image[:-2, 1:-1], image[:-2, 2:], image[1:-1, 2:], image[2:, 2:],
                 image[2:, 1:-1], image[2:, :-2], image[1:-1, :-2], image[:-2, :-2]]
            count = sum(q.astype(np.int32) for q in p)
            turns = sum(((p[i] == 0) & (p[(i + 1) % 8] == 1)).astype(np.int32) for i in range(8))
            if step == 0:
                first, second = p[0] * p[2] * p[4], p[2] * p[4] * p[6]
            else:
                first, second = p[0] * p[2] * p[6], p[0] * p[4] * p[6]
            remove = (core == 1) & (count >= 2) & (count <= 6) & (turns == 1) & (first == 0) & (second == 0)
            if remove.any():
                core[remove] = 0
                changed = True
    return image[1:-1, 1:-1].astype(bool)


def skeleton(digit: np.ndarray, factor: int) -> np.ndarray:
    """The digit's strokes as a skeleton at `factor` times MNIST's resolution."""
    size = (digit.shape[1] * factor, digit.shape[0] * factor)
    smooth = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.BICUBIC))
    return thin(smooth >= 128)


def paper_pattern(kind: str, shape: tuple[int, int], digit_height: float, rng: np.random.Generator) -> np.ndarray:
    """Reflectance 0..1 of the paper: lines or grid, fibres."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    paper = np.full(shape, PAPER / 255, np.float32)
    if kind in ("lined", "grid", "darkgrid"):
        level, width = (150, 3) if kind == "darkgrid" else (190, 2)
        spacing = digit_height * (1.1 if kind == "lined" else 0.6)
        tilt = rng.uniform(-0.02, 0.02)  # a page not quite square to the camera
        across = (rows + tilt * cols + rng.uniform(0, spacing)) % spacing < width
        if kind != "lined":
            across |= (cols - tilt * rows + rng.uniform(0, spacing)) % spacing < width
        paper = np.where(across, level / 255, paper).astype(np.float32)
    if kind == "texture":
        blotches = ndi.gaussian_filter(rng.normal(0, 1, shape), 8)
        grain = ndi.gaussian_filter(rng.normal(0, 1, shape), 0.8)
        paper = paper + 6 / 255 * (blotches / blotches.std() + grain / grain.std()) / 2
    return paper


def illumination(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Light falling on the page, 1 = full."""
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        along = np.cos(angle) * cols / shape[1] + np.sin(angle) * rows / shape[0]
        along = (along - along.min()) / (along.max() - along.min())
        return 1 - 0.55 * along
    if kind == "shadow":  # a hand's or phone's shadow, edge softened by 3 px
        edge = cols + rng.uniform(-0.8, 0.8) * rows - rng.uniform(0.3, 0.7) * shape[1]
        return 1 - 0.45 * ndi.gaussian_filter((edge < 0).astype(np.float32), 3)
    if kind == "vignette":
        distance = np.hypot((rows / shape[0] - 0.5), (cols / shape[1] - 0.5)) / math.hypot(0.5, 0.5)
        return 1 - 0.4 * distance**2
    return np.ones(shape, np.float32)


def page(condition: Condition, strokes: np.ndarray | None, rng: np.random.Generator):
    """Render one page; returns what prepare_image is given and the digit's box (or None)."""
    side = 28 * condition.factor
    shape = (round(side * 1.25), round(side * 1.45))
    coverage = np.zeros(shape, np.float32)
    box = None
    if strokes is not None:
        top, left = rng.integers(0, shape[0] - side + 1), rng.integers(0, shape[1] - side + 1)
        distance = ndi.distance_transform_edt(~strokes)
        coverage[top : top + side, left : left + side] = np.clip(condition.width / 2 + 0.5 - distance, 0, 1)
        rows, cols = np.flatnonzero(coverage.any(axis=1)), np.flatnonzero(coverage.any(axis=0))
        box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    paper = paper_pattern(condition.paper, shape, 20 * condition.factor, rng)
    ink = np.full(shape, condition.ink / 255, np.float32)
    if condition.grain:
        grain = ndi.gaussian_filter(rng.random(shape), 0.7)
        ink = ink + (PAPER - condition.ink) / 255 * np.clip((grain - grain.min()) / np.ptp(grain), 0, 1) / 3
    reflectance = paper * (1 - coverage) + np.minimum(ink, paper) * coverage
    grey = 255 * reflectance * illumination(condition.light, shape, rng)
    if condition.blur:
        grey = ndi.gaussian_filter(grey, condition.blur)
    if condition.noise:
        grey = grey + rng.normal(0, condition.noise, shape)
    pixels = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    if condition.jpeg is None:
        return pixels, box
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=condition.jpeg)
    return buffer.getvalue(), box


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (top, left, bottom, right) boxes."""
    height = min(a[2], b[2]) - max(a[0], b[0])
    width = min(a[3], b[3]) - max(a[1], b[1])
    if height <= 0 or width <= 0:
        return 0.0
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return height * width / (area(a) + area(b) - height * width)


def load_model(source: str | None):
    """A Predictor for a run folder or an ONNX file; None without one."""
    if source is None:
        return None
    from mnistlab.predict import Predictor

    return Predictor.from_onnx(source) if source.endswith(".onnx") else Predictor.from_run(source)


def run(conditions: list[Condition], digits: np.ndarray, labels: np.ndarray, model) -> list[dict]:
    """Prepare every page of every condition; one row of figures per condition."""
    skeletons: dict[tuple[int, int], np.ndarray] = {}
    results = []
    for number, condition in enumerate(conditions):
        rng = np.random.default_rng(number)
        prepared, found, boxed = [], 0, 0
        for index, digit in enumerate(digits):
            strokes = None
            if condition.digit:
                key = (index, condition.factor)
                if key not in skeletons:
                    skeletons[key] = skeleton(digit, condition.factor)
                strokes = skeletons[key]
            source, box = page(condition, strokes, rng)
            result = prepare_image(source)
            prepared.append(result.image)
            found += int(result.has_ink)
            boxed += int(result.has_ink and box is not None and overlap(result.box, box) >= 0.5)
        row = {**asdict(condition), "name": condition.name, "readable": condition.readable(), "n": len(digits),
               "found": found / len(digits), "boxed": boxed / len(digits) if condition.digit else None}
        if model is not None and condition.digit:
            read = model.probabilities(np.stack(prepared)).argmax(axis=1) == labels
            has_ink = np.array([image.any() for image in prepared])
            row["read"] = float(np.mean(read & has_ink))
        results.append(row)
    return results


def summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per group (and the target set: every readable digit page), the mean rates."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["digit"] and row["readable"]:
            groups.setdefault("readable", []).append(row)
        groups.setdefault(row["group"] + ("" if row["readable"] or not row["digit"] else " (unreadable)"),
                          []).append(row)
    out = {}
    for name, members in groups.items():
        figures = {"conditions": len(members), "pages": sum(row["n"] for row in members)}
        for key in ("found", "boxed", "read"):
            values = [row[key] * row["n"] for row in members if row.get(key) is not None]
            if values:
                figures[key] = sum(values) / figures["pages"]
        out[name] = figures
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="run folder or .onnx file to read the digits with")
    parser.add_argument("--big", action="store_true", help="finer darkness and width steps, more digits")
    parser.add_argument("--digits", type=int, default=None, help="digits per condition (default 20, --big 50)")
    args = parser.parse_args()
    info = header()
    count = args.digits or (50 if args.big else 20)
    mnist = load_mnist(offline=True, progress=False)
    # The first count / 10 test digits of each class: every class equally.
    chosen = np.concatenate([np.flatnonzero(mnist.y_test == label)[: math.ceil(count / 10)] for label in range(10)])
    chosen = np.sort(chosen)[:count]
    model = load_model(args.model)
    start = time.perf_counter()
    rows = run(sweep(args.big), mnist.x_test[chosen], mnist.y_test[chosen], model)
    seconds = time.perf_counter() - start

    print(f"\n{len(rows)} conditions x {count} digits in {seconds:.0f} s; model: {args.model or 'none'}")
    print(f"{'group':<8}{'condition':<58}{'readable':>9}{'found':>7}{'boxed':>7}{'read':>7}")
    cell = lambda value: f"{value * 100:6.0f}%" if value is not None else "      -"  # noqa: E731
    for row in rows:
        print(f"{row['group']:<8}{row['name']:<58}{'yes' if row['readable'] else 'no':>9}"
              f"{cell(row['found'])}{cell(row['boxed'])}{cell(row.get('read'))}")
    figures = summary(rows)
    print(f"\n{'summary':<30}{'pages':>7}{'found':>8}{'boxed':>8}{'read':>8}")
    for name, group in figures.items():
        print(f"{name:<30}{group['pages']:>7}{cell(group.get('found'))} {cell(group.get('boxed'))} "
              f"{cell(group.get('read'))}")
    blank = figures.get("blank", {}).get("found", 0.0)
    readable = figures.get("readable", {})
    verdict = readable.get("read", readable.get("boxed", 0.0))
    print(f"\nreadable pages {'read' if 'read' in readable else 'boxed'}: {verdict * 100:.1f} % "
          f"(target {TARGET * 100:.0f} %); blank pages with ink found: {blank * 100:.1f} % (target 0 %)")
    print(json.dumps({"benchmark": "ink", "model": args.model, "digits": count, "big": args.big,
                      "seconds": round(seconds, 1), "machine": {k: v for k, v in info.items() if k != "versions"},
                      "versions": info["versions"], "summary": figures, "conditions": rows}))


if __name__ == "__main__":
    main()
