"""The API's bodies as /docs and client generators see them: a Pydantic model for every answer
and refusal, and the request bodies (which the routes read themselves, to bound them as they arrive).

    mnistlab serve     # then open <URL>docs, or give <URL>openapi.json to a client generator

The answer models are the routes' response models, so FastAPI checks every answer against its
model before sending it: a key mnistlab.predict adds without a field here is a 500 in the tests,
never an untyped key in clients. Every model allows no other keys (additionalProperties: false)
and converts nothing it is given (strict), so a body is the library's dict as it was, key for key;
only an int where a number is due goes out as a float (a Limits(work_timeout_s=2) as 2.0).
STATUS_MEANING is what each status promises an app.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mnistlab.data import INPUT_SHAPE, MAX_PIXELS, NUM_CLASSES
from mnistlab.predict import STATUSES
from mnistlab.serve.requests import Limits

# What each status promises an app (mnistlab.predict); the same words as the table in docs/reference/answers.md.
STATUS_MEANING = {
    "ok": "the calibrated confidence reaches min_confidence (GET /v1/model): take the answer",
    "unsure": "below min_confidence: digit and confidence are the best guess, for a person to confirm",
    "no_digit": "no ink worth reading: digit and confidence are null and top3 is empty",
}
assert tuple(STATUS_MEANING) == STATUSES

Status = Literal[STATUSES]  # an enum in the schema: "ok" | "unsure" | "no_digit"
Digit = Annotated[int, Field(ge=0, le=NUM_CLASSES - 1)]
Probability = Annotated[float, Field(ge=0, le=1)]
InputPng = Annotated[str, Field(description="the 28x28 image the model saw, a PNG in base64")]


def _status(what: str) -> Any:
    meaning = "; ".join(f"{name}: {text}" for name, text in STATUS_MEANING.items())
    return Field(description=f"{what}. {meaning}.")


class _Body(BaseModel):
    """These keys and no others, of these types as given (strict: no string read as a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Guess(_Body):
    """One of the most likely digits."""

    digit: Digit
    confidence: Probability = Field(description="its calibrated probability")


class Box(_Body):
    """Where a read digit is in its image, in pixels (mnistlab.predict.Box, the one home of the
    convention): x from the left, y from the top, right and bottom exclusive (as PIL's Image.crop)."""

    left: int = Field(ge=0)
    top: int = Field(ge=0)
    right: int = Field(ge=0)
    bottom: int = Field(ge=0)


class _Answer(_Body):
    """One image's answer: Prediction.to_dict()."""

    path: str = Field(description='the upload\'s file name, or "<image N>"')
    digit: Digit | None = Field(description="the most likely digit; null when status is no_digit")
    confidence: Probability | None = Field(
        description="its calibrated probability; null when status is no_digit")
    top3: list[Guess] = Field(max_length=3, description="most likely first; empty when status is no_digit")
    status: Status = _status("how far to trust the digit")


class Prediction(_Answer):
    """One image's answer and the image the model saw."""

    input_png: InputPng


class ReadDigit(_Answer):
    """One digit of a number read from an image: its answer, where it is and what the model saw."""

    box: Box
    input_png: InputPng


class Predictions(_Body):
    """POST /v1/predict's answer."""

    predictions: list[Prediction] = Field(description="one answer per image, in the order sent")


class Reading(_Body):
    """POST /v1/read's answer: the number, its joint confidence and status, and each digit."""

    path: str = Field(description='the upload\'s file name, or "<image 0>"')
    text: str = Field(description='the digits left to right; "" when status is no_digit')
    confidence: Probability | None = Field(
        description="the probability that every digit is right (the product of theirs); null when no_digit")
    status: Status = _status("the number's: ok only when its joint confidence reaches min_confidence")
    digits: list[ReadDigit] = Field(description="left to right; empty when status is no_digit")


class Correction(_Body):
    """POST /v1/corrections' answer: where the image was stored, and under which digit."""

    stored: str = Field(description='its path in the corrections folder, e.g. "3/20260101-120000-1f2e3d4c5b6a.png"')
    label: Digit


# GET /v1/model's limits: every field of requests.Limits (the one home of their meaning), and the
# decoder's MAX_PIXELS. Made from the dataclass so that a new limit is typed here too.
RequestLimits = create_model(
    "RequestLimits",
    __base__=_Body,
    __doc__="What one request, and the server, may cost (mnistlab.serve.Limits).",
    **{f.name: (typing.get_type_hints(Limits)[f.name], ...) for f in dataclasses.fields(Limits)},
    max_pixels=(int, Field(description=f"pixels of one image, or of one request's images together ({MAX_PIXELS:,})")),
)


class Teaching(_Body):
    """Whether the page's "teach it my handwriting" mode (/v1/finetune) is on, and if not, why."""

    available: bool
    reason: str | None = Field(description="why not, when it is not available")


class LessonScores(_Body):
    """A model's accuracy on the person's held-back drawings and on MNIST's test set."""

    yours: Probability | None = Field(description="on the held-back drawings; null when too few were held back")
    mnist: Probability = Field(description="on MNIST's 10,000 test digits")


class LessonResult(_Body):
    """A finished lesson: the personal model, and its parent's and its own scores."""

    lesson: str = Field(description="the personal model's folder, RUN/personal/<lesson>")
    learnt_from: int = Field(ge=0, description="drawings learnt from")
    held_out: int = Field(ge=0, description="drawings held back to score the lesson, one in four of each digit's")
    before: LessonScores
    after: LessonScores
    seconds: float = Field(ge=0, description="from the request to the new model being served")


class Lesson(_Body):
    """GET and POST /v1/finetune's answer: the drawings stored, and the lesson running or the last one's outcome."""

    state: Literal["idle", "running", "done", "failed"]
    samples: list[int] = Field(min_length=NUM_CLASSES, max_length=NUM_CLASSES,
                               description="drawings stored for each digit 0-9")
    min_samples: int = Field(description="drawings a lesson needs, one digit drawn twice at least")
    phase: Literal["starting", "reading", "learning", "checking", "exporting", "done", "failed"] | None = Field(
        description="while running: what the lesson is doing (done or failed: its process is ending)")
    progress: Probability | None = Field(description="while running: how far it is, 0 to 1")
    eta_s: float | None = Field(description="while learning: seconds left to learn (checking follows)")
    elapsed_s: float | None = Field(description="while running: seconds since it started")
    result: LessonResult | None = Field(description="when done")
    error: str | None = Field(description="when failed: why, in one line; the model served before goes on")


class ModelInfo(_Body):
    """GET /v1/model's answer: what is serving, and what a request may cost."""

    run: str = Field(description='the run folder\'s name; "reader" for the shipped reader')
    runtime: Literal["onnx", "keras"]
    temperature: float = Field(gt=0, description="divides the logits before the softmax (calibration)")
    min_confidence: Probability = Field(description='below this calibrated probability the status is "unsure"')
    preprocessing_version: int = Field(ge=1)
    classes: list[Digit]
    input_shape: list[int] = Field(min_length=len(INPUT_SHAPE), max_length=len(INPUT_SHAPE),
                                   description="height, width, channels of the model's input")
    limits: RequestLimits  # type: ignore[valid-type]  # made by create_model
    teach: Teaching
    mnistlab: str = Field(description="the version of mnistlab serving")


class Health(_Body):
    """GET /healthz's answer."""

    status: Literal["ok"]


class Error(_Body):
    """Every refusal's body."""

    error: str = Field(description="why, in one line")


# The refusals a route may send, with the Error body; every route also has "default" for those any
# request may meet (408, 431 and 503 from the connection, 500 on a bug).
REFUSALS = {
    400: "malformed input: no image or too many, an image that does not decode (or, to correct, shows no digit), "
         "a bad or repeated field; for a lesson, too few drawings stored",
    403: "a write from another site's page, or to a Host that is not a name of this server",
    408: "the body took over read_timeout_s to arrive (the limits are in GET /v1/model)",
    413: "too many bytes (max_request_bytes) or pixels (max_pixels, max_decoding_pixels)",
    409: "a lesson is running already",
    415: "the body is neither multipart/form-data nor application/json",
    503: "busy (max_pending, max_connections), or the work took over work_timeout_s",
    507: "the corrections folder is full (max_corrections, max_correction_bytes); make room, then retry",
}
_ANY_REQUEST = ("any other refusal: 400 broken HTTP, 408 headers too slow, 431 headers too large, 503 too many "
                "connections, 500 a bug in the server (its log has the details)")


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that may refuse with these statuses, for /docs."""
    documented: dict[int | str, dict[str, Any]] = {s: {"model": Error, "description": REFUSALS[s]} for s in statuses}
    documented["default"] = {"model": Error, "description": _ANY_REQUEST}
    return documented


def request_body(many: bool = False, label: bool = False) -> dict[str, Any]:
    """The request body for /docs: the routes read it themselves, to bound it as it arrives."""
    multipart: dict[str, Any] = {"file": {"type": "string", "format": "binary"}}
    as_json: dict[str, Any] = {"image": {"type": "string", "description": "the image file, base64"}}
    if many:
        multipart["files"] = {"type": "array", "items": {"type": "string", "format": "binary"}}
        as_json["images"] = {"type": "array", "items": {"type": "string"}}
    if label:
        multipart["label"] = as_json["label"] = {"type": "integer", "minimum": 0, "maximum": NUM_CLASSES - 1}

    def schema(properties: dict[str, Any]) -> dict[str, Any]:  # other keys are refused (requests.py)
        required = {"required": ["label"]} if label else {}
        return {"type": "object", "properties": properties, **required, "additionalProperties": False}

    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": schema(multipart)},
                "application/json": {"schema": schema(as_json)},
            },
        }
    }
