"""Prediction: images in, digits with calibrated confidence out; shared by the CLI and the server.

    mnistlab predict runs/<name> photo.jpg drawing.png [--json] [--show sheet.png]
    mnistlab read runs/<name> number.jpg

Every image goes through the one preprocessing path (mnistlab.data.prepare_image, MNIST's own
normalisation), then the run's model, then the run's temperature (fitted on its validation
split at training time). A prediction is "unsure" below a minimum calibrated confidence and
"no_digit" when the image holds no ink; the most likely digit is given either way.

Keras and the image libraries are imported when first needed, so `import mnistlab` stays light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.calibrate import apply_temperature
from mnistlab.errors import MnistlabError
from mnistlab.files import atomic_write
from mnistlab.inference import predict_probs
from mnistlab.runtimes import OnnxModel, load_keras, load_runtime

# Below this probability the answer is "unsure". On the 130 real images of benchmarks/
# realworld.py the default `fast` run (label smoothing, no temperature) errs 3 times, at 36-60 %:
# 0.6 marks all 3 unsure and 6 of the 127 right answers; 0.5 marks 1 of the 3 and 2 right ones.
DEFAULT_MIN_CONFIDENCE = 0.6

STATUSES = ("ok", "unsure", "no_digit")

Source = str | os.PathLike | bytes | np.ndarray


class PredictError(MnistlabError):
    """Input that cannot be predicted on: no images, a folder without images."""


@dataclass(frozen=True)
class Prediction:
    """One image's answer."""

    path: str  # the file, or "<image N>" for arrays and bytes
    digit: int  # the most likely class, always given
    confidence: float  # its calibrated probability
    top3: tuple[tuple[int, float], ...]  # (digit, calibrated probability), most likely first
    status: str  # ok | unsure (confidence below the minimum) | no_digit (no ink found)
    image: np.ndarray  # (28, 28) uint8: what the model saw

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `mnistlab predict --json` prints and the server returns."""
        return {
            "path": self.path,
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "top3": [{"digit": d, "confidence": round(p, 6)} for d, p in self.top3],
            "status": self.status,
        }


@dataclass(frozen=True)
class Reading:
    """A multi-digit number read from one image."""

    path: str
    text: str  # the digits left to right; "" when no ink was found
    digits: tuple[Prediction, ...]
    boxes: tuple[tuple[int, int, int, int], ...]  # (top, left, bottom, right) in the image

    @property
    def confidence(self) -> float:
        """The probability that every digit is right, as the calibrated model sees it."""
        return float(np.prod([d.confidence for d in self.digits])) if self.digits else 0.0

    @property
    def status(self) -> str:
        if not self.digits:
            return "no_digit"
        return "unsure" if any(d.status != "ok" for d in self.digits) else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "text": self.text,
            "confidence": round(self.confidence, 6),
            "status": self.status,
            "digits": [
                {**d.to_dict(), "box": list(box)} for d, box in zip(self.digits, self.boxes, strict=True)
            ],
        }


class Predictor:
    """A model with its temperature and threshold: the thing the CLI and the server hold."""

    def __init__(self, model: Any, temperature: float = 1.0, min_confidence: float = DEFAULT_MIN_CONFIDENCE):
        if not 0.0 <= min_confidence <= 1.0:
            raise PredictError(f"min_confidence must be in [0, 1], not {min_confidence}.")
        self.model = model
        self.temperature = float(temperature)
        self.min_confidence = float(min_confidence)

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

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated (N, 10) probabilities for uint8 MNIST-format images (N, 28, 28)."""
        if len(images) == 0:
            return np.zeros((0, 10))
        return apply_temperature(predict_probs(self.model, images), self.temperature)

    def _answers(self, prepared: list[Any], names: list[str]) -> list[Prediction]:
        images = np.stack([p.image for p in prepared]) if prepared else np.zeros((0, 28, 28), np.uint8)
        probs = self.probabilities(images)
        out = []
        for p, name, row in zip(prepared, names, probs, strict=True):
            order = np.argsort(row)[::-1]
            digit, confidence = int(order[0]), float(row[order[0]])
            if not p.has_ink:
                status = "no_digit"
            elif confidence < self.min_confidence:
                status = "unsure"
            else:
                status = "ok"
            top3 = tuple((int(k), float(row[k])) for k in order[:3])
            out.append(Prediction(name, digit, confidence, top3, status, p.image))
        return out

    def predict(self, sources: list[Source], names: list[str] | None = None) -> list[Prediction]:
        """One Prediction per image, in input order.

        Args:
            sources: image files, encoded bytes, or decoded arrays (see prepare_image).
            names: what each is called in the answers; file paths by default.

        Raises:
            ImageError: an image that cannot be decoded (nothing is predicted then).
        """
        from mnistlab.data import prepare_image  # Pillow and SciPy load with the first image

        names = names or [_name(s, k) for k, s in enumerate(sources)]
        return self._answers([prepare_image(s) for s in sources], names)

    def read(self, source: Source, name: str | None = None) -> Reading:
        """The multi-digit number written in one image, left to right.

        Raises:
            ImageError: the image cannot be decoded.
        """
        from mnistlab.data import segment_digits

        name = name or _name(source, 0)
        parts = segment_digits(source)
        digits = self._answers(parts, [f"{name}#{k}" for k in range(len(parts))])
        return Reading(
            path=name,
            text="".join(str(d.digit) for d in digits),
            digits=tuple(digits),
            boxes=tuple(tuple(p.box) for p in parts),
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


def load_predictor(run: str | os.PathLike, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> tuple[Predictor, str]:
    """The run's Predictor and its runtime, "onnx" or "keras" (see mnistlab.runtimes.load_runtime).

    Raises:
        RunError, ExportError: no such run, or a model that cannot be loaded.
    """
    model, temperature, runtime = load_runtime(run)
    return Predictor(model, temperature, min_confidence), runtime


def predict(
    run: str | os.PathLike,
    images: list[Source] | Source,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[Prediction]:
    """Digits in images, with the model of a run folder: the Python form of `mnistlab predict`.

        >>> mnistlab.predict("runs/fast-20261130-061204", ["seven.jpg"])[0].digit

    Args:
        run: a run folder written by `mnistlab train`.
        images: image files, encoded bytes or decoded arrays (one, or a list); folders are
            expanded to the images in them.
        min_confidence: below this calibrated probability the status is "unsure".

    Raises:
        MnistlabError (RunError, ImageError, PredictError): one clear reason.
    """
    if not isinstance(images, list):
        images = [images]
    if all(isinstance(s, (str, os.PathLike)) for s in images):
        images = list(image_files(images))
    return Predictor.from_run(run, min_confidence).predict(images)


def read_number(
    run: str | os.PathLike, image: Source, min_confidence: float = DEFAULT_MIN_CONFIDENCE
) -> Reading:
    """The multi-digit number written in one image: the Python form of `mnistlab read`."""
    return Predictor.from_run(run, min_confidence).read(image)


def contact_sheet(sources: list[Source], predictions: list[Prediction], path: str | os.PathLike) -> None:
    """A PNG with one row per image: the original, what the model saw (28x28, enlarged), and
    the answer. Written atomically.
    """
    from PIL import Image, ImageDraw

    from mnistlab.data import decode_image


    cell, text_w = 112, 220
    sheet = Image.new("L", (2 * cell + text_w, cell * len(predictions)), 255)
    draw = ImageDraw.Draw(sheet)
    for row, (source, p) in enumerate(zip(sources, predictions, strict=True)):
        if isinstance(source, np.ndarray):
            grey = source.astype(np.float32) / (255.0 if source.dtype == np.uint8 else 1.0)
        else:
            grey = decode_image(source)
        original = Image.fromarray(np.uint8(np.clip(grey, 0, 1) * 255))
        original.thumbnail((cell - 8, cell - 8))
        top = row * cell
        sheet.paste(original, ((cell - original.width) // 2, top + (cell - original.height) // 2))
        sheet.paste(Image.fromarray(p.image).resize((cell - 8, cell - 8), Image.NEAREST), (cell + 4, top + 4))
        label = f"{p.digit}  {p.confidence * 100:.0f} %  {p.status}\n{Path(p.path).name[:28]}"
        draw.multiline_text((2 * cell + 8, top + cell // 2 - 12), label, fill=0)
    atomic_write(Path(path), lambda f: sheet.save(f, format="PNG"))
