"""The HTTP API and the drawing page over one Predictor: `create_app(predictor, corrections_dir)`.

    mnistlab serve runs/<name>      # prints the page's URL; the API is described at <URL>docs

Routes (every refusal is a 4xx with the body {"error": "<one line>"}, never a 500):

    GET  /                the drawing page (static/index.html, app.js, style.css)
    POST /v1/predict      multipart `file` (or several `files`), or JSON {"image": "<base64>"} or
                          {"images": [...]} -> {"predictions": [Prediction.to_dict() + input_png]}
    POST /v1/read         one image of a written number -> Reading.to_dict() (+ input_png per digit)
    POST /v1/corrections  one image and its true `label` 0-9 -> <corrections>/<label>/<name>.png
    GET  /v1/model        what is serving: run, runtime, temperature, threshold, limits
    GET  /healthz         {"status": "ok"}

Statuses: 400 malformed input (an image that does not decode included), 404/405 no such route or
method, 408 body too slow to arrive, 413 too many bytes or pixels, 415 neither multipart nor JSON,
503 busy or out of time, 507 corrections folder full. Every limit is a field of Limits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from mnistlab.data import (
    INPUT_SHAPE,
    MAX_PIXELS,
    NUM_CLASSES,
    PREPROCESSING_VERSION,
    decode_image,
    prepare_image,
)
from mnistlab.errors import MnistlabError
from mnistlab.predict import Predictor
from mnistlab.serve.corrections import CorrectionStore, StoreFull
from mnistlab.version import __version__

STATIC = Path(__file__).parent / "static"

# A stored correction's longer side, in pixels: prepare_image finds the ink on at most 640 px
# (images._WORK_SIZE), so larger photos are scaled down to this before they are kept.
CORRECTION_MAX_SIDE = 1024

# The page loads nothing from elsewhere and may not be framed; /docs (Swagger UI from a CDN) is
# left to FastAPI's defaults.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What one request, and the server, may cost."""

    max_request_bytes: int = 10 * 1024 * 1024  # body size, counted as it arrives (bytes)
    max_images: int = 16  # images in one /v1/predict request
    read_timeout_s: float = 30.0  # to receive a whole body (seconds); slower clients get 408
    work_timeout_s: float = 20.0  # decoding and the model for one request (seconds); then 503
    max_pending: int = 32  # requests running or queued for the model; more get 503
    keep_alive_s: float = 5.0  # an idle connection is closed after this (uvicorn timeout_keep_alive)
    max_connections: int = 100  # open connections; more get uvicorn's 503 (limit_concurrency)
    max_corrections: int = 10_000  # images in the corrections folder; more get 507
    max_correction_bytes: int = 500 * 1024 * 1024  # bytes of those images; more get 507


class ApiError(Exception):
    """A refused request: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """One image as received."""

    name: str  # the upload's file name without folders, or "<image N>"
    data: bytes


class _Work:
    """Decoding and the model, off the event loop: bounded threads, queue and time."""

    def __init__(self, threads: int, limits: Limits):
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="mnistlab-serve")
        self._slots = threading.BoundedSemaphore(limits.max_pending)
        self._timeout = limits.work_timeout_s

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, "the server is busy; try again in a moment")
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        # Released when the work really ends: a timed-out job still holds its slot while it runs.
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self._timeout)
        except TimeoutError:
            raise ApiError(
                503, f"the work took longer than {self._timeout:g} s; send fewer or smaller images"
            ) from None


def create_app(
    predictor: Predictor,
    corrections_dir: str | os.PathLike,
    *,
    run_name: str = "",
    runtime: str = "keras",
    limits: Limits = Limits(),
) -> FastAPI:
    """The FastAPI app serving one predictor.

    Args:
        predictor: the model, its temperature and threshold.
        corrections_dir: where POST /v1/corrections stores images (created on first use).
        run_name: what GET /v1/model calls the model.
        runtime: "onnx" or "keras"; a Keras model is run by one thread at a time.
        limits: sizes, counts and timeouts per request.
    """
    app = FastAPI(
        title="mnistlab",
        version=__version__,
        description="Handwritten digits in, digits with calibrated confidence out. "
        "Errors are 4xx with {\"error\": \"<one line>\"}.",
    )
    # ONNX Runtime sessions may be shared by threads; a Keras model's predict may not.
    work = _Work(1 if runtime == "keras" else min(4, os.cpu_count() or 1), limits)
    store = CorrectionStore(corrections_dir, limits.max_corrections, limits.max_correction_bytes)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    @app.get("/healthz", summary="Liveness: the model is loaded and the server answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", summary="The model being served and the limits of a request")
    def model() -> dict[str, Any]:
        return {
            "run": run_name,
            "runtime": runtime,
            "temperature": predictor.temperature,
            "min_confidence": predictor.min_confidence,
            "preprocessing_version": PREPROCESSING_VERSION,
            "classes": list(range(NUM_CLASSES)),
            "input_shape": list(INPUT_SHAPE),
            "limits": {**asdict(limits), "max_pixels": MAX_PIXELS},
            "mnistlab": __version__,
        }

    @app.post("/v1/predict", summary="The digit in each image", openapi_extra=_body_doc(many=True))
    async def predict(request: Request) -> dict[str, Any]:
        uploads, _ = await _parse(request, limits, extra_fields=())
        if not uploads:
            raise ApiError(400, _NO_IMAGE)
        if len(uploads) > limits.max_images:
            raise ApiError(400, f"{len(uploads)} images in one request; the most is {limits.max_images}")
        return {"predictions": await work.run(_predict, predictor, uploads)}

    @app.post("/v1/read", summary="The multi-digit number written in one image", openapi_extra=_body_doc())
    async def read(request: Request) -> dict[str, Any]:
        uploads, _ = await _parse(request, limits, extra_fields=())
        return await work.run(_read, predictor, _one(uploads))

    @app.post(
        "/v1/corrections",
        status_code=201,
        summary="Store an image with the digit it really shows, for fine-tuning",
        openapi_extra=_body_doc(label=True),
    )
    async def corrections(request: Request) -> JSONResponse:
        uploads, fields = await _parse(request, limits, extra_fields=("label",))
        label = _label(fields.get("label"))
        stored = await work.run(_store_correction, store, _one(uploads), label)
        return JSONResponse({"stored": stored, "label": label}, status_code=201)

    return app


_NO_IMAGE = (
    "no image: send one in multipart field 'file' (several in 'files'), "
    "or JSON {\"image\": \"<base64>\"}"
)


def _one(uploads: list[Upload]) -> Upload:
    if not uploads:
        raise ApiError(400, _NO_IMAGE)
    if len(uploads) > 1:
        raise ApiError(400, f"{len(uploads)} images given; this endpoint takes one")
    return uploads[0]


def _label(value: Any) -> int:
    """A correction's digit: an int 0-9, or a string of one digit (as a form field is)."""
    if value is None:
        raise ApiError(400, "no label: give the digit the image really shows in 'label' (0-9)")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < NUM_CLASSES:
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]\s*", value):
        return int(value)
    shown = repr(value)[:40]
    raise ApiError(400, f"label must be one digit 0-9, not {shown}")


# -- reading requests ------------------------------------------------------------------------


Parsed = tuple[list[Upload], dict[str, Any]]  # the images, and the other fields asked for


async def _parse(request: Request, limits: Limits, extra_fields: tuple[str, ...]) -> Parsed:
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
        data = json.loads(body)
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


# -- the work, run in _Work's threads --------------------------------------------------------


def _decode(uploads: list[Upload]) -> list[np.ndarray]:
    """Grey levels of every upload, refused (413) past MAX_PIXELS in all: a request's memory
    is bounded as each image's is by the decoder."""
    images, total = [], 0
    for upload in uploads:
        image = decode_image(upload.data, name=upload.name)
        total += image.size
        if total > MAX_PIXELS:
            raise ApiError(413, f"the images hold over {MAX_PIXELS:,} pixels together; send fewer at a time")
        images.append(image)
    return images


def _png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _predict(predictor: Predictor, uploads: list[Upload]) -> list[dict[str, Any]]:
    answers = predictor.predict(_decode(uploads), names=[u.name for u in uploads])
    return [{**p.to_dict(), "input_png": _png_base64(p.image)} for p in answers]


def _read(predictor: Predictor, upload: Upload) -> dict[str, Any]:
    reading = predictor.read(_decode([upload])[0], name=upload.name)
    out = reading.to_dict()
    for digit, p in zip(out["digits"], reading.digits, strict=True):
        digit["input_png"] = _png_base64(p.image)
    return out


def _store_correction(store: CorrectionStore, upload: Upload, label: int) -> str:
    """Re-encode the decoded image as a grey PNG (what is kept is never the client's bytes)."""
    grey = _decode([upload])[0]
    if not prepare_image(grey).has_ink:
        raise ApiError(400, "the image holds no digit (no ink found); nothing was stored")
    picture = Image.fromarray(np.uint8(np.round(np.clip(grey, 0, 1) * 255)))
    picture.thumbnail((CORRECTION_MAX_SIDE, CORRECTION_MAX_SIDE), Image.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return store.add(buffer.getvalue(), label)


# -- errors as {"error": "<one line>"} -------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())[:500]}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _error(exc.status, str(exc))

    async def store_full(request: Request, exc: Exception) -> JSONResponse:
        return _error(507, str(exc))

    async def bad_input(request: Request, exc: Exception) -> JSONResponse:
        # ImageError, PredictError: raised by the library about the input it was given.
        return _error(400, str(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        where = f"{request.method} {request.url.path[:100]}"
        if exc.status_code == 404:
            message = f"no such route: {where}; the API is described at /docs"
        elif exc.status_code == 405:
            message = f"method not allowed: {where}"
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message, headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}")

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the input: the traceback goes to the server's log (uvicorn re-raises it).
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StoreFull, store_full)
    app.add_exception_handler(MnistlabError, bad_input)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)


def _body_doc(many: bool = False, label: bool = False) -> dict[str, Any]:
    """The request body for /docs: the routes read it themselves, to bound it as it arrives."""
    multipart: dict[str, Any] = {"file": {"type": "string", "format": "binary"}}
    as_json: dict[str, Any] = {"image": {"type": "string", "description": "the image file, base64"}}
    if many:
        multipart["files"] = {"type": "array", "items": {"type": "string", "format": "binary"}}
        as_json["images"] = {"type": "array", "items": {"type": "string"}}
    required = []
    if label:
        multipart["label"] = as_json["label"] = {"type": "integer", "minimum": 0, "maximum": 9}
        required = ["label"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": multipart, "required": required}},
                "application/json": {"schema": {"type": "object", "properties": as_json, "required": required}},
            },
        }
    }
