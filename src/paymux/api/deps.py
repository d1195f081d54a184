"""Request plumbing shared by the routers: auth, the idempotency wrapper, list parameters."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

from fastapi import Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from paymux.api.access import (
    PUBLISHABLE_CONFIRM_FIELDS,
    enforce,
    publishable_setup_view,
    publishable_view,
    redacted_key,
    route_of,
)
from paymux.api.responses import JSONResponse
from paymux.api.schemas import ExpandQuery, ListQuery
from paymux.api.wire import WireQuery, check_query, wire_query
from paymux.domain.errors import PaymuxError
from paymux.fraud.request import payer_from_headers, payer_request
from paymux.gateways.base import GatewayRateLimited, GatewayUnavailable
from paymux.root import Paymux
from paymux.security import looks_like_pan
from paymux.services.audit import AuditRequest, pending_audit
from paymux.services.context import CreatedRange, current_livemode
from paymux.services.expand import Expander
from paymux.services.idempotency import Replay, current_claim, request_fingerprint
from paymux.services.keys import Level, Principal, permits

__all__ = [
    "Caller",
    "DirectRoute",
    "ExpandDep",
    "ListDep",
    "ListParams",
    "api_key_from",
    "caller",
    "check_expand",
    "client_address",
    "direct",
    "direct_caller",
    "direct_expand",
    "direct_query_str",
    "expanded",
    "idempotent",
    "list_expanded",
    "list_response",
    "require_client_secret",
    "run",
    "unauthenticated",
]

log = logging.getLogger(__name__)


def get_app(request: Request) -> Paymux:
    app: Paymux = request.app.state.paymux
    return app


@dataclass(frozen=True, slots=True)
class Caller:
    """The account a request acts for, and the key it came with."""

    account_id: str
    app: Paymux
    request: Request
    key_id: str | None = None
    kind: str = "secret"  # secret | publishable | restricted
    livemode: bool = False
    permissions: Mapping[str, Level] = field(default_factory=dict)


_KEY_PREFIX = re.compile(r"(?:sk|pk|rk)_(?:test|live)_")
_SHOWABLE_KEY = re.compile(r"[A-Za-z0-9_\-]{1,255}")


def masked_key(key: str) -> str:
    """A refused key as Stripe shows it in its 401 (``sk_test_****...abcd``): the kind and
    mode prefix and the last 4 characters, every other character a ``*``, so a caller can
    tell which of their keys was refused. A value that is not plainly a key (other
    characters, too long, a card number) is not shown at all."""
    if not _SHOWABLE_KEY.fullmatch(key) or looks_like_pan(key):
        return "(not shown)"
    prefix = _KEY_PREFIX.match(key)
    head = prefix.group(0) if prefix else ""
    rest = key[len(head) :]
    shown = 4 if len(rest) > 8 else 0
    return head + "*" * (len(rest) - shown) + rest[len(rest) - shown :]


def api_key_from(authorization: str | None) -> str:
    """The key an Authorization header carries, as Stripe takes it: ``Bearer <key>``, or HTTP
    Basic with the key as the username and an empty password (``curl -u sk_test_...:``)."""
    if not authorization or not authorization.strip():
        raise PaymuxError.of("api_key_missing")
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    key = ""
    if scheme.lower() == "bearer":
        key = credentials
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        key = decoded.partition(":")[0].strip()
    if not key:
        raise PaymuxError.of(
            "api_key_invalid",
            "Invalid Authorization header: use `Authorization: Bearer sk_test_...`, or HTTP "
            "Basic auth with the key as the username (`curl -u sk_test_...:`).",
        )
    return key


async def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """Authenticate the key (hashed once), count it against the rate limit, refuse what its
    kind may not call, and note its mode for the services (``current_livemode``).

    A ``Stripe-Account`` header (Stripe Connect) may name the key's own account; paymux has no
    connected accounts, so any other is refused (403 ``account_invalid``, as Stripe answers a
    key without access to the account)."""
    app = get_app(request)
    try:
        key = api_key_from(authorization)
    except PaymuxError as exc:
        raise await unauthenticated(request, exc) from None
    found = await app.keys.check(key)
    if found == "expired":
        raise await unauthenticated(request, PaymuxError.of(
            "api_key_expired",
            f"Expired API Key provided: {masked_key(key)}. It was rolled and its grace "
            "period is over: use the key it was rolled to.",
        ))
    if not isinstance(found, Principal):
        raise await unauthenticated(request, PaymuxError.of(
            "api_key_invalid", f"Invalid API Key provided: {masked_key(key)}"
        ))
    # Whose call this is, for the request log (api/request_log.py): the key's id, never the key.
    request.state.api_caller = (found.account_id, found.key_id, found.livemode)
    await app.rate_limiter.check(found.key_hash)
    _check_stripe_account(found, request.headers.get("stripe-account"))
    enforce(found, request)
    check_query(request)  # after the key: a request without one is a 401 first
    if found.kind == "publishable" and request.method.upper() == "GET":
        params = request.path_params
        pi_id = str(params.get("pi_id") or params.get("seti_id") or "")
        await _check_client_secret(app, found.account_id, pi_id, request.query_params)
    current_livemode.set(found.livemode)
    # Who pays, for the fraud rules (fraud/request.py). The peer and the trusted proxies
    # count only for a browser's key (a server names its payer in headers): not looked up
    # for the others (issue 10).
    browser = found.kind == "publishable"
    payer_request.set(
        payer_from_headers(
            request.headers,
            peer=client_address(request) if browser else None,
            from_browser=browser,
            behind_trusted_proxy=browser and bool(app.settings.trusted_proxy_list()),
        )
    )
    return Caller(
        found.account_id,
        app,
        request,
        key_id=found.key_id,
        kind=found.kind,
        livemode=found.livemode,
        permissions=found.permissions,
    )


def client_address(request: Request) -> str | None:
    """The address a request came from: the peer, or the X-Forwarded-For client when the
    peer is one of PAYMUX_TRUSTED_PROXIES (uvicorn rewrites ``client`` only for those:
    ``paymux serve`` passes the list as ``forwarded_allow_ips``)."""
    return request.client.host if request.client else None


async def unauthenticated(request: Request, error: PaymuxError) -> PaymuxError:
    """``error`` (the 401 of a missing or refused key), once the request is counted against
    its address's limit of such requests: past that limit, raises 429 ``rate_limited`` with
    ``Retry-After`` instead (services/ratelimit.py). A flood of bad keys is refused early
    and costs no more than a few database writes."""
    await get_app(request).rate_limiter.check_unauthenticated(client_address(request))
    return error


_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")


def _check_stripe_account(principal: Principal, account: str | None) -> None:
    if account is None or account.strip() == principal.account_id:
        return
    shown = account.strip() if _ACCOUNT_ID.fullmatch(account.strip()) else "***"
    raise PaymuxError.of(
        "account_invalid",
        f"The provided key '{redacted_key(principal)}' does not have access to account "
        f"'{shown}' (or that account does not exist). paymux has no connected accounts: "
        "send the key's own account id in Stripe-Account, or none.",
    )


async def _check_client_secret(
    app: Paymux, account_id: str, pi_id: str, source: Mapping[str, Any]
) -> None:
    secret = source.get("client_secret")
    if not secret:
        raise PaymuxError.of(
            "parameter_missing",
            "A publishable key must send the intent's client_secret.",
            param="client_secret",
        )
    if not await app.keys.client_secret_matches(account_id, pi_id, str(secret)):
        raise PaymuxError.of("payment_intent_invalid_parameter", param="client_secret")


async def require_client_secret(c: Caller, pi_id: str, body: BaseModel) -> None:
    """A publishable key's confirm: only payment_method(_data), return_url and client_secret,
    and the intent's client secret. A secret or restricted key that sends one must send the
    right one too."""
    fields = body.model_dump(exclude_unset=True, exclude_none=True)
    if c.kind == "publishable":
        extra = sorted(set(fields) - PUBLISHABLE_CONFIRM_FIELDS)
        if extra:
            raise PaymuxError.of(
                "parameter_not_allowed",
                f"A publishable key cannot send {extra[0]} when confirming: only payment_method, "
                "payment_method_data, return_url and client_secret. Use a secret key.",
                param=extra[0],
            )
    elif "client_secret" not in fields:
        return
    await _check_client_secret(c.app, c.account_id, pi_id, fields)
    c.request.state.client_secret_checked = pi_id


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
    if c.kind == "publishable":
        # A publishable key's request is never the same as a secret key's with the same
        # key and parameters (a mismatch, as different parameters are): it must not be
        # answered with what the secret key was shown. Other fingerprints are unchanged.
        payload = {"publishable_key": payload}
    fingerprint = request_fingerprint(c.request.method, c.request.url.path, payload)
    claim = await c.app.idempotency.begin(
        c.account_id, key, c.request.method, c.request.url.path, fingerprint,
        livemode=c.livemode,
    )
    if isinstance(claim, Replay):
        return _json(claim.status, claim.body, replayed=True)
    token = current_claim.set(claim)
    try:
        response = await _run(c, operation)
    except BaseException as exc:
        # Cancelled, or the database (or our code) failed: not an answer to keep.
        await asyncio.shield(c.app.idempotency.release(c.account_id, key, livemode=c.livemode))
        if not isinstance(exc, Exception):
            raise
        log.warning("request under Idempotency-Key failed (%s); key released", type(exc).__name__)
        status, body = error_json(PaymuxError.of("service_unavailable"), c.request)
        return _json(status, body)
    finally:
        current_claim.reset(token)
    body = bytes(response.body).decode()
    if _final(response.status_code, body):
        await c.app.idempotency.finish(
            c.account_id, key, response.status_code, body, livemode=c.livemode
        )
    else:
        await c.app.idempotency.release(c.account_id, key, livemode=c.livemode)
    return response


def _final(status: int, body: str) -> bool:
    """A 4xx, or a 2xx whose object is not still waiting for a gateway's answer."""
    if status >= 500:
        return False
    if status >= 300:
        return True
    return '"status": "processing"' not in body or json.loads(body).get("status") != "processing"


async def run(c: Caller, operation: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
    """Run a mutating operation without an Idempotency-Key (a DELETE): its answer, audited."""
    return await _run(c, operation)


async def _run(c: Caller, operation: Callable[[], Awaitable[dict[str, Any]]]) -> Response:
    note = _audit_request(c)
    token = pending_audit.set(note)
    try:
        if c.kind == "publishable" and not getattr(c.request.state, "client_secret_checked", None):
            # Fail closed: a route that lets a publishable key write must check its secret.
            raise PaymuxError.of("publishable_key_not_allowed")
        result = await operation()
    except PaymuxError as exc:
        if c.kind == "publishable":
            # A decline's intent (payment or setup), as a publishable key sees any intent
            # (never its customer, metadata or references); any other object an error
            # carries is left out (fail closed).
            for name, value in list(exc.extra.items()):
                if not isinstance(value, dict):
                    continue
                if name == "payment_intent":
                    exc.extra[name] = publishable_view(value)
                elif name == "setup_intent":
                    exc.extra[name] = publishable_setup_view(value)
                else:
                    del exc.extra[name]
        status, body = error_json(exc, c.request)
        return _json(status, body)
    except (GatewayUnavailable, GatewayRateLimited) as exc:
        # A gateway outage before anything was recorded (describing a new payment method,
        # opening a payment): retryable, and nothing is kept for the Idempotency-Key.
        log.warning("gateway unavailable: %s", type(exc).__name__)
        status, body = error_json(PaymuxError.of("gateway_unavailable"), c.request)
        return _json(status, body)
    finally:
        pending_audit.reset(token)
    if not note.written:
        await _audit(c, note, result)
    return _json(200, json.dumps(result))


def _audit_request(c: Caller) -> AuditRequest:
    """Who is asking for what, for the audit entry of the request's answer: the services
    that write the answer's last transaction add it there (services/audit.py)."""
    request = c.request
    method = request.method.upper()
    segments = [p for p in route_of(request).split("/")[2:] if p]
    last = segments[-1] if segments else ""
    if method == "DELETE":
        verb = "delete"
    elif last.startswith("{"):
        verb = "update"
    elif len(segments) <= 1:
        verb = "create"
    else:
        verb = last
    return AuditRequest(
        account_id=c.account_id,
        actor=c.key_id or "api",
        action_verb=verb,
        method=method,
        path=request.url.path,
        livemode=c.livemode,
        request_id=getattr(request.state, "request_id", None),
        route=tuple(p for p in segments if not p.startswith("{")),
    )


async def _audit(c: Caller, note: AuditRequest, result: dict[str, Any]) -> None:
    """Note a successful mutating request in the audit log (``<object>.<verb>``, e.g.
    ``payment_intent.capture``, ``refund.create``, ``customer.delete``) when its service did
    not in its own transaction: here, in a transaction of its own after the answer. A failure
    to write the entry is logged and does not undo the answer (the operation is done)."""
    try:
        await c.app.audit.write(note.values(result, c.app.ctx.now_us()))
    except Exception:
        log.exception("could not write the audit entry of %s %s", note.method, note.action_verb)


@dataclass(frozen=True, slots=True)
class ListParams:
    limit: int
    starting_after: str | None
    ending_before: str | None
    created: CreatedRange | None = None
    expand: list[str] = field(default_factory=list)


async def list_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: str | None = None,
    ending_before: str | None = None,
    q: ListQuery = wire_query(ListQuery),
) -> ListParams:
    if starting_after and ending_before:
        raise PaymuxError.of(
            "parameters_exclusive",
            "Use starting_after or ending_before, not both.",
            param="ending_before",
        )
    created = CreatedRange(**q.created.model_dump()) if q.created else None
    return ListParams(limit, starting_after, ending_before, created, list(q.expand or []))


ListDep = Annotated[ListParams, Depends(list_params)]


async def expand_params(q: ExpandQuery = wire_query(ExpandQuery)) -> list[str]:
    return list(q.expand or [])


# -- routes that skip FastAPI's dependency solving ----------------------------------------
# A GET of one object is mostly plumbing: FastAPI solving its dependency tree (the caller,
# its header, the expand query, the route's own query: 16 parameter passes) cost about a
# quarter of the request's server time (issue 10). A route registered with
# ``route_class_override=DirectRoute`` whose endpoint has a ``direct`` twin runs the twin
# instead: it reads the request itself, making the same checks in the same order (the
# caller's: key, rate limit, Stripe-Account, kind, unknown parameters, a publishable key's
# client secret; then the expand query; then the route's own query). The endpoint's declared
# signature stays what the OpenAPI document and ``check_query`` read.

_DIRECT: dict[Callable[..., Any], Callable[[Request], Awaitable[Response]]] = {}
_EXPAND_QUERY = WireQuery(ExpandQuery)


def direct(
    endpoint: Callable[..., Any],
) -> Callable[[Callable[[Request], Awaitable[Response]]], Callable[[Request], Awaitable[Response]]]:
    """``@direct(endpoint)`` on ``async def twin(request) -> Response``: ``endpoint``'s route
    (with ``route_class_override=DirectRoute``) runs ``twin``."""

    def register(
        twin: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        _DIRECT[endpoint] = twin
        return twin

    return register


class DirectRoute(APIRoute):
    """An APIRoute that runs its endpoint's ``direct`` twin, unless the app overrides a
    dependency (tests): then FastAPI's own handler, which honours the override."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        solved = super().get_route_handler()
        twin = _DIRECT.get(self.endpoint)
        if twin is None:
            return solved

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides:
                return await solved(request)
            return await twin(request)

        return handler


async def direct_caller(request: Request) -> Caller:
    """``CallerDep`` for a direct twin: ``caller`` with the header FastAPI would pass."""
    return await caller(request, request.headers.get("authorization"))


async def direct_expand(request: Request) -> list[str]:
    """``ExpandDep`` for a direct twin (the same model, the same errors). A request without
    a query string expands nothing: no model to validate (issue 10)."""
    if not request.scope.get("query_string"):
        return []
    return await expand_params(cast(ExpandQuery, await _EXPAND_QUERY(request)))


def direct_query_str(request: Request, name: str, *, max_length: int) -> str | None:
    """A ``str | None`` query parameter with ``Query(max_length=...)``, as FastAPI reads it
    (the last value given) and refuses it (``RequestValidationError``: a 400 naming it).
    Without a query string there is none: no query parsed (issue 10)."""
    if not request.scope.get("query_string"):
        return None
    value = request.query_params.get(name)
    if value is not None and len(value) > max_length:
        raise RequestValidationError(
            [
                {
                    "type": "string_too_long",
                    "loc": ("query", name),
                    "msg": f"String should have at most {max_length} characters",
                    "input": None,
                    "ctx": {"max_length": max_length},
                }
            ]
        )
    return value


ExpandDep = Annotated[list[str], Depends(expand_params)]


def list_response(url: str, data: list[dict[str, Any]], has_more: bool) -> JSONResponse:
    return JSONResponse({"object": "list", "url": url, "data": data, "has_more": has_more})


async def list_expanded(
    c: Caller, url: str, kind: str, data: list[dict[str, Any]], has_more: bool, page: ListParams
) -> JSONResponse:
    """A Stripe list object, its items expanded as ``expand[]=data.<field>`` asks."""
    check_expand(kind, page.expand, c, listed=True)
    data = await c.app.expander.many(c.account_id, kind, data, page.expand)
    return list_response(url, data, has_more)


async def expanded(c: Caller, view: dict[str, Any], paths: list[str] | None) -> dict[str, Any]:
    """``view`` with the ids ``paths`` name replaced by their objects."""
    check_expand(str(view.get("object")), paths, c)
    return await c.app.expander.one(c.account_id, view, list(paths or []))


def check_expand(
    kind: str, paths: list[str] | None, c: Caller | None = None, *, listed: bool = False
) -> None:
    """Refuse an expand path before the operation runs (a create is not made for nothing),
    and, for a restricted key, one that would load objects it may not read."""
    wanted = list(paths or [])
    Expander.check(kind, wanted, listed=listed)
    if c is not None and c.kind == "restricted":
        for target in Expander.targets(kind, wanted, listed=listed):
            resource = target + "s"  # customer -> customers, charge -> charges, ...
            if not permits(c.permissions, resource, "read"):
                raise PaymuxError.of(
                    "api_key_permission_denied",
                    f"This key may not read {resource}, so it can't expand them "
                    f"(it needs {resource}: read).",
                    param="expand",
                )
