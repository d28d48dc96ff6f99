"""Users' image files to grey levels: the one place Pillow reads what a user sends.

    python -c "from mnistlab.data import decode_image; print(decode_image('seven.jpg').shape)"

`decode_image` opens PNG, JPEG, WebP, BMP, GIF and TIFF from a path or bytes, refuses what is
oversized or damaged with one-sentence ImageErrors, applies EXIF orientation and flattens
transparency, giving (H, W) float32 grey levels in [0, 1]. `images` and `segment` start from here.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mnistlab.data.mnist import DataError

MAX_PIXELS = 40_000_000  # larger images are refused (decompression bombs, 100-megapixel photos)
# Pillow's JPEG reader also opens MPO, a phone's JPEG with a second frame (depth, stereo).
# File types read from a folder (predict DIR, digit folders, reports); others are skipped, not
# refused. Each is one of the formats below (.mpo: a phone's multi-picture JPEG).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".mpo", ".webp", ".bmp", ".gif", ".tif", ".tiff")

_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


class ImageError(DataError):
    """An image could not be read or is unusable; the message names it in one sentence."""


def decode_image(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Read an image file into (H, W) float32 grey levels in [0, 1] (0 black, 1 white).

    PNG, JPEG (a phone's MPO too), WebP, BMP, GIF and TIFF; the first frame of animations and
    multi-page files. EXIF orientation is applied. Transparent pixels become white paper, or
    black when the visible strokes are light (white ink drawn on a transparent canvas).

    Args:
        source: a path, or the file's bytes.
        name: what messages call the image; the path, or "<N bytes>", by default.

    Raises:
        ImageError: missing or unreadable file, not an image, damaged or truncated, no pixels,
            NaN pixels, or more than MAX_PIXELS (judged from the header, before decoding).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or f"<{len(source)} bytes>"
        if len(source) == 0:
            raise ImageError(f"Image {label} is empty (0 bytes).")
        return _decode(io.BytesIO(source), label)
    path = os.fspath(source)  # TypeError for anything else, before open() takes an int as an fd
    label = name or path
    try:
        with open(path, "rb") as stream:
            if os.fstat(stream.fileno()).st_size == 0:
                raise ImageError(f"Image {label} is empty (0 bytes).")
            return _decode(stream, label)
    except FileNotFoundError as exc:
        raise ImageError(f"Image {label} does not exist.") from exc
    except OSError as exc:  # a directory, no permission, an I/O error
        raise ImageError(f"Image {label} could not be read ({exc.strerror or exc}).") from exc
    except ValueError as exc:  # open() refuses a NUL in the path (_decode raises ImageError only)
        raise ImageError(f"Image path {path!r} holds a NUL character; no file has such a name.") from exc


def _decode(stream: io.BufferedIOBase, label: str) -> np.ndarray:
    """Open with Pillow, refuse oversized headers, then load the first frame as grey levels."""
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
    with image:
        width, height = image.size
        if width * height > MAX_PIXELS:  # Image.open read only the header: nothing allocated yet
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
    alpha = np.asarray(rgba.getchannel("A"), np.float32) / 255
    visible = alpha > 0.5
    # Light strokes on a mostly transparent canvas were drawn for a dark page: show them on
    # black. Anything else goes on white paper, as a browser displays it.
    light_strokes = 0 < visible.mean() < 0.5 and np.median(luma[visible]) > 0.5
    paper = 0.0 if light_strokes else 1.0
    return luma * alpha + paper * (1 - alpha)


def as_grey(source: str | os.PathLike | bytes | np.ndarray) -> np.ndarray:
    """Return (H, W) float32 grey levels in [0, 1]: decoded, or a checked copy of an array."""
    if not isinstance(source, np.ndarray):
        return decode_image(source)
    array = source[..., 0] if source.ndim == 3 and source.shape[2] == 1 else source
    if array.ndim != 2 or array.size == 0:
        raise ImageError(f"Image array must be (H, W) grey levels, got shape {source.shape}.")
    if array.size > MAX_PIXELS:
        raise ImageError(f"Image array has {array.size:,} pixels, over the limit of {MAX_PIXELS:,}.")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageError(f"Image array must be uint8 0..255 or float 0..1, got {array.dtype}.")
    grey = array.astype(np.float32)
    if not np.isfinite(grey).all():
        raise ImageError("Image array of floats must hold grey levels in [0, 1], got NaN or inf.")
    if grey.min() < 0 or grey.max() > 1:
        raise ImageError(
            f"Image array of floats must hold grey levels in [0, 1], got {grey.min():g} to "
            f"{grey.max():g}."
        )
    return grey
