"""/v1/radar/value_lists and /v1/radar/value_list_items, in Stripe's shape (fraud/lists.py):
the lists fraud rules name as ``@alias``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field

from paymux.api.deps import CallerDep, ListDep, idempotent, list_response, run
from paymux.api.responses import JSONResponse
from paymux.api.schemas import Body, Metadata
from paymux.api.wire import wire_body

router = APIRouter(prefix="/v1/radar", tags=["radar"])

ItemType = Literal[
    "card_bin",
    "card_fingerprint",
    "case_sensitive_string",
    "country",
    "customer_id",
    "email",
    "ip_address",
    "sepa_debit_fingerprint",
    "string",
    "us_bank_account_fingerprint",
]
Name = Annotated[str, Field(min_length=1, max_length=100)]
# PostgreSQL text can't hold U+0000: a 400 here, not a 500 from the driver.
_NO_NUL = r"^[^\x00]*$"


class CreateValueList(Body):
    alias: Name
    name: Name
    item_type: ItemType = "string"
    metadata: Metadata = Field(default_factory=dict)


class UpdateValueList(Body):
    alias: Name | None = None
    name: Name | None = None
    metadata: Metadata | None = None


class CreateValueListItem(Body):
    value: Annotated[str, Field(min_length=1, max_length=800)]
    value_list: Annotated[str, Field(min_length=1, max_length=40)]


def _created_by(c: Any) -> str:
    return f"api_key:{c.key_id}" if getattr(c, "key_id", None) else "api"


@router.post("/value_lists")
async def create_value_list(
    c: CallerDep, body: CreateValueList = wire_body(CreateValueList)
) -> Response:
    params = body.model_dump(exclude_unset=True)
    return await idempotent(
        c, body, lambda: c.app.value_lists.create(c.account_id, params, _created_by(c))
    )


@router.get("/value_lists")
async def list_value_lists(
    c: CallerDep,
    page: ListDep,
    alias: Annotated[str | None, Query(max_length=100, pattern=_NO_NUL)] = None,
    contains: Annotated[str | None, Query(max_length=800, pattern=_NO_NUL)] = None,
) -> JSONResponse:
    data, more = await c.app.value_lists.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        alias=alias,
        contains=contains,
        created=page.created,
    )
    return list_response("/v1/radar/value_lists", data, more)


@router.get("/value_lists/{list_id}")
async def retrieve_value_list(list_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.value_lists.retrieve(c.account_id, list_id))


@router.post("/value_lists/{list_id}")
async def update_value_list(
    list_id: str, c: CallerDep, body: UpdateValueList = wire_body(UpdateValueList)
) -> Response:
    params = body.model_dump(exclude_unset=True)
    return await idempotent(
        c, body, lambda: c.app.value_lists.update(c.account_id, list_id, params)
    )


@router.delete("/value_lists/{list_id}")
async def delete_value_list(list_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.value_lists.delete(c.account_id, list_id))


@router.post("/value_list_items")
async def create_value_list_item(
    c: CallerDep, body: CreateValueListItem = wire_body(CreateValueListItem)
) -> Response:
    return await idempotent(
        c,
        body,
        lambda: c.app.value_lists.add_item(
            c.account_id, body.value_list, body.value, _created_by(c)
        ),
    )


@router.get("/value_list_items")
async def list_value_list_items(
    c: CallerDep,
    page: ListDep,
    value_list: Annotated[str, Query(min_length=1, max_length=40, pattern=_NO_NUL)],
    value: Annotated[str | None, Query(max_length=800, pattern=_NO_NUL)] = None,
) -> JSONResponse:
    data, more = await c.app.value_lists.list_items(
        c.account_id,
        value_list,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        value=value,
        created=page.created,
    )
    return list_response("/v1/radar/value_list_items", data, more)


@router.get("/value_list_items/{item_id}")
async def retrieve_value_list_item(item_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.value_lists.retrieve_item(c.account_id, item_id))


@router.delete("/value_list_items/{item_id}")
async def delete_value_list_item(item_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.value_lists.delete_item(c.account_id, item_id))
