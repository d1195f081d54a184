"""Request plumbing shared by the routers: auth, the idempotency wrapper, list parameters."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from paymux.domain.errors import PaymuxError
from paymux.gateways.base import GatewayRateLimited, GatewayUnavailable
from paymux.services import Paymux
from paymux.services.accounts import hash_key
from paymux.services.idempotency import Replay, current_claim, request_fingerprint

__all__ = ["Caller", "ListParams", "caller", "idempotent", "list_response"]

log = logging.getLogger(__name__)


def get_app(request: Request) -> Paymux:
    app: Paymux = request.app.state.paymux
    return app


@dataclass(frozen=True, slots=True)
class Caller:
    account_id: str
    app: Paymux
    request: Request


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    if not authorization:
        raise PaymuxError.of("api_key_missing")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise PaymuxError.of("api_key_invalid", "Use `Authorization: Bearer sk_test_...`.")
    app = get_app(request)
    account_id = await app.accounts.authenticate(key.strip())
    if account_id is None:
        raise PaymuxError.of("api_key_invalid")
    await app.rate_limiter.check(hash_key(key.strip()))
    return Caller(account_id, app, request)


CallerDep = Annotated[Caller, Depends(caller)]


def _json(status: int, body: str, replayed: bool = False) -> Response:
    headers = {"idempotent-replayed": "true"} if replayed else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_json(error: PaymuxError, request: Request) -> tuple[int, str]:
    error.request_id = getattr(request.state, "request_id", None)
    return error.http_status, json.dumps({"error": error.to_dict()})


async def idempotent(
    c: Caller,
    params: BaseModel | dict[str, Any] | None,
    operation: Callable[[], Awaitable[dict[str, Any]]],
) -> Response:
    """Run a POST under its Idempotency-Key (if any): replay, refuse, or run and store.

    Only a final answer is stored: a success whose object is no longer in flight, or a 4xx.
    Anything else (an outage, a cancelled request, an outcome still unknown) releases the key,
    so the next retry resumes from the recovery point the request recorded."""
    key = c.request.headers.get("idempotency-key")
    if key is None:
        return await _run(c, operation)
    payload = (
        params.model_dump(mode="json", exclude_unset=True)
        if isinstance(params, BaseModel)
        else params
    )
    fingerprint = request_fingerprint(c.request.method, c.request.url.path, payload)
    claim = await c.app.idempotency.begin(
        c.account_id, key, c.request.method, c.request.url.path, fingerprint
    )
    if isinstance(claim, Replay):
        return _json(claim.status, claim.body, replayed=True)
    token = current_claim.set(claim)
    try:
        response = await _run(c, operation)
    except BaseException as exc:
        # Cancelled, or the database (or our code) failed: not an answer to keep.
        await asyncio.shield(c.app.idempotency.release(c.account_id, key))
        if not isinstance(exc, Exception):
            raise
        log.warning("request under Idempotency-Key failed (%s); key released", type(exc).__name__)
        status, body = error_json(PaymuxError.of("service_unavailable"), c.request)
        return _json(status, body)
    finally:
        current_claim.reset(token)
    body = bytes(response.body).decode()
    if _final(response.status_code, body):
        await c.app.idempotency.finish(c.account_id, key, response.status_code, body)
    else:
        await c.app.idempotency.release(c.account_id, key)
    return response


def _final(status: int, body: str) -> bool:
    """A 4xx, or a 2xx whose object is not still waiting for a gateway's answer."""
    if status >= 500:
        return False
    if status >= 300:
        return True
    return '"status": "processing"' not in body or json.loads(body).get("status") != "processing"


async def _run(c: Caller, operation: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
    try:
        result = await operation()
    except PaymuxError as exc:
        status, body = error_json(exc, c.request)
        return _json(status, body)
    except (GatewayUnavailable, GatewayRateLimited) as exc:
        # A gateway outage before anything was recorded (describing a new payment method,
        # opening a payment): retryable, and nothing is kept for the Idempotency-Key.
        log.warning("gateway unavailable: %s", type(exc).__name__)
        status, body = error_json(PaymuxError.of("gateway_unavailable"), c.request)
        return _json(status, body)
    return _json(200, json.dumps(result))


@dataclass(frozen=True, slots=True)
class ListParams:
    limit: int
    starting_after: str | None
    ending_before: str | None


def list_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> ListParams:
    if starting_after and ending_before:
        raise PaymuxError.of(
            "parameters_exclusive",
            "Use starting_after or ending_before, not both.",
            param="ending_before",
        )
    return ListParams(limit, starting_after, ending_before)


ListDep = Annotated[ListParams, Depends(list_params)]


def list_response(url: str, data: list[dict[str, Any]], has_more: bool) -> JSONResponse:
    return JSONResponse({"object": "list", "url": url, "data": data, "has_more": has_more})
