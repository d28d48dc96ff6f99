"""The HTTP API and the drawing page over one Predictor: `create_app(predictor, corrections_dir)`.

    mnistlab serve runs/<name>      # prints the page's URL; the API is described at <URL>docs

Routes (every refusal is a 4xx with the body {"error": "<one line>"}, never a 500):

    GET  /                the drawing page (static/index.html, app.js, style.css)
    POST /v1/predict      multipart `file` (or several `files`), or JSON {"image": "<base64>"} or
                          {"images": [...]} -> {"predictions": [Prediction.to_dict() + input_png]}
    POST /v1/read         one image of a written number -> Reading.to_dict() (+ input_png per digit)
    POST /v1/corrections  one image and its true `label` 0-9 -> <corrections>/<label>/<name>.png
    POST /v1/finetune     start a lesson: learn the stored drawings into a personal model (lessons.py)
    GET  /v1/finetune     the drawings stored per digit, the lesson's progress, then its before/after
    GET  /v1/model        what is serving: run, runtime, temperature, threshold, limits, teach
    GET  /healthz         {"status": "ok"}
    GET  /docs, /redoc    the API described by Swagger UI and ReDoc, served from the fastapi-offline
                          package (nothing is loaded from elsewhere); /openapi.json for clients

Writes (every POST) from a browser are served only from the server's own page: a request with an
Origin header must come from the Host it was sent to, and that Host must be a name of this server
(localhost, an IP address, the machine's name, or one in `allowed_hosts`); else 403. Scripts send
no Origin and are served as before (origins.py says why this stops other sites' pages).

Each answer has a status an app can rely on (openapi.STATUS_MEANING): "ok", "unsure" (below the
minimum confidence; for a number, its joint confidence), or "no_digit" (digit and confidence null).

HTTP statuses: 400 malformed input (an image that does not decode, a field given twice and broken
HTTP included), 403 a write from another site's page, 404/405 no such route or method, 408 headers
or body too slow to arrive, 413 too many bytes or pixels, 415 neither multipart nor JSON, 431
headers too large, 503 busy or out of time, 507 corrections folder full. Every limit is a field of
Limits.

Reading a body into images and fields (and refusing it) is requests.py's job; each answer and
refusal has its Pydantic model in openapi.py (FastAPI checks every answer against its model); the
threads, deadline and pixel budget of the work are work.py's; connections.py bounds the
connections and refuses broken HTTP. Here: the routes and the error replies.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from starlette.exceptions import HTTPException

from mnistlab.data import (
    INPUT_SHAPE,
    MAX_PIXELS,
    NUM_CLASSES,
    PREPROCESSING_VERSION,
    decode_image,
    prepare_image,
)
from mnistlab.errors import MnistlabError
from mnistlab.personal import personal_name
from mnistlab.predict import Predictor
from mnistlab.runs import ONNX_FILE
from mnistlab.serve.corrections import CorrectionStore, StoreFull, open_store
from mnistlab.serve.lessons import Lessons, Model, Served
from mnistlab.serve.openapi import (
    Correction,
    Health,
    Lesson,
    ModelInfo,
    Predictions,
    Reading,
    refusals,
    request_body,
)
from mnistlab.serve.origins import SameOriginWrites, local_names
from mnistlab.serve.requests import (
    DEFAULT_LIMITS,
    ApiError,
    Limits,
    Upload,
    error_json,
    one_image,
    parse_label,
    parse_request,
    some_images,
)
from mnistlab.serve.work import WorkPool
from mnistlab.version import __version__

STATIC = Path(__file__).parent / "static"

# A stored correction's longer side, in pixels: prepare_image finds the ink on at most 640 px
# (ink._WORK_SIZE), so larger photos are scaled down to this before they are kept.
CORRECTION_MAX_SIDE = 1024

# The page loads nothing from elsewhere and may not be framed; /docs (Swagger UI's inline start-up
# script) is left to fastapi-offline's defaults.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

def create_app(
    predictor: Predictor,
    corrections_dir: str | os.PathLike,
    *,
    run_name: str = "",
    runtime: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    allowed_hosts: Iterable[str] = (),
    teach_run: str | os.PathLike | None = None,
    no_teach_reason: str = "",
) -> FastAPI:
    """The FastAPI app serving one predictor, and the personal models its lessons make.

    Args:
        predictor: the model, its temperature and threshold.
        corrections_dir: where POST /v1/corrections stores images (created on first use).
        run_name: what GET /v1/model calls the model ("reader" for the shipped one).
        runtime: "onnx" or "keras" (default: the predictor's); a Keras model is run by one thread
            at a time.
        limits: sizes, counts and timeouts per request.
        allowed_hosts: host names a browser may reach the server by to write, besides localhost,
            IP addresses and this machine's name (the --host given, a proxy's name).
        teach_run: the run that lessons (/v1/finetune) start from, learning the corrections;
            None turns the routes off, and GET /v1/model then gives no_teach_reason.
    """
    runtime = runtime or predictor.runtime
    served = Served(Model(predictor, run_name, runtime))
    # FastAPI with /docs and /redoc whose scripts, styles and favicon come from the package, under
    # /static-offline-docs: they render with no network.
    app = FastAPIOffline(
        title="mnistlab",
        version=__version__,
        description="Handwritten digits in, digits with calibrated confidence out. "
        "Errors are 4xx with {\"error\": \"<one line>\"}. "
        "Writes (POST) from a browser page are served only from this server's own page: a request "
        "with an Origin header must come from the Host it was sent to, and that Host must be "
        "localhost, an IP address or this machine's name; else 403. Scripts (no Origin) are served.",
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would ask validator.swagger.io
    )
    # ONNX Runtime sessions may be shared by threads; a Keras model's predict may not.
    work = WorkPool(1 if runtime == "keras" else min(4, os.cpu_count() or 1), limits)
    store = open_store(corrections_dir, limits.max_corrections, limits.max_correction_bytes)
    _add_error_handlers(app)
    app.add_middleware(SameOriginWrites, names=local_names(allowed_hosts))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    @app.get("/healthz", summary="Liveness: the model is loaded and the server answers",
             response_model=Health, response_description="The server answers.", responses=refusals())
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", summary="The model being served and the limits of a request",
             response_model=ModelInfo, response_description="The model and the limits.", responses=refusals())
    def model() -> dict[str, Any]:
        now = served.model
        return {
            "run": now.name,
            "runtime": now.runtime,
            "temperature": now.predictor.temperature,
            "min_confidence": now.predictor.min_confidence,
            "preprocessing_version": PREPROCESSING_VERSION,
            "classes": list(range(NUM_CLASSES)),
            "input_shape": list(INPUT_SHAPE),
            "limits": {**asdict(limits), "max_pixels": MAX_PIXELS},
            "teach": {"available": teach_run is not None, "reason": None if teach_run is not None else no_teach_reason},
            "mnistlab": __version__,
        }

    @app.post("/v1/predict", summary="The digit in each image",
              response_model=Predictions, response_description="One answer per image, in the order sent.",
              responses=refusals(400, 403, 408, 413, 415, 503), openapi_extra=request_body(many=True))
    async def predict(request: Request) -> dict[str, Any]:
        uploads, _ = await parse_request(request, limits, extra_fields=())
        images = some_images(uploads, limits)
        return {"predictions": await work.run(images, _predict, served.model.predictor, images)}

    @app.post("/v1/read", summary="The multi-digit number written in one image",
              response_model=Reading, response_description="The number written in the image.",
              responses=refusals(400, 403, 408, 413, 415, 503), openapi_extra=request_body())
    async def read(request: Request) -> dict[str, Any]:
        uploads, _ = await parse_request(request, limits, extra_fields=())
        image = one_image(uploads)
        return await work.run([image], _read, served.model.predictor, image)

    @app.post(
        "/v1/corrections",
        status_code=201,
        summary="Store an image with the digit it really shows, for fine-tuning",
        response_model=Correction,
        response_description="The image is stored.",
        responses=refusals(400, 403, 408, 413, 415, 503, 507),
        openapi_extra=request_body(label=True),
    )
    async def corrections(request: Request) -> dict[str, Any]:
        uploads, fields = await parse_request(request, limits, extra_fields=("label",))
        label = parse_label(fields.get("label"))
        image = one_image(uploads)
        stored = await work.run([image], _store_correction, store, image, label)
        return {"stored": stored, "label": label}

    if teach_run is not None:
        _add_lessons(app, Path(teach_run), store, served)
    return app


def _add_lessons(app: FastAPI, run: Path, store: CorrectionStore, served: Served) -> None:
    """POST and GET /v1/finetune: lessons of `run` on the stored drawings, served once learnt."""

    def switch(lesson: Path) -> None:
        predictor = Predictor.from_onnx(lesson / ONNX_FILE, served.model.predictor.min_confidence)
        served.switch(Model(predictor, personal_name(run, lesson), predictor.runtime))

    lessons = Lessons(run, store, switch)

    @app.post("/v1/finetune", status_code=202,
              summary="Learn the stored drawings: a personal model, served once learnt",
              response_model=Lesson, response_description="The lesson has started; GET /v1/finetune follows it.",
              responses=refusals(400, 403, 409))
    def start_lesson() -> dict[str, Any]:
        return lessons.start()

    @app.get("/v1/finetune", summary="The drawings stored, the lesson's progress, then its before/after",
             response_model=Lesson, response_description="The lesson running, or the last one's outcome.",
             responses=refusals())
    def lesson() -> dict[str, Any]:
        return lessons.status()


# -- the work, run in WorkPool's threads --------------------------------------------------------


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


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_json(message), status_code=status, headers=headers, media_type="application/json")


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, str(exc))

    async def store_full(request: Request, exc: Exception) -> Response:
        return _error(507, str(exc))

    async def bad_input(request: Request, exc: Exception) -> Response:
        # ImageError, PredictError: raised by the library about the input it was given.
        return _error(400, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        where = f"{request.method} {request.url.path[:100]}"
        if exc.status_code == 404:
            message = f"no such route: {where}; the API is described at /docs"
        elif exc.status_code == 405:
            message = f"method not allowed: {where}"
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message, headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}")

    async def server_error(request: Request, exc: Exception) -> Response:
        # A bug, not the input (an answer its model refuses included): the traceback goes to the
        # server's log, and uvicorn then drops the connection, so the client is told not to reuse it.
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details",
                      headers={"Connection": "close"})

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StoreFull, store_full)
    app.add_exception_handler(MnistlabError, bad_input)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)
