"""Reading a request: the images and fields of a multipart or JSON body, bounded as it arrives.

    curl -F file=@7.png http://127.0.0.1:8000/v1/predict    # parse_request reads the `file` part

Limits says what one request, and the server, may cost; ApiError is a refusal with its HTTP status,
which the app turns into {"error": "<one line>"}. Nothing here runs the model.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from mnistlab.data import NUM_CLASSES


@dataclass(frozen=True)
class Limits:
    """What one request, and the server, may cost."""

    max_request_bytes: int = 10 * 1024 * 1024  # body size, counted as it arrives (bytes)
    max_images: int = 16  # images in one /v1/predict request
    read_timeout_s: float = 30.0  # to receive a whole body (seconds); slower clients get 408
    work_timeout_s: float = 20.0  # decoding and the model for one request (seconds); then 503
    max_pending: int = 32  # requests running or queued for the model; more get 503
    # Pixels being decoded at once, all requests together (~12 bytes each at the peak, so ~600 MB):
    # a request whose images would pass it waits for others to finish (within work_timeout_s,
    # then 503); one whose images alone pass it gets 413.
    max_decoding_pixels: int = 50_000_000
    keep_alive_s: float = 5.0  # an idle connection is closed after this (uvicorn timeout_keep_alive)
    # From a connection's opening (or the first byte of its next request) to that request's
    # complete headers (seconds); then the connection is closed (serve.connections).
    header_timeout_s: float = 10.0
    # Open connections; a new one past this closes the one that has waited longest for a request,
    # and requests past this many at once get 503 (serve.connections).
    max_connections: int = 100
    max_corrections: int = 10_000  # images in the corrections folder; more get 507
    max_correction_bytes: int = 500 * 1024 * 1024  # bytes of those images; more get 507


DEFAULT_LIMITS = Limits()  # frozen, so this one instance can be every function's default


class ApiError(Exception):
    """A refused request: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error_json(message: str) -> bytes:
    """The body of every refusal, the app's and the connection's: {"error": "<one line>"}."""
    return json.dumps({"error": " ".join(str(message).split())[:500]}).encode()


@dataclass(frozen=True)
class Upload:
    """One image as received."""

    name: str  # the upload's file name without folders, or "<image N>"
    data: bytes


_NO_IMAGE = (
    "no image: send one in multipart field 'file' (several in 'files'), "
    "or JSON {\"image\": \"<base64>\"}"
)


def some_images(uploads: list[Upload], limits: Limits) -> list[Upload]:
    """The uploads of a request that takes several: at least one, at most max_images."""
    if not uploads:
        raise ApiError(400, _NO_IMAGE)
    if len(uploads) > limits.max_images:
        raise ApiError(400, f"{len(uploads)} images in one request; the most is {limits.max_images}")
    return uploads


def one_image(uploads: list[Upload]) -> Upload:
    """The upload of a request that takes exactly one."""
    if not uploads:
        raise ApiError(400, _NO_IMAGE)
    if len(uploads) > 1:
        raise ApiError(400, f"{len(uploads)} images given; this endpoint takes one")
    return uploads[0]


def parse_label(value: Any) -> int:
    """A correction's digit: an int 0-9, or a string of one digit (as a form field is)."""
    if value is None:
        raise ApiError(400, "no label: give the digit the image really shows in 'label' (0-9)")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < NUM_CLASSES:
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]\s*", value):
        return int(value)
    shown = repr(value)[:40]
    raise ApiError(400, f"label must be one digit 0-9, not {shown}")


Parsed = tuple[list[Upload], dict[str, Any]]  # the images, and the other fields asked for


async def parse_request(request: Request, limits: Limits, extra_fields: tuple[str, ...]) -> Parsed:
    """The images of a multipart or JSON request, and the values of `extra_fields`.

    Raises:
        ApiError: 400 malformed, 408 too slow, 413 too large, 415 another content type.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            if content_type == "multipart/form-data":
                return await _parse_multipart(request, limits, extra_fields)
            if content_type == "application/json":
                chunks = [chunk async for chunk in _body(request, limits)]
                return _parse_json(b"".join(chunks), extra_fields)
    except TimeoutError:
        raise ApiError(408, f"the request body took over {limits.read_timeout_s:g} s to arrive") from None
    shown = f"Content-Type {content_type}" if content_type else "a body without Content-Type"
    raise ApiError(415, f"{shown} is not accepted; send multipart/form-data or application/json")


async def _body(request: Request, limits: Limits) -> AsyncIterator[bytes]:
    """The body as it arrives, refused (413) once past max_request_bytes: a chunked body has no
    Content-Length, and a declared one is only believed when it is already too large."""
    limit = limits.max_request_bytes
    too_large = f"the request body is over the limit of {limit:,} bytes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, too_large)
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, too_large)
            yield chunk
    except ClientDisconnect:
        # Gone mid-body, or a body uvicorn refused (bad chunked encoding) after the route began:
        # nobody reads the answer, but it is a refusal, not a traceback in the log.
        raise ApiError(400, "the client disconnected before the body arrived") from None


async def _parse_multipart(request: Request, limits: Limits, extra_fields: tuple[str, ...]) -> Parsed:
    parser = MultiPartParser(
        request.headers,
        _body(request, limits),
        max_files=limits.max_images + 1,  # one more, so that too many is told as such below
        max_fields=len(extra_fields) + 1,
    )
    # A text field (a label) is a few bytes. Set after construction: the keyword came after
    # starlette 0.40, whose parser has the same limit as a class attribute.
    parser.max_part_size = 1024
    try:
        form = await parser.parse()
    except ApiError:
        raise
    except MultiPartException as e:
        raise ApiError(400, f"multipart body refused: {e.message}") from None
    except Exception as e:  # noqa: BLE001 - python-multipart's parse errors have no common base
        raise ApiError(400, f"malformed multipart body ({type(e).__name__}: {e})") from None
    uploads: list[Upload] = []
    fields: dict[str, Any] = {}
    try:
        for key, value in form.multi_items():
            if key in ("file", "files"):
                if not isinstance(value, UploadFile):
                    raise ApiError(400, f"field '{key}' must be a file upload, not a text value")
                uploads.append(Upload(_upload_name(value.filename, len(uploads)), await value.read()))
            elif key in extra_fields and isinstance(value, str):
                if key in fields:  # which one was meant? Not for us to guess
                    raise ApiError(400, f"field '{key}' is given more than once; give it once")
                fields[key] = value
            else:
                raise ApiError(400, f"unexpected field '{key[:40]}'; images go in 'file' or 'files'")
    finally:
        await form.close()
    return uploads, fields


def _upload_name(filename: str | None, index: int) -> str:
    """The name an answer is given: the file name without any folders, never used as a path."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable())[:200]
    return name or f"<image {index}>"


def _parse_json(body: bytes, extra_fields: tuple[str, ...]) -> Parsed:
    try:
        data = json.loads(body, object_pairs_hook=_object)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, f"the body is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object such as {\"image\": \"<base64>\"}")
    unexpected = sorted(set(data) - {"image", "images", *extra_fields})
    if unexpected:
        raise ApiError(400, f"unexpected key '{unexpected[0][:40]}'; images go in 'image' or 'images'")
    if "image" in data and "images" in data:
        raise ApiError(400, "give 'image' or 'images', not both")
    items = [data["image"]] if "image" in data else data.get("images", [])
    if not isinstance(items, list):
        raise ApiError(400, "'images' must be a list of base64 strings")
    uploads = [Upload(f"<image {k}>", _from_base64(item, k)) for k, item in enumerate(items)]
    return uploads, {key: data[key] for key in extra_fields if key in data}


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it names a key twice (json.loads would keep the last)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ApiError(400, f"key '{key[:40]}' is given more than once; give it once")
        found[key] = value
    return found


def _from_base64(item: Any, index: int) -> bytes:
    """An image file's bytes from base64, or from a data: URL as canvas.toDataURL() gives."""
    if not isinstance(item, str):
        raise ApiError(400, f"image {index} must be a base64 string, not {type(item).__name__}")
    if item.startswith("data:"):
        item = item.partition(",")[2]
    try:
        return base64.b64decode("".join(item.split()), validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        raise ApiError(400, f"image {index} is not valid base64") from None
