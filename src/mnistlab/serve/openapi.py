"""The request and response bodies /docs shows: the routes read and build their bodies themselves,
so FastAPI cannot infer them.

    mnistlab serve     # then open <URL>docs: each POST route's body and answer come from here

The statuses are described here for apps: STATUS_MEANING is what each promises.
"""

from __future__ import annotations

from typing import Any

from mnistlab.predict import STATUSES

# What each status promises an app (mnistlab.predict); the same words as the README's table.
STATUS_MEANING = {
    "ok": "the calibrated confidence reaches min_confidence (GET /v1/model): take the answer",
    "unsure": "below min_confidence: digit and confidence are the best guess, for a person to confirm",
    "no_digit": "no ink worth reading: digit and confidence are null and top3 is empty",
}
assert tuple(STATUS_MEANING) == STATUSES


def request_body(many: bool = False, label: bool = False) -> dict[str, Any]:
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


def _status(what: str) -> dict[str, Any]:
    meaning = "; ".join(f"{name}: {text}" for name, text in STATUS_MEANING.items())
    return {"type": "string", "enum": list(STATUSES), "description": f"{what}. {meaning}."}


def prediction_schema(box: bool = False) -> dict[str, Any]:
    """One image's answer, as Prediction.to_dict() gives it (+ input_png, and box in a reading)."""
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    properties: dict[str, Any] = {
        "path": {"type": "string", "description": "the upload's file name, or \"<image N>\""},
        "digit": {"type": ["integer", "null"], "minimum": 0, "maximum": 9,
                  "description": "the most likely digit; null when status is no_digit"},
        "confidence": {**probability, "type": ["number", "null"],
                       "description": "its calibrated probability; null when status is no_digit"},
        "top3": {"type": "array", "maxItems": 3, "description": "most likely first; empty when status is no_digit",
                 "items": {"type": "object", "properties": {"digit": {"type": "integer"}, "confidence": probability}}},
        "status": _status("how far to trust the digit"),
        "input_png": {"type": "string", "description": "the 28x28 image the model saw, a PNG in base64"},
    }
    if box:
        properties["box"] = {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4,
                             "description": "top, left, bottom, right of the digit in the image, in pixels"}
    return {"type": "object", "properties": properties, "required": list(properties)}


def predictions_response() -> dict[str, Any]:
    """/v1/predict's answer for /docs: one prediction per image, in order."""
    schema = {"type": "object", "properties": {"predictions": {"type": "array", "items": prediction_schema()}},
              "required": ["predictions"]}
    return _answer("One answer per image, in the order sent.", schema)


def reading_response() -> dict[str, Any]:
    """/v1/read's answer for /docs: the number, its joint confidence and status, and each digit."""
    schema = {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "text": {"type": "string", "description": "the digits left to right; \"\" when no_digit"},
            "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                           "description": "the probability that every digit is right (the product of theirs); "
                                          "null when no_digit"},
            "status": _status("the number's: ok only when its joint confidence reaches min_confidence"),
            "digits": {"type": "array", "items": prediction_schema(box=True)},
        },
        "required": ["path", "text", "confidence", "status", "digits"],
    }
    return _answer("The number written in the image.", schema)


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"responses": {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}}
