"""The OpenAPI document tells the truth about errors: every operation lists the error
responses it can really answer, with the one error shape; FastAPI's 422 (never returned:
validation errors are 400 ``parameter_*``) is removed.

It tells the truth about successes too: the routers answer with plain JSON (the service
views), so the 200 of each operation below is documented here with the object it returns,
or a list of them. Only ``id`` and ``object`` are required of an object (a publishable key
sees fewer fields); the fields it may carry are typed. Operations not named here keep what
FastAPI derived. tests/e2e/test_schemathesis.py checks every response against this.

Request bodies are read by api/wire.py (``wire_body``), not by FastAPI, so their documents are
written here: the model's schema under ``application/json`` and
``application/x-www-form-urlencoded`` alike (the form in Stripe's bracket notation), and the
bracket-form query parameters a route takes through ``wire_query``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from paymux.api.wire import FORM, WireBody, WireQuery

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

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_NSTR = {"type": ["string", "null"]}
_NINT = {"type": ["integer", "null"]}
# An id, or with expand[] the object it names (services/expand.py), or null.
_EXPANDABLE = {"type": ["string", "object", "null"]}
_META = {"type": "object", "additionalProperties": {"type": "string"}}
_ADDRESS = {
    "type": "object",
    "properties": {
        name: _NSTR for name in ("city", "country", "line1", "line2", "postal_code", "state")
    },
}
_NADDRESS = _ADDRESS | {"type": ["object", "null"]}
# Stripe's shipping: a customer's (name, phone, address), a PaymentIntent's also carrier and
# tracking_number; null when there is none.
_SHIPPING = {
    "type": ["object", "null"],
    "properties": {
        "name": _NSTR,
        "phone": _NSTR,
        "address": _ADDRESS,
        "carrier": _NSTR,
        "tracking_number": _NSTR,
    },
}
_BILLING_DETAILS = {
    "type": "object",
    "properties": {"name": _NSTR, "email": _NSTR, "phone": _NSTR, "address": _ADDRESS},
}


def _object(kind: str, /, **fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "object"],
        "properties": {"id": _STR, "object": {"type": "string", "const": kind}} | fields,
        "additionalProperties": True,
    }


_OBJECTS: dict[str, dict[str, Any]] = {
    "PaymentIntent": _object(
        "payment_intent",
        amount=_INT,
        currency=_STR,
        status=_STR,
        amount_capturable=_INT,
        amount_received=_INT,
        amount_refunded=_INT,
        capture_method=_STR,
        customer=_EXPANDABLE,
        payment_method=_EXPANDABLE,
        gateway=_NSTR,
        description=_NSTR,
        shipping=_SHIPPING,
        metadata=_META,
        created=_INT,
        livemode=_BOOL,
    ),
    "Refund": _object(
        "refund",
        amount=_INT,
        currency=_STR,
        payment_intent=_EXPANDABLE,
        reason=_NSTR,
        status=_STR,
        failure_reason=_NSTR,
        metadata=_META,
        created=_INT,
        livemode=_BOOL,
    ),
    "Customer": _object(
        "customer",
        email=_NSTR,
        name=_NSTR,
        description=_NSTR,
        default_payment_method=_EXPANDABLE,
        phone=_NSTR,
        address=_NADDRESS,
        shipping=_SHIPPING,
        metadata=_META,
        created=_INT,
        livemode=_BOOL,
        deleted=_BOOL,
    ),
    "DeletedCustomer": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {
            "id": _STR,
            "object": {"type": "string", "const": "customer"},
            "deleted": {"type": "boolean", "const": True},
        },
        "additionalProperties": True,
    },
    "PaymentMethod": _object(
        "payment_method",
        type=_STR,
        gateway=_STR,
        customer=_EXPANDABLE,
        card={"type": ["object", "null"]},
        billing_details=_BILLING_DETAILS,
        metadata=_META,
        created=_INT,
        livemode=_BOOL,
    ),
    "Event": _object(
        "event",
        type=_STR,
        data={"type": "object", "required": ["object"]},
        created=_INT,
        livemode=_BOOL,
    ),
    "Dispute": _object(
        "dispute",
        payment_intent=_EXPANDABLE,
        gateway=_STR,
        amount=_NINT,
        currency=_NSTR,
        reason=_NSTR,
        status=_STR,
        metadata=_META,
        created=_INT,
        livemode=_BOOL,
    ),
    "Charge": _object(
        "charge",
        amount=_INT,
        amount_captured=_INT,
        amount_refunded=_INT,
        captured=_BOOL,
        currency=_STR,
        paid=_BOOL,
        payment_intent=_EXPANDABLE,
        status={"type": "string", "enum": ["succeeded", "pending", "failed"]},
    ),
    "Connection": _object(
        "connection",
        gateway=_STR,
        livemode=_BOOL,
        name=_NSTR,
        source={"type": "string", "enum": ["api", "environment"]},
        credentials={"type": "object", "additionalProperties": {"type": "string"}},
        currencies={"type": ["array", "null"], "items": _STR},
        priority=_NINT,
        disabled=_BOOL,
        webhook_url=_STR,
    ),
    "DeletedConnection": _object("connection", deleted={"type": "boolean", "const": True}),
    "ConnectionTest": _object(
        "connection_test",
        connection=_STR,
        gateway=_STR,
        livemode=_BOOL,
        ok=_BOOL,
        status={"type": "string", "enum": ["succeeded", "failed"]},
        error={"type": ["object", "null"]},
        created=_INT,
    ),
    "Gateway": _object(
        "gateway",
        credentials={"type": "array", "items": {"type": "object"}},
        capabilities={"type": "array", "items": _STR},
        livemode=_BOOL,
    ),
    "ApiKey": _object(
        "api_key",
        type={"type": "string", "enum": ["secret", "publishable", "restricted"]},
        livemode=_BOOL,
        redacted=_STR,
        revoked=_BOOL,
    ),
    "AuditEntry": _object("audit_entry", actor=_STR, action=_STR, object_id=_NSTR),
    "WebhookEvent": _object(
        "webhook_event",
        gateway=_STR,
        event_id=_STR,
        type=_NSTR,
        status=_STR,
        error=_NSTR,
        received=_INT,
        applied=_NINT,
    ),
    "Job": _object(
        "job",
        id=_INT,  # the queue's BIGINT row id
        kind=_STR,
        status=_STR,
        attempts=_INT,
        max_attempts=_INT,
        last_error=_NSTR,
        run_at=_NINT,
        created=_NINT,
        updated=_NINT,
    ),
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "data", "has_more"],
        "properties": {
            "object": {"type": "string", "const": "list"},
            "url": _STR,
            "data": {"type": "array", "items": _ref(item)},
            "has_more": _BOOL,
        },
    }


_PI = "/v1/payment_intents/{pi_id}"
_SUCCESS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/payment_intents"): _ref("PaymentIntent"),
    ("get", "/v1/payment_intents"): _list("PaymentIntent"),
    ("get", _PI): _ref("PaymentIntent"),
    ("post", _PI): _ref("PaymentIntent"),
    ("post", _PI + "/confirm"): _ref("PaymentIntent"),
    ("post", _PI + "/capture"): _ref("PaymentIntent"),
    ("post", _PI + "/cancel"): _ref("PaymentIntent"),
    ("post", "/v1/refunds"): _ref("Refund"),
    ("get", "/v1/refunds"): _list("Refund"),
    ("get", "/v1/refunds/{refund_id}"): _ref("Refund"),
    ("post", "/v1/customers"): _ref("Customer"),
    ("get", "/v1/customers"): _list("Customer"),
    ("get", "/v1/customers/{customer_id}"): _ref("Customer"),
    ("post", "/v1/customers/{customer_id}"): _ref("Customer"),
    ("delete", "/v1/customers/{customer_id}"): _ref("DeletedCustomer"),
    ("get", "/v1/customers/{customer_id}/payment_methods"): _list("PaymentMethod"),
    ("get", "/v1/payment_methods/{pm_id}"): _ref("PaymentMethod"),
    ("get", "/v1/payment_methods"): _list("PaymentMethod"),
    ("post", "/v1/payment_methods"): _ref("PaymentMethod"),
    ("post", "/v1/payment_methods/{pm_id}/attach"): _ref("PaymentMethod"),
    ("post", "/v1/payment_methods/{pm_id}/detach"): _ref("PaymentMethod"),
    ("get", "/v1/events"): _list("Event"),
    ("get", "/v1/events/{event_id}"): _ref("Event"),
    ("get", "/v1/disputes"): _list("Dispute"),
    ("get", "/v1/disputes/{dispute_id}"): _ref("Dispute"),
    ("post", "/v1/disputes/{dispute_id}"): _ref("Dispute"),
    ("get", "/v1/charges"): _list("Charge"),
    ("get", "/v1/charges/{charge_id}"): _ref("Charge"),
    ("post", "/v1/refunds/{refund_id}"): _ref("Refund"),
    ("post", "/v1/payment_methods/{pm_id}"): _ref("PaymentMethod"),
    ("get", "/v1/admin/webhooks"): _list("WebhookEvent"),
    ("post", "/v1/admin/webhooks/replay_dead"): {
        "type": "object",
        "required": ["replayed"],
        "properties": {"replayed": {"type": "array", "items": _STR}},
    },
    ("post", "/v1/admin/webhooks/{event_id}/replay"): {
        "type": "object",
        "required": ["replayed"],
        "properties": {"replayed": {"type": "array", "items": _STR}},
    },
    ("get", "/v1/admin/webhooks/stats"): {
        "type": "object",
        "required": ["rejected"],
        "properties": {
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["gateway", "reason", "count"],
                    "properties": {"gateway": _STR, "reason": _STR, "count": _INT},
                },
            }
        },
    },
    ("get", "/v1/admin/jobs"): _list("Job"),
    ("post", "/v1/connections"): _ref("Connection"),
    ("get", "/v1/connections"): _list("Connection"),
    ("get", "/v1/connections/gateways"): _list("Gateway"),
    ("get", "/v1/connections/{connection_id}"): _ref("Connection"),
    ("post", "/v1/connections/{connection_id}"): _ref("Connection"),
    ("delete", "/v1/connections/{connection_id}"): _ref("DeletedConnection"),
    ("post", "/v1/connections/{connection_id}/test"): _ref("ConnectionTest"),
    ("post", "/v1/admin/keys"): _ref("ApiKey"),
    ("get", "/v1/admin/keys"): _list("ApiKey"),
    ("get", "/v1/admin/keys/{key_id}"): _ref("ApiKey"),
    ("post", "/v1/admin/keys/{key_id}/roll"): _ref("ApiKey"),
    ("post", "/v1/admin/keys/{key_id}/revoke"): _ref("ApiKey"),
    ("get", "/v1/audit_log"): _list("AuditEntry"),
    ("post", "/v1/admin/jobs/{job_id}/retry"): _ref("Job"),
}


def _webhook_success(path: str) -> dict[str, Any] | None:
    if not path.startswith("/webhooks/"):
        return None
    return {
        "type": "object",
        "required": ["received", "duplicate"],
        "properties": {"received": {"type": "boolean", "const": True}, "duplicate": _BOOL},
    }


_DESCRIPTIONS = {
    "400": "Invalid request: a parameter is missing, unknown or invalid (`param` names it).",
    "401": "No API key, or not a valid one (or expired, or a publishable key where it may not go).",
    "403": "A restricted key without the grant this needs (`api_key_permission_denied`).",
    "402": "The card was declined (`decline_code`, `user_message`, `action`).",
    "404": "No such object for this account, or no such URL.",
    "409": "A request with this Idempotency-Key is still running.",
    "413": "The body is too large.",
    "429": "Too many requests with this key; see Retry-After.",
    "503": "A gateway or the database is unavailable; retry (same Idempotency-Key).",
}
# Operations that can move money answer a decline with 402 (and those that save a card at
# the gateway: attach, and a customer created with a payment_method).
_CHARGING = ("/confirm", "/capture", "/attach")


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    if path.startswith("/webhooks/"):
        return ["400", "404", "413", "503"]
    codes = ["400", "401", "404", "429", "503"]
    if not path.startswith("/v1/admin/"):
        codes.append("403")
    if method in ("post", "delete"):
        codes += ["409", "413"]
    charging = path.endswith(_CHARGING) or (
        path in ("/v1/payment_intents", "/v1/refunds", "/v1/customers")
    )
    if method == "post" and charging:
        codes.append("402")
    return sorted(codes)


def _wire_parts(route: APIRoute) -> tuple[WireBody | None, list[WireQuery]]:
    """The body and bracket-form query models a route declares (api/wire.py)."""
    body: WireBody | None = None
    queries: list[WireQuery] = []
    stack: list[Dependant] = [route.dependant]
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, WireBody):
            body = dependant.call
        elif isinstance(dependant.call, WireQuery):
            queries.append(dependant.call)
        stack.extend(dependant.dependencies)
    return body, queries


def _model_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """A reference to ``model``'s schema, which (and the models it uses) go in components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return _ref(model.__name__)


def _document_wire(app: FastAPI, schema: dict[str, Any], components: dict[str, Any]) -> None:
    """Each route's wire body under both content types, and its bracket-form query
    parameters (``expand[]``: an array in form style; ``created[gte]``: an object in
    deepObject style)."""
    for context in iter_route_contexts(app.routes):  # included routers' routes too
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.include_in_schema:
            continue
        body, queries = _wire_parts(route)
        operations = schema.get("paths", {}).get(context.path_format, {})
        for method in context.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            if body is not None:
                ref = _model_schema(body.model, components)
                operation["requestBody"] = {
                    "required": body.required,
                    "content": {"application/json": {"schema": ref}, FORM: {"schema": ref}},
                }
            for query in queries:
                props = query.model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(props.pop("$defs", {}))
                parameters = operation.setdefault("parameters", [])
                for name, prop in props.get("properties", {}).items():
                    object_like = any(
                        "$ref" in option or option.get("type") == "object"
                        for option in [prop, *prop.get("anyOf", [])]
                    )
                    parameters.append(
                        {
                            "name": name,
                            "in": "query",
                            "required": name in props.get("required", []),
                            "schema": prop,
                            "style": "deepObject" if object_like else "form",
                            "explode": True,
                        }
                    )


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"] = _ERROR_SCHEMA
        components.update(_OBJECTS)
        _document_wire(app, schema, components)
        error_ref = {"$ref": "#/components/schemas/Error"}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                success = _SUCCESS.get((method, path)) or _webhook_success(path)
                if success is not None:
                    responses.setdefault("200", {"description": "Successful Response"})
                    responses["200"]["content"] = {"application/json": {"schema": success}}
                for code in _codes(path, method, operation):
                    responses.setdefault(
                        code,
                        {
                            "description": _DESCRIPTIONS[code],
                            "content": {"application/json": {"schema": error_ref}},
                        },
                    )
        schemas = schema["components"]["schemas"]
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
