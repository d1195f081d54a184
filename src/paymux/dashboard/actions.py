"""Dashboard actions through the same services, idempotency and audit log as the API.

``run_action``: a money-moving form (refund, capture, cancel) carries an idempotency key
made when the form was rendered (``new_action_key``). The action runs under that key exactly
as an API request with ``Idempotency-Key`` does (services/idempotency.py): the first submit
claims it and runs; a second submit of the same form (a double click, a reload) gets the
first one's stored answer, or ``idempotency_key_in_use`` while the first still runs; it
never runs twice. An unexpected failure (not a refusal, not a gateway outage) releases the
key, shielded from cancellation as the API's, and answers ``service_unavailable`` (503):
the same form may be submitted again. The audit entry names the dashboard user
(``dashboard:<email>``); the services that audit in their own transaction (capture, cancel,
refund) do it there.

``record_action``: an audit entry for a dashboard action that no service audits itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from paymux.dashboard.auth import CurrentUser, core
from paymux.domain.errors import PaymuxError
from paymux.gateways.base import GatewayRateLimited, GatewayUnavailable
from paymux.services.audit import AuditRequest, pending_audit
from paymux.services.idempotency import Replay, current_claim, request_fingerprint

__all__ = ["ActionResult", "new_action_key", "record_action", "run_action"]

log = logging.getLogger(__name__)
KEY_PREFIX = "dash_"


def new_action_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    result: dict[str, Any]  # the object, or {"error": {...}}
    replayed: bool = False
    status: int = 200  # the HTTP status the API would have answered with

    @property
    def code(self) -> str | None:
        error = self.result.get("error") or {}
        return str(error["code"]) if error.get("code") else None

    @property
    def error_message(self) -> str:
        error = self.result.get("error") or {}
        return str(error.get("message") or error.get("code") or "The action failed.")


def _final(status: int, result: dict[str, Any]) -> bool:
    """What the API stores for a key: a 4xx, or a 2xx no longer waiting for the gateway."""
    return status < 500 and result.get("status") != "processing"


async def run_action(
    request: Request,
    user: CurrentUser,
    *,
    key: str,
    route: tuple[str, ...],
    verb: str,
    params: dict[str, Any],
    operation: Callable[[], Awaitable[dict[str, Any]]],
) -> ActionResult:
    """Run ``operation`` once per ``key`` (``route``/``verb``: how the audit log names it,
    as the API's ``("refunds",)``/``create``)."""
    app = core(request)
    if not key.startswith(KEY_PREFIX):
        error = PaymuxError.of(
            "parameter_invalid", "The form has no action key: reload it.", param="idempotency_key"
        )
        return ActionResult(False, {"error": error.to_dict()})
    path = request.url.path
    fingerprint = request_fingerprint("POST", path, params)
    try:
        claim = await app.idempotency.begin(
            user.account_id, key, "POST", path, fingerprint, livemode=user.livemode
        )
    except PaymuxError as exc:
        return ActionResult(False, {"error": exc.to_dict()}, replayed=True, status=exc.http_status)
    if isinstance(claim, Replay):
        body: dict[str, Any] = json.loads(claim.body)
        return ActionResult(claim.status < 300, body, replayed=True, status=claim.status)
    note = AuditRequest(
        account_id=user.account_id,
        actor=user.actor,
        action_verb=verb,
        method="POST",
        path=path,
        livemode=user.livemode,
        request_id=getattr(request.state, "request_id", None),
        route=route,
    )
    claim_token = current_claim.set(claim)
    audit_token = pending_audit.set(note)
    status = 200
    try:
        try:
            result = await operation()
        except PaymuxError as exc:
            status, result = exc.http_status, {"error": exc.to_dict()}
        except (GatewayUnavailable, GatewayRateLimited):
            status = 503
            result = {"error": PaymuxError.of("gateway_unavailable").to_dict()}
    except BaseException as exc:
        # Cancelled, or the database (or our code) failed: not an answer to keep. The key is
        # released even when the request is being cancelled (as api/deps.idempotent does),
        # so the next submit resumes from the recovery point the service recorded.
        await asyncio.shield(app.idempotency.release(user.account_id, key, livemode=user.livemode))
        if not isinstance(exc, Exception):
            raise
        log.warning("dashboard %s failed (%s); key released", verb, type(exc).__name__)
        error = PaymuxError.of("service_unavailable")
        return ActionResult(False, {"error": error.to_dict()}, status=error.http_status)
    finally:
        pending_audit.reset(audit_token)
        current_claim.reset(claim_token)
    if _final(status, result):
        await app.idempotency.finish(
            user.account_id, key, status, json.dumps(result), livemode=user.livemode
        )
    else:
        await app.idempotency.release(user.account_id, key, livemode=user.livemode)
    if status < 300 and not note.written:
        try:
            await app.audit.write(note.values(result, app.ctx.now_us()))
        except Exception:
            log.exception("could not write the audit entry of a dashboard %s", verb)
    return ActionResult(status < 300, result, status=status)


async def record_action(
    request: Request,
    user: CurrentUser,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await core(request).audit.record(
        account_id=user.account_id,
        actor=user.actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        livemode=user.livemode,
        request_id=getattr(request.state, "request_id", None),
        details=details,
    )
