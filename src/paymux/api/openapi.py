"""The OpenAPI document tells the truth about errors: every operation lists the error
responses it can really answer, with the one error shape; FastAPI's 422 (never returned:
validation errors are 400 ``parameter_*``) is removed."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["install_openapi"]

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "decline_code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
                "message": {"type": "string"},
                "user_message": {"type": ["string", "null"]},
                "action": {"type": "string"},
                "retryable": {"type": "boolean"},
                "gateway": {"type": ["string", "null"]},
                "gateway_code": {"type": ["string", "null"]},
                "request_id": {"type": ["string", "null"]},
            },
            "additionalProperties": True,
        }
    },
}

_DESCRIPTIONS = {
    "400": "Invalid request: a parameter is missing, unknown or invalid (`param` names it).",
    "401": "No API key, or not a valid one.",
    "402": "The card was declined (`decline_code`, `user_message`, `action`).",
    "404": "No such object for this account, or no such URL.",
    "409": "A request with this Idempotency-Key is still running.",
    "413": "The body is too large.",
    "429": "Too many requests with this key; see Retry-After.",
    "503": "A gateway or the database is unavailable; retry (same Idempotency-Key).",
}
# Operations that can move money answer a decline with 402.
_CHARGING = ("/confirm", "/capture")


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    if path.startswith("/webhooks/"):
        return ["400", "404", "413", "503"]
    codes = ["400", "401", "404", "429", "503"]
    if method in ("post", "delete"):
        codes += ["409", "413"]
    charging = path.endswith(_CHARGING) or (path in ("/v1/payment_intents", "/v1/refunds"))
    if method == "post" and charging:
        codes.append("402")
    return sorted(codes)


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
        error_ref = {"$ref": "#/components/schemas/Error"}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for code in _codes(path, method, operation):
                    responses.setdefault(code, {
                        "description": _DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": error_ref}},
                    })
        schemas = schema["components"]["schemas"]
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
