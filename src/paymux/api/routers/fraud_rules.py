"""/v1/fraud/rules: an account's fraud rules in Radar's syntax (fraud/rules.py), validated
on save; ``POST /v1/fraud/rules/test`` is a dry run over the last payments."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field, StrictBool, StrictInt

from paymux.api.deps import CallerDep, ListDep, idempotent, list_response, run
from paymux.api.responses import JSONResponse
from paymux.api.schemas import Body, Metadata
from paymux.api.wire import wire_body
from paymux.fraud.language import MAX_RULE_LENGTH
from paymux.fraud.rules import MAX_TEST_PAYMENTS

router = APIRouter(prefix="/v1/fraud/rules", tags=["fraud_rules"])

RuleText = Annotated[str, Field(min_length=1, max_length=MAX_RULE_LENGTH)]
Priority = Annotated[StrictInt, Field(ge=0, le=1_000_000)]


class CreateFraudRule(Body):
    rule: RuleText
    priority: Priority = 0
    description: Annotated[str, Field(max_length=500)] | None = None
    disabled: StrictBool = False
    metadata: Metadata = Field(default_factory=dict)


class UpdateFraudRule(Body):
    rule: RuleText | None = None
    priority: Priority | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    status: Literal["active", "disabled"] | None = None
    metadata: Metadata | None = None


class TestFraudRule(Body):
    rule: RuleText
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_TEST_PAYMENTS)] = 100


@router.post("")
async def create_fraud_rule(
    c: CallerDep, body: CreateFraudRule = wire_body(CreateFraudRule)
) -> Response:
    params = body.model_dump(exclude_unset=True)
    return await idempotent(c, body, lambda: c.app.fraud_rules.create(c.account_id, params))


@router.post("/test")
async def test_fraud_rule(
    c: CallerDep, body: TestFraudRule = wire_body(TestFraudRule)
) -> JSONResponse:
    return JSONResponse(await c.app.fraud_rules.test(c.account_id, body.rule, body.limit))


@router.get("")
async def list_fraud_rules(
    c: CallerDep,
    page: ListDep,
    status: Annotated[Literal["active", "disabled"] | None, Query()] = None,
    action: Annotated[Literal["allow", "block", "review", "request_3ds"] | None, Query()] = None,
) -> JSONResponse:
    data, more = await c.app.fraud_rules.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        status=status,
        action=action,
        created=page.created,
    )
    return list_response("/v1/fraud/rules", data, more)


@router.get("/{rule_id}")
async def retrieve_fraud_rule(rule_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.fraud_rules.retrieve(c.account_id, rule_id))


@router.post("/{rule_id}")
async def update_fraud_rule(
    rule_id: str, c: CallerDep, body: UpdateFraudRule = wire_body(UpdateFraudRule)
) -> Response:
    params: dict[str, Any] = body.model_dump(exclude_unset=True)
    return await idempotent(
        c, body, lambda: c.app.fraud_rules.update(c.account_id, rule_id, params)
    )


@router.post("/{rule_id}/disable")
async def disable_fraud_rule(
    rule_id: str, c: CallerDep, body: Body = wire_body(Body, required=False)
) -> Response:
    return await idempotent(
        c, body, lambda: c.app.fraud_rules.set_status(c.account_id, rule_id, "disabled")
    )


@router.post("/{rule_id}/enable")
async def enable_fraud_rule(
    rule_id: str, c: CallerDep, body: Body = wire_body(Body, required=False)
) -> Response:
    return await idempotent(
        c, body, lambda: c.app.fraud_rules.set_status(c.account_id, rule_id, "active")
    )


@router.delete("/{rule_id}")
async def delete_fraud_rule(rule_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.fraud_rules.delete(c.account_id, rule_id))
