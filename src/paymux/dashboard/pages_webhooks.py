"""Webhooks: inbound (the gateways' events in the inbox, the dead letters, replay) and
outbound (the account's endpoints, every delivery attempt with its response, resend).

Everyone may look; replay and resend are for admin and developer (``DEVELOPERS``). The inbox
shows (and replays) the account's own rows: the events that came in on its connections. An
event of a deployment gateway (configured by environment variables: its row has no account)
belongs to the deployment, so to its default account's admins, who see and replay those too.
Inbox rows carry no mode: they are listed in test and live mode alike."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.dashboard.actions import record_action
from paymux.dashboard.auth import ANY, DEVELOPERS, CurrentUser, core, require_role
from paymux.dashboard.page_helpers import done, field, refused
from paymux.dashboard.render import PREFIX, render
from paymux.domain.errors import PaymuxError
from paymux.services.accounts import DEFAULT_ACCOUNT
from paymux.webhooks.inbound import INBOX_STATUSES

__all__ = ["INBOX_STATUSES", "router"]

router = APIRouter()
Viewer = Annotated[CurrentUser, Depends(require_role(*ANY))]
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
_BACK = f"{PREFIX}/webhooks"
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9]{1,60}")
_SCAN = 500  # inbox rows read to find the account's latest


def _visible(user: CurrentUser, row: dict[str, Any]) -> bool:
    if row["account"] is None:  # a deployment gateway's
        return user.account_id == DEFAULT_ACCOUNT and user.role == "admin"
    return bool(row["account"] == user.account_id)


async def _inbox(request: Request, user: CurrentUser, status: str | None) -> list[dict[str, Any]]:
    rows = await core(request).webhooks.list_page(status=status, limit=_SCAN)
    return [r for r in rows if _visible(user, r)][:100]


@router.get("/webhooks")
async def webhooks_page(request: Request, user: Viewer) -> Response:
    status = request.query_params.get("status") or None
    if status not in INBOX_STATUSES:
        status = None
    endpoints, _ = await core(request).webhook_endpoints.list_page(
        user.account_id, limit=100, starting_after=None, ending_before=None
    )
    return render(
        request,
        "dashboard/webhooks.html",
        user=user,
        inbox=await _inbox(request, user, status),
        inbox_status=status,
        statuses=INBOX_STATUSES,
        endpoints=endpoints,
        can_act=user.can(DEVELOPERS),
    )


@router.post("/webhooks/inbound/replay")
async def replay_inbound(request: Request, user: Developer) -> Response:
    """Replay one dead event of the account (``inbox_id``), or all of them (none given)."""
    form = await request.form()
    wanted = field(form, "inbox_id")
    dead = [r["id"] for r in await _inbox(request, user, "dead")]
    if wanted and wanted not in dead:
        return refused(
            request,
            user,
            PaymuxError.of(
                "resource_missing", f"No such dead webhook event: '{wanted[:40]}'", param="inbox_id"
            ),
        )
    replayed: list[str] = []
    for inbox_id in [wanted] if wanted else dead:
        replayed += await core(request).webhooks.replay(event_id=inbox_id)
    await record_action(
        request,
        user,
        "webhook_inbox.replay",
        object_type="webhook_event",
        object_id=wanted or None,
        details={"replayed": replayed},
    )
    return done(_BACK + "?status=dead")


def _resent_note(value: str | None) -> str | None:
    """The ``?resent=`` the page notes: an event id (``evt_...``); other text is not echoed."""
    return value if value and _EVENT_ID.fullmatch(value) else None


@router.get("/webhooks/endpoints/{endpoint_id}")
async def endpoint_page(request: Request, endpoint_id: str, user: Viewer) -> Response:
    app = core(request)
    try:
        endpoint = await app.webhook_endpoints.retrieve(user.account_id, endpoint_id)
        attempts, more = await app.webhook_endpoints.attempts(
            user.account_id,
            endpoint_id,
            limit=100,
            starting_after=request.query_params.get("starting_after") or None,
            ending_before=None,
        )
    except PaymuxError as exc:
        return refused(request, user, exc)
    return render(
        request,
        "dashboard/webhook_endpoint.html",
        user=user,
        endpoint=endpoint,
        attempts=attempts,
        more=more,
        can_act=user.can(DEVELOPERS),
        resent=_resent_note(request.query_params.get("resent")),
    )


@router.post("/webhooks/endpoints/{endpoint_id}/resend")
async def resend(request: Request, endpoint_id: str, user: Developer) -> Response:
    form = await request.form()
    event_id = field(form, "event")
    try:
        await core(request).webhook_endpoints.resend(user.account_id, endpoint_id, event_id)
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request,
        user,
        "webhook_endpoint.resend",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        details={"event": event_id},
    )
    return done(f"{PREFIX}/webhooks/endpoints/{endpoint_id}?resent={event_id}")
