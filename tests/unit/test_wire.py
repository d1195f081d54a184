"""api/wire.py without a database: Stripe's bracket notation decoded, form strings converted
to the model's types, the same model for JSON and form bodies, bracket-form query
parameters declared with ``wire_query``, and both documented in the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt

from paymux.api.wire import (
    coerce_form,
    decode_form,
    reject_unknown_query,
    wire_body,
    wire_query,
)
from paymux.domain.errors import PaymuxError


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price: str
    quantity: StrictInt = 1


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: StrictInt
    rate: float | None = None
    gift: StrictBool = False
    items: list[Item] = []
    expand: list[str] | None = None
    metadata: dict[str, str] = {}


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gte: StrictInt | None = None
    lt: StrictInt | None = None


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expand: list[str] | None = None
    created: Range | None = None


def test_bracket_notation_decodes_to_what_json_would_be() -> None:
    assert decode_form(
        "amount=2000&metadata[order_id]=1001&metadata[note]=&items[0][price]=p1"
        "&items[0][quantity]=2&items[1][price]=p2&expand[]=customer&expand[]=invoice"
    ) == {
        "amount": "2000",
        "metadata": {"order_id": "1001", "note": ""},
        "items": {"0": {"price": "p1", "quantity": "2"}, "1": {"price": "p2"}},
        "expand": ["customer", "invoice"],
    }
    assert decode_form("a=1&a=2") == {"a": ["1", "2"]}
    assert decode_form("") == {}


def test_form_strings_are_converted_by_the_models_field_types() -> None:
    data = decode_form(
        "amount=2000&rate=1.5&gift=true&items[1][price]=p2&items[0][price]=p1"
        "&items[0][quantity]=3&expand[0]=customer&metadata[0]=zero&metadata[n]=7"
    )
    order = Order.model_validate(coerce_form(Order, data))
    assert order.amount == 2000
    assert order.rate == 1.5
    assert order.gift is True
    assert order.items == [Item(price="p1", quantity=3), Item(price="p2")]
    assert order.expand == ["customer"]
    # A metadata key may be a digit: metadata stays a map of strings.
    assert order.metadata == {"0": "zero", "n": "7"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("a=1&a[b]=2", "parameter_invalid"),
        ("a[b]=2&a=1", "parameter_invalid"),
        ("a[][b]=1", "parameter_invalid"),
        ("[a]=1", "parameter_invalid"),
        ("a[b=1", "parameter_invalid"),
        ("a" + "[b]" * 32 + "=1", "body_too_deep"),
        ("&".join(f"k{i}=v" for i in range(1001)), "parameter_invalid"),
    ],
)
def test_malformed_or_oversized_forms_are_refused(body: str, code: str) -> None:
    with pytest.raises(PaymuxError) as caught:
        decode_form(body)
    assert caught.value.code == code
    assert caught.value.http_status == 400


def test_31_levels_of_brackets_are_accepted() -> None:
    data = decode_form("a" + "[b]" * 31 + "=1")
    depth = 0
    node: Any = data
    while isinstance(node, dict):
        node = next(iter(node.values()))
        depth += 1
    assert depth == 32 and node == "1"


def call(method: str, url: str, **kw: Any) -> httpx.Response:
    """One request to the tiny app below, in process (no server, no lifespan)."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=make_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://wire") as http:
            return await http.request(method, url, **kw)

    return asyncio.run(run())


def make_app() -> FastAPI:
    app = FastAPI(dependencies=[Depends(reject_unknown_query)])

    @app.exception_handler(PaymuxError)
    async def paymux_error(_: Any, exc: PaymuxError) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.post("/v1/orders")
    async def create(body: Order = wire_body(Order)) -> dict[str, Any]:
        return body.model_dump()

    @app.get("/v1/orders")
    async def list_orders(limit: int = 10, q: ListQuery = wire_query(ListQuery)) -> dict[str, Any]:
        return {"limit": limit, **q.model_dump()}

    return app


def test_the_same_model_reads_json_and_form_bodies() -> None:
    by_form = call(
        "POST",
        "/v1/orders",
        content=b"amount=2000&gift=false&items[0][price]=p1&metadata[k]=v",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    by_json = call(
        "POST",
        "/v1/orders",
        json={"amount": 2000, "gift": False, "items": [{"price": "p1"}], "metadata": {"k": "v"}},
    )
    assert by_form.status_code == 200, by_form.text
    assert by_form.json() == by_json.json()
    assert by_form.json()["items"] == [{"price": "p1", "quantity": 1}]


def test_bracket_form_query_parameters_are_read_and_others_refused() -> None:
    r = call("GET", "/v1/orders?limit=3&expand[]=customer&expand[]=x&created[gte]=100")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "limit": 3,
        "expand": ["customer", "x"],
        "created": {"gte": 100, "lt": None},
    }
    r = call("GET", "/v1/orders?expand[1]=b&expand[0]=a")
    assert r.json()["expand"] == ["a", "b"]
    r = call("GET", "/v1/orders?colour=red")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "parameter_unknown"
    assert r.json()["error"]["param"] == "colour"
    r = call("GET", "/v1/orders?limit[x]=1")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "limit[x]"


def test_the_openapi_document_lists_both_encodings_and_the_bracket_parameters() -> None:
    from paymux.api.app import create_app
    from paymux.config import Settings

    spec = create_app(Settings(database_url="sqlite+aiosqlite://")).openapi()
    body = spec["paths"]["/v1/payment_intents"]["post"]["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/json", "application/x-www-form-urlencoded"}
    ref = "#/components/schemas/CreatePaymentIntent"
    assert body["content"]["application/json"]["schema"] == {"$ref": ref}
    assert body["content"]["application/x-www-form-urlencoded"]["schema"] == {"$ref": ref}
    assert "currency" in spec["components"]["schemas"]["CreatePaymentIntent"]["required"]
    confirm = spec["paths"]["/v1/payment_intents/{pi_id}/confirm"]["post"]["requestBody"]
    assert confirm["required"] is False
    posts = [
        (path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method == "post" and path.startswith("/v1/")
    ]
    assert posts and all(
        set(op["requestBody"]["content"])
        == {"application/json", "application/x-www-form-urlencoded"}
        for _, op in posts
    )


def test_wire_query_parameters_are_documented_in_bracket_styles() -> None:
    from paymux.api.openapi import install_openapi

    app = make_app()
    install_openapi(app)
    parameters = {p["name"]: p for p in app.openapi()["paths"]["/v1/orders"]["get"]["parameters"]}
    assert set(parameters) == {"limit", "expand", "created"}
    assert parameters["expand"]["style"] == "form"
    assert parameters["created"]["style"] == "deepObject"
    assert parameters["created"]["in"] == "query"


def test_every_v1_route_checks_its_query_through_its_authentication() -> None:
    """check_query runs in deps.caller and the admin key's dependency: every /v1 route has
    one of them, so no route skips the unknown-parameter check."""
    from fastapi.routing import APIRoute, iter_route_contexts

    from paymux.api.app import create_app
    from paymux.api.deps import caller
    from paymux.api.routers.admin import admin
    from paymux.config import Settings

    app = create_app(Settings(database_url="sqlite+aiosqlite://"))
    checked = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not str(context.path).startswith("/v1/"):
            continue
        stack, calls = [route.dependant], set()
        while stack:
            dependant = stack.pop()
            calls.add(dependant.call)
            stack.extend(dependant.dependencies)
        assert caller in calls or admin in calls, context.path
        checked.append(context.path)
    assert len(checked) > 30
