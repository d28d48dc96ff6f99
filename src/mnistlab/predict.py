"""Prediction: images in, digits with calibrated confidence out; shared by the CLI and the server.

    mnistlab predict photo.jpg drawing.png [--model runs/<name>] [--json] [--show sheet.png]
    mnistlab read number.jpg [--show boxes.png]

Every image goes through the one preprocessing path (mnistlab.data.prepare_image, MNIST's own
normalisation), then the model, then its temperature (fitted on a validation split at training
time). The model is the reader shipped in the package unless a run folder is named; wherever
there is an ONNX file (the shipped reader, RUN/model.onnx) it runs on onnxruntime, and Keras and
TensorFlow are never imported.

The statuses an app can rely on (STATUSES): "ok" when the calibrated confidence reaches the
minimum; "unsure" below it (the best guess is still given); "no_digit" when the image holds no
ink worth reading, with no digit and no confidence at all. A number read from one image is "ok"
only when the probability that all its digits are right reaches the same minimum.

Keras and the image libraries are imported when first needed, so `import mnistlab` stays light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnistlab.calibrate import apply_temperature
from mnistlab.errors import MnistlabError
from mnistlab.files import atomic_write
from mnistlab.inference import predict_probs
from mnistlab.runs import is_run_folder, why_no_folder
from mnistlab.runtimes import READER_NAME, OnnxModel, load_keras, load_runtime

# Below this probability the answer is "unsure". On the 130 real images of benchmarks/
# realworld.py the default `fast` run (label smoothing, no temperature) errs 3 times, at 36-60 %:
# 0.6 marks all 3 unsure and 6 of the 127 right answers; 0.5 marks 1 of the 3 and 2 right ones.
DEFAULT_MIN_CONFIDENCE = 0.6

STATUSES = ("ok", "unsure", "no_digit")

# An image as a person holds it: a path, the file's bytes, a PIL image, or a NumPy array in grey
# (H, W), RGB (H, W, 3) or RGBA (H, W, 4), uint8 or float in [0, 1] (mnistlab.data.decode.as_grey).
Source = Any


class PredictError(MnistlabError):
    """Input that cannot be predicted on: no images, a folder without images."""


def _rounded(p: float | None) -> float | None:
    return None if p is None else round(p, 6)


@dataclass(frozen=True)
class Prediction:
    """One image's answer."""

    path: str  # the file, or "<image N>" for arrays, bytes and PIL images
    digit: int | None  # the most likely class; None when no_digit
    confidence: float | None  # its calibrated probability; None when no_digit
    top3: tuple[tuple[int, float], ...]  # (digit, calibrated probability), most likely first; () when no_digit
    status: str  # ok | unsure (confidence below the minimum) | no_digit (no ink found)
    image: np.ndarray  # (28, 28) uint8: what the model saw (all black when no_digit)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `mnistlab predict --json` prints and the server returns."""
        return {
            "path": self.path,
            "digit": self.digit,
            "confidence": _rounded(self.confidence),
            "top3": [{"digit": d, "confidence": round(p, 6)} for d, p in self.top3],
            "status": self.status,
        }


class Box(NamedTuple):
    """Where a digit is in its image, in pixels of the image (turned upright as its EXIF says), in
    PIL's convention (Image.crop): x from the left, y from the top, right and bottom exclusive.
    The one form of a box that mnistlab shows: the JSON of `mnistlab read --json` and of the
    server's /v1/read is {"left", "top", "right", "bottom"}, and the table's columns are named so."""

    left: int
    top: int
    right: int
    bottom: int

    def to_dict(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom}


@dataclass(frozen=True)
class Reading:
    """A multi-digit number read from one image."""

    path: str
    text: str  # the digits left to right; "" when no ink was found
    digits: tuple[Prediction, ...]
    boxes: tuple[Box, ...]  # each digit's, in the same order
    status: str  # ok | unsure (confidence below the minimum) | no_digit (no digit found)

    @property
    def confidence(self) -> float | None:
        """The probability that every digit is right, as the calibrated model sees it; None when
        no digit was found."""
        return joint_confidence(self.digits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "text": self.text,
            "confidence": _rounded(self.confidence),
            "status": self.status,
            "digits": [
                {**d.to_dict(), "box": box.to_dict()} for d, box in zip(self.digits, self.boxes, strict=True)
            ],
        }


def joint_confidence(digits: tuple[Prediction, ...] | list[Prediction]) -> float | None:
    """The probability that all these digits are right: the product of their confidences (the
    model's errors on separate digits taken as independent); None for no digits."""
    if not digits:
        return None
    return float(np.prod([d.confidence or 0.0 for d in digits]))


class Predictor:
    """A model with its temperature and threshold: the thing the CLI and the server hold."""

    def __init__(
        self,
        model: Any,
        temperature: float = 1.0,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        runtime: str | None = None,
    ):
        """Args:
        model: anything with Keras's `predict` from (N, 28, 28, 1) to (N, 10) probabilities.
        temperature: divides the logits (mnistlab.calibrate); 1 leaves them as they are.
        min_confidence: below this calibrated probability the status is "unsure".
        runtime: "onnx" or "keras"; by default, "onnx" for an OnnxModel.
        """
        if not 0.0 <= min_confidence <= 1.0:
            raise PredictError(f"min_confidence must be in [0, 1], not {min_confidence}.")
        self.model = model
        self.temperature = float(temperature)
        self.min_confidence = float(min_confidence)
        self.runtime = runtime or ("onnx" if isinstance(model, OnnxModel) else "keras")

    @classmethod
    def from_run(cls, run: str | os.PathLike, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Predictor:
        """Load a run folder's model (Keras safe mode) and the temperature fitted at training.

        Raises:
            RunError: no such run, a model that cannot be loaded or that does not take MNIST's
                (N, 28, 28, 1) images to (N, 10) probabilities, or a damaged metrics.json.
        """
        model, temperature = load_keras(run)
        return cls(model, temperature, min_confidence)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Predictor:
        """Load a file written by `mnistlab export` on onnxruntime alone (no Keras, no TensorFlow),
        with the temperature recorded in it.

        Raises:
            ExportError: no such file, no onnxruntime, or not a usable ONNX model.
        """
        model = OnnxModel(path)
        return cls(model, model.temperature, min_confidence)

    @classmethod
    def load(cls, run: str | os.PathLike | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Predictor:
        """The shipped reader, or a run folder's model: its model.onnx when it has one, else its
        Keras model (mnistlab.runtimes.load_runtime).

        Raises:
            RunError, ExportError: no such run, a model that cannot be loaded, or a broken
                install without the shipped reader.
        """
        model, temperature, runtime = load_runtime(run)
        return cls(model, temperature, min_confidence, runtime)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated (N, 10) probabilities for uint8 MNIST-format images (N, 28, 28).

        Raises:
            PredictError: the model gives probabilities that are not numbers (NaN), as a model
                whose training diverged does; no answer is better than a made-up one.
        """
        if len(images) == 0:
            return np.zeros((0, 10))
        probs = apply_temperature(predict_probs(self.model, images), self.temperature)
        broken = int((~np.isfinite(probs).all(axis=1)).sum())
        if broken:
            raise PredictError(f"the model gives probabilities that are not numbers for {broken} of {len(probs)} "
                               "images: its weights are broken (as after training that diverged); train it again.")
        return probs

    def _answers(self, prepared: list[Any], names: list[str]) -> list[Prediction]:
        images = np.stack([p.image for p in prepared]) if prepared else np.zeros((0, 28, 28), np.uint8)
        probs = self.probabilities(images)
        out = []
        for p, name, row in zip(prepared, names, probs, strict=True):
            if not p.has_ink:  # nothing to read: no digit, and no confidence to misread
                out.append(Prediction(name, None, None, (), "no_digit", p.image))
                continue
            order = np.argsort(row)[::-1]
            digit, confidence = int(order[0]), float(row[order[0]])
            status = "unsure" if confidence < self.min_confidence else "ok"
            top3 = tuple((int(k), float(row[k])) for k in order[:3])
            out.append(Prediction(name, digit, confidence, top3, status, p.image))
        return out

    def predict(self, sources: Source | list[Source], names: list[str] | None = None) -> list[Prediction]:
        """One Prediction per image, in input order.

        Args:
            sources: one image or a list of them: paths, the files' bytes, PIL images, or NumPy
                arrays in grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4), uint8 or float in [0, 1].
                OpenCV's BGR arrays are passed as `img[..., ::-1]`.
            names: what each is called in the answers; file paths (else "<image N>") by default.

        Raises:
            ImageError: an image that cannot be decoded or an unusable input (nothing is
                predicted then).
        """
        from mnistlab.data import prepare_image  # Pillow and SciPy load with the first image

        sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        names = names or [_name(s, k) for k, s in enumerate(sources)]
        return self._answers([prepare_image(s) for s in sources], names)

    def read(self, source: Source, name: str | None = None) -> Reading:
        """The multi-digit number written in one image, left to right, with each digit's Box.

        Its status is "no_digit" without any digit, else "ok" only when the joint confidence (the
        probability that every digit is right) reaches min_confidence: a number of three digits
        each 65 % sure is 27 % sure, and "unsure".

        Args:
            source: one image, in any form `predict` takes.

        Raises:
            ImageError: the image cannot be decoded, or is no usable input.
        """
        from mnistlab.data import segment_digits

        name = name or _name(source, 0)
        parts = [p for p in segment_digits(source) if p.has_ink]
        digits = self._answers(parts, [f"{name}#{k}" for k in range(len(parts))])
        joint = joint_confidence(digits)
        if joint is None:
            status = "no_digit"
        elif joint < self.min_confidence or any(d.status != "ok" for d in digits):
            status = "unsure"
        else:
            status = "ok"
        return Reading(
            path=name,
            text="".join(str(d.digit) for d in digits),
            digits=tuple(digits),
            boxes=tuple(Box(left=p.box[1], top=p.box[0], right=p.box[3], bottom=p.box[2]) for p in parts),
            status=status,
        )


def _name(source: Source, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<image {index}>"


def image_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Files named on the command line, a folder standing for the images in it (sorted by name).

    Raises:
        PredictError: nothing to predict, or a folder without images.
    """
    from mnistlab.data import IMAGE_SUFFIXES

    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise PredictError(f"folder {item} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
            files += found
        else:
            files.append(item)  # a missing or non-image file is reported by the decoder
    if not files:
        raise PredictError("no images given.")
    return files


def load_predictor(run: str | os.PathLike | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> Predictor:
    """The Predictor of a run folder, or of the shipped reader when run is None; `.runtime`
    says whether it runs on "onnx" or "keras" (mnistlab.runtimes.load_runtime).

    Raises:
        RunError, ExportError: no such run, a model that cannot be loaded, or a broken install
            without the shipped reader.
    """
    return Predictor.load(run, min_confidence)


def model_name(run: str | os.PathLike | None) -> str:
    """What answers and pages call the model: the run folder's name, or "reader"."""
    return READER_NAME if run is None else Path(run).resolve().name


def _old_order(first: Any, second: Any) -> bool:
    """Was a function written `f(run, image)` called, as before run became optional?"""
    return (second is not None and isinstance(first, (str, os.PathLike)) and is_run_folder(first)
            and not (isinstance(second, (str, os.PathLike)) and is_run_folder(second)))


def predict(
    images: Source | list[Source],
    run: str | os.PathLike | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[Prediction]:
    """Digits in images: the Python form of `mnistlab predict`.

        >>> mnistlab.predict("seven.jpg")[0].digit            # the reader shipped in the package
        >>> mnistlab.predict(["a.png", "b.png"], run="runs/fast-20261130-061204")

    Args:
        images: one image or a list: paths (a folder stands for the images in it), the files'
            bytes, PIL images, or NumPy arrays in grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4),
            uint8 or float in [0, 1]; OpenCV's BGR arrays as `img[..., ::-1]`.
        run: a run folder written by `mnistlab train` whose model to use (its model.onnx when it
            has one); None for the shipped reader. The older order `predict(run, images)` still works.
        min_confidence: below this calibrated probability the status is "unsure".

    Raises:
        MnistlabError (RunError, ImageError, PredictError, ExportError): one clear reason.
    """
    if _old_order(images, run):
        images, run = run, images
    if not isinstance(images, (list, tuple)):
        images = [images]
    if all(isinstance(s, (str, os.PathLike)) for s in images):
        images = list(image_files(images))
    return load_predictor(run, min_confidence).predict(list(images))


def read_number(
    image: Source, run: str | os.PathLike | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE
) -> Reading:
    """The multi-digit number written in one image: the Python form of `mnistlab read`.

        >>> reading = mnistlab.read_number("year.jpg")
        >>> reading.text, [(d.digit, box.left, box.top) for d, box in zip(reading.digits, reading.boxes)]

    Args:
        image: one image, in any form `predict` takes.
        run: a run folder whose model to use; None for the shipped reader. The older order
            `read_number(run, image)` still works.
    """
    if _old_order(image, run):
        image, run = run, image
    return load_predictor(run, min_confidence).read(image)


def _picture(source: Source) -> Any:
    """The image a person gave, as a grey Pillow image, for the sheets."""
    from PIL import Image

    from mnistlab.data.decode import as_grey

    return Image.fromarray(np.uint8(np.clip(as_grey(source), 0, 1) * 255))


def _save_sheet(sheet: Any, path: str | os.PathLike) -> None:
    """Write a sheet as a PNG, atomically; PredictError when `path` cannot be written."""
    try:
        atomic_write(Path(path), lambda f: sheet.save(f, format="PNG"))
    except OSError as e:
        raise PredictError(f"cannot write the sheet {path}: {why_no_folder(Path(path).parent, e)}.") from None


# Rows of a contact sheet: 100 rows of 112 pixels make a 444 x 11,312 PNG (5 MP) that browsers
# and viewers open; 5,000 images made one of 249 MP that nothing would.
MAX_SHEET_ROWS = 100


def contact_sheet(sources: list[Source], predictions: list[Prediction], path: str | os.PathLike) -> int:
    """A PNG with one row per image: the original, what the model saw (28x28, enlarged), and
    the answer; past MAX_SHEET_ROWS images, the first of them and a last row saying how many
    were left out. Written atomically.

    Returns:
        The images drawn.

    Raises:
        PredictError: `path` cannot be written.
    """
    from PIL import Image, ImageDraw


    cell, text_w = 112, 220
    shown = min(len(predictions), MAX_SHEET_ROWS)
    left_out = len(predictions) - shown
    sheet = Image.new("L", (2 * cell + text_w, cell * (shown + (left_out > 0))), 255)
    draw = ImageDraw.Draw(sheet)
    for row, (source, p) in enumerate(zip(sources[:shown], predictions[:shown], strict=True)):
        original = _picture(source)
        original.thumbnail((cell - 8, cell - 8))
        top = row * cell
        sheet.paste(original, ((cell - original.width) // 2, top + (cell - original.height) // 2))
        sheet.paste(Image.fromarray(p.image).resize((cell - 8, cell - 8), Image.NEAREST), (cell + 4, top + 4))
        answer = "-" if p.digit is None else f"{p.digit}  {p.confidence * 100:.0f} %"
        label = f"{answer}  {p.status}\n{Path(p.path).name[:28]}"
        draw.multiline_text((2 * cell + 8, top + cell // 2 - 12), label, fill=0)
    if left_out:
        draw.text((8, shown * cell + cell // 2 - 6), f"+ {left_out:,} more images not drawn (first {shown} shown)",
                  fill=0)
    _save_sheet(sheet, path)
    return shown


# A reading's sheet is scaled to this longer side: a 40-megapixel photo to a page a screen shows
# whole, a 28x28 array up to where its labels can be read.
SHEET_SIDE = (480, 1600)  # (least, most) pixels
_BOX_COLOURS = {"ok": (0, 150, 60), "unsure": (230, 120, 0)}


def reading_sheet(source: Source, reading: Reading, path: str | os.PathLike) -> None:
    """A PNG of the image read, each digit's box drawn on it with the digit and its confidence
    (green when ok, orange when unsure), under a line giving the number and its status. Written
    atomically.

    Raises:
        ImageError: `source` cannot be decoded. PredictError: `path` cannot be written.
    """
    from PIL import Image, ImageDraw, ImageFont


    image = _picture(source).convert("RGB")
    least, most = SHEET_SIDE
    scale = min(max(1.0, least / max(image.size)), most / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)
    text_size = max(14, max(size) // 40)
    try:
        font = ImageFont.load_default(size=text_size)  # FreeType's scalable default font
    except (ImportError, OSError, TypeError):  # a Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    banner = text_size * 2
    sheet = Image.new("RGB", (size[0], size[1] + banner), "white")
    sheet.paste(image, (0, banner))
    draw = ImageDraw.Draw(sheet)
    headline = "(no digits found)" if reading.confidence is None else (
        f"{reading.text}  {reading.status}, {reading.confidence * 100:.1f} % sure of all digits")
    draw.text((6, text_size // 2), headline, fill="black", font=font)
    line = max(2, max(size) // 300)
    for digit, box in zip(reading.digits, reading.boxes, strict=True):
        left, top, right, bottom = (round(v * scale) for v in box)
        colour = _BOX_COLOURS.get(digit.status, "red")
        draw.rectangle((left, banner + top, max(left, right - 1), banner + max(top, bottom - 1)),
                       outline=colour, width=line)
        label = f"{digit.digit} {digit.confidence * 100:.1f}%"
        above = top - text_size - 2 * line
        draw.text((left, banner + (above if above >= 0 else bottom + line)), label, fill=colour, font=font)
    _save_sheet(sheet, path)
