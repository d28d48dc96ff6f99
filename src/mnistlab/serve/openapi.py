"""The request bodies /docs shows: the routes read their bodies themselves, so FastAPI cannot infer them.

    mnistlab serve runs/<name>     # then open <URL>docs: each POST route's body comes from request_body
"""

from __future__ import annotations

from typing import Any


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
