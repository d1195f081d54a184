"""/v1/customers/{id}/balance_transactions: a customer's credit balance and its history
(billing/balance.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from paymux.api.billing_schemas import CreateBalanceTransaction
from paymux.api.deps import CallerDep, ListDep, idempotent, list_response
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body

router = APIRouter(tags=["customers"])


@router.post("/v1/customers/{customer_id}/balance_transactions")
async def create_balance_transaction(
    customer_id: str,
    c: CallerDep,
    body: CreateBalanceTransaction = wire_body(CreateBalanceTransaction),
) -> Response:
    async def create() -> dict[str, Any]:
        return await c.app.balance.create(
            c.account_id,
            customer_id,
            amount=body.amount,
            currency=body.currency,
            description=body.description,
        )

    return await idempotent(c, body, create)


@router.get("/v1/customers/{customer_id}/balance_transactions")
async def list_balance_transactions(customer_id: str, c: CallerDep, page: ListDep) -> JSONResponse:
    data, more = await c.app.balance.list_page(
        c.account_id,
        customer_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
    )
    return list_response(f"/v1/customers/{customer_id}/balance_transactions", data, more)


@router.get("/v1/customers/{customer_id}/balance_transactions/{txn_id}")
async def retrieve_balance_transaction(customer_id: str, txn_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.balance.retrieve(c.account_id, customer_id, txn_id))
