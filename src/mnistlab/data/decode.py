"""Users' images to grey levels: the one place Pillow reads what a user sends.

    python -c "from mnistlab.data import decode_image; print(decode_image('seven.jpg').shape)"

`decode_image` opens PNG, JPEG, WebP, BMP, GIF and TIFF from a path or bytes, refuses what is
oversized or damaged with one-sentence ImageErrors, applies EXIF orientation and flattens
transparency, giving (H, W) float32 grey levels in [0, 1]. `as_grey` takes everything else a
person holds an image in too (a PIL image, a NumPy array in grey, RGB or RGBA) to the same grey
levels; `images` and `segment` start from it.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mnistlab.data.formats import MISSING, not_a_regular_file
from mnistlab.data.mnist import DataError

MAX_PIXELS = 40_000_000  # larger images are refused (decompression bombs, 100-megapixel photos)
# Pillow's JPEG reader also opens MPO, a phone's JPEG with a second frame (depth, stereo).
# File types read from a folder (predict DIR, digit folders, reports); others are skipped, not
# refused. Each is one of the formats below (.mpo: a phone's multi-picture JPEG).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".mpo", ".webp", ".bmp", ".gif", ".tif", ".tiff")

_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


class ImageError(DataError):
    """An image could not be read or is unusable; the message names it in one sentence."""


# The grey level of a colour: ITU-R 601-2 luma, the weights Pillow's convert("L") uses, so an
# array and the PNG written from it give the same grey levels (to Pillow's rounding, < 1/255).
_LUMA = (0.299, 0.587, 0.114)
_CHANNELS = {1: "grey", 3: "RGB", 4: "RGBA"}  # an array's last axis, when it has three

Source = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | Image.Image


def decode_image(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Read an image file into (H, W) float32 grey levels in [0, 1] (0 black, 1 white).

    PNG, JPEG (a phone's MPO too), WebP, BMP, GIF and TIFF; the first frame of animations and
    multi-page files. EXIF orientation is applied. Transparent pixels become white paper, or
    black when the visible strokes are light (white ink drawn on a transparent canvas).

    Args:
        source: a path, or the file's bytes.
        name: what messages call the image; the path, or "<N bytes>", by default.

    Raises:
        ImageError: missing or unreadable file, not a regular file (a FIFO or device, refused
            before it is opened), not an image, damaged or truncated, no pixels, NaN pixels, more
            than MAX_PIXELS (judged from the header, before decoding), or a source that is neither
            a path nor bytes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or f"<{len(source)} bytes>"
        if len(source) == 0:
            raise ImageError(f"Image {label} is empty (0 bytes).")
        return _decode(io.BytesIO(source), label)
    if not isinstance(source, (str, os.PathLike)):  # before open() takes an int as an fd
        raise ImageError(f"An image file is given as a path or its bytes, not {_kind(source)}.")
    path = os.fspath(source)
    label = name or path
    problem = not_a_regular_file(path)  # before open(), which waits forever on a FIFO
    if problem is not None:
        shown = repr(label) if "\x00" in str(label) else label  # a NUL would vanish on a terminal
        raise ImageError(f"Image {shown} {problem}.")
    try:
        with open(path, "rb") as stream:
            if os.fstat(stream.fileno()).st_size == 0:
                raise ImageError(f"Image {label} is empty (0 bytes).")
            return _decode(stream, label)
    except FileNotFoundError as exc:  # removed since it was looked at
        raise ImageError(f"Image {label} {MISSING}.") from exc
    except OSError as exc:  # no permission, an I/O error
        raise ImageError(f"Image {label} could not be read ({exc.strerror or exc}).") from exc


def header_pixels(data: bytes) -> int:
    """Width x height of an image file's bytes, read from its header alone (nothing is decoded);
    0 for bytes decode_image refuses before decoding: no image it opens, a header cut short, or
    more than MAX_PIXELS. What a server budgets before it lets an upload decode."""
    try:
        with _open(io.BytesIO(data), "<bytes>") as image:
            width, height = image.size
    except ImageError:
        return 0
    return width * height if width * height <= MAX_PIXELS else 0


def _decode(stream: io.BufferedIOBase, label: str) -> np.ndarray:
    """Open with Pillow, refuse oversized headers, then load the first frame as grey levels."""
    with _open(stream, label) as image:
        return _pillow_grey(image, label)


def _open(stream: io.BufferedIOBase, label: str) -> Image.Image:
    """Pillow's image with only its header read, in one of the formats decode_image opens.

    Raises:
        ImageError: not such an image, a damaged header, or past Pillow's own size limits.
    """
    too_large = f"Image {label} has more than {MAX_PIXELS:,} pixels; scale it down first."
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit (89 Mpx) and raises past twice that; MAX_PIXELS is
            # lower, so either means refusal, and the warning must not reach the user's stderr.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(too_large) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"Image {label} is not a PNG, JPEG, WebP, BMP, GIF or TIFF file Pillow can read."
        ) from exc
    except Exception as exc:  # a header cut short: OSError, SyntaxError, struct.error ...
        raise ImageError(f"Image {label} is damaged or truncated ({_detail(exc)}).") from exc
    return image


def _pillow_grey(image: Image.Image, label: str) -> np.ndarray:
    """Grey levels of an opened Pillow image: size checked before its pixels are loaded."""
    width, height = image.size
    if width * height > MAX_PIXELS:  # an image from Image.open holds only its header so far
        raise ImageError(
            f"Image {label} is {width}x{height} ({width * height:,} pixels), over the limit "
            f"of {MAX_PIXELS:,}; scale it down first."
        )
    if width == 0 or height == 0:
        raise ImageError(f"Image {label} has no pixels ({width}x{height}).")
    try:
        image.load()
        upright = _exif_upright(image)
        grey = _grey(upright)
    # Pillow's decoders report damage as OSError, SyntaxError, ValueError, EOFError,
    # struct.error, IndexError ... depending on the format; all mean the same to the user.
    except Exception as exc:
        raise ImageError(f"Image {label} is damaged or truncated ({_detail(exc)}).") from exc
    if upright.mode == "F" and np.isnan(grey).any():  # a float TIFF can hold NaN
        raise ImageError(f"Image {label} has pixels that are not numbers (NaN).")
    return grey


def _detail(exc: Exception) -> str:
    """Return Pillow's reason on one line, for the end of an ImageError sentence."""
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def _kind(source: object) -> str:
    """What a refused source is, for a message: "a list", "None", "a torch.Tensor"."""
    if source is None:
        return "None"
    kind = type(source)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _exif_upright(image: Image.Image) -> Image.Image:
    """Turn the image as its EXIF orientation tag says; a garbled EXIF block is ignored."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) not in range(2, 9):
            return image  # upright already: exif_transpose would return a copy
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a phone's broken metadata should not cost the picture
        return image


def _grey(image: Image.Image) -> np.ndarray:
    """Return (H, W) float32 grey levels in [0, 1] from any Pillow mode."""
    if image.mode.startswith("I;16"):  # 16-bit PNG and TIFF; convert("L") would clip, not scale
        return np.asarray(image, np.float32) / 65535
    if image.mode in ("I", "F"):  # 32-bit integer or float: 0..1, 0..255 or 0..65535 by content
        values = np.asarray(image, np.float32)
        top = 1.0 if values.max() <= 1 else 255.0 if values.max() <= 255 else 65535.0
        return np.clip(values / top, 0, 1)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image if image.mode == "L" else image.convert("L"), np.float32) / 255
    # Channel by channel below: a float RGBA copy of 40 Mpx is 640 MB.
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    luma = np.asarray(rgba.convert("L"), np.float32) / 255
    if rgba.getchannel("A").getextrema() == (255, 255):  # opaque, as a canvas on a white fill
        return luma
    return _over_paper(luma, np.asarray(rgba.getchannel("A"), np.float32) / 255)


def _over_paper(luma: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Transparent pixels onto paper: white, or black when the visible strokes are light.

    Light strokes on a mostly transparent canvas were drawn for a dark page: show them on black.
    Anything else goes on white paper, as a browser displays it.
    """
    visible = alpha > 0.5
    light_strokes = 0 < visible.mean() < 0.5 and np.median(luma[visible]) > 0.5
    paper = 0.0 if light_strokes else 1.0
    return luma * alpha + paper * (1 - alpha)


def as_grey(source: Source) -> np.ndarray:
    """(H, W) float32 grey levels in [0, 1], from any way a person holds an image.

    Args:
        source: an image file's path or bytes (decode_image); a PIL image (EXIF orientation and
            transparency handled as for a file); or a NumPy array, grey (H, W) or (H, W, 1), RGB
            (H, W, 3) or RGBA (H, W, 4), uint8 0..255 or float 0..1. OpenCV's BGR arrays are
            passed as `img[..., ::-1]` (BGRA as `img[..., [2, 1, 0, 3]]`).

    Raises:
        ImageError: as decode_image; an array of another shape, dtype or range; anything else.
    """
    if isinstance(source, np.ndarray):
        return _array_grey(source)
    if isinstance(source, Image.Image):
        return _pillow_grey(source, "<PIL image>")
    if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return decode_image(source)
    raise ImageError(
        f"An image is a file path, the file's bytes, a PIL image or a NumPy array, not {_kind(source)}"
        + ("; pixel values in a list are made an array with np.asarray(pixels, np.uint8)."
           if isinstance(source, (list, tuple)) else ".")
    )


def _array_grey(array: np.ndarray) -> np.ndarray:
    """Grey levels of a checked array: grey, RGB or RGBA, uint8 or float in [0, 1]."""
    shape = array.shape
    if array.ndim == 3 and shape[2] in _CHANNELS and min(shape[:2]) > 0:
        channels = shape[2]
    elif array.ndim == 2 and array.size:
        channels = 1
    else:
        raise ImageError(
            f"Image array must be grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4), channels last, got shape "
            f"{shape}; give several images as a list of arrays."
        )
    if shape[0] * shape[1] > MAX_PIXELS:
        raise ImageError(f"Image array has {shape[0] * shape[1]:,} pixels, over the limit of {MAX_PIXELS:,}.")
    if array.dtype == np.uint8:
        planes = [array[..., k] if array.ndim == 3 else array for k in range(channels)]
        planes = [plane.astype(np.float32) / 255 for plane in planes]
    elif np.issubdtype(array.dtype, np.floating):
        planes = [(array[..., k] if array.ndim == 3 else array).astype(np.float32) for k in range(channels)]
        if not all(np.isfinite(plane).all() for plane in planes):
            raise ImageError("Image array of floats must hold grey levels in [0, 1], got NaN or inf.")
        low, high = min(float(p.min()) for p in planes), max(float(p.max()) for p in planes)
        if low < 0 or high > 1:
            raise ImageError(
                f"Image array of floats must hold grey levels in [0, 1], got {low:g} to {high:g}"
                + ("; divide 0..255 values by 255." if high <= 255 and low >= 0 else ".")
            )
    else:
        hint = "; convert 0..255 integers with .astype(np.uint8)" if np.issubdtype(array.dtype, np.integer) else ""
        raise ImageError(f"Image array must be uint8 0..255 or float 0..1, got {array.dtype}{hint}.")
    if channels == 1:
        return planes[0]
    luma = planes[0] * np.float32(_LUMA[0]) + planes[1] * np.float32(_LUMA[1]) + planes[2] * np.float32(_LUMA[2])
    if channels == 3 or planes[3].min() == 1:
        return luma
    return _over_paper(luma, planes[3])
