"""Webhooks: inbound (the gateways' events in the inbox, the dead letters, replay) and
outbound (the account's endpoints, every delivery attempt with its response, resend).

Everyone may look; replay and resend are for admin and developer (``DEVELOPERS``). The inbox
shows (and replays) the account's own rows: the events that came in on its connections. An
event of a deployment gateway (configured by environment variables: its row has no account)
belongs to the deployment, so to its default account's admins, who see and replay those too.
The inbox is read by account, status and cursor in SQL (``services/webhook_inbox_reads.py``).
Inbox rows carry no mode: they are listed in test and live mode alike (docs/dashboard.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.dashboard.actions import record_action
from paymux.dashboard.auth import ANY, DEVELOPERS, CurrentUser, core, require_role
from paymux.dashboard.page_helpers import done, field, refused
from paymux.dashboard.render import PREFIX, render
from paymux.domain.errors import PaymuxError
from paymux.services.accounts import DEFAULT_ACCOUNT
from paymux.services.webhook_inbox_reads import inbox_page
from paymux.webhooks.inbound import INBOX_STATUSES

__all__ = ["INBOX_STATUSES", "router"]

router = APIRouter()
Viewer = Annotated[CurrentUser, Depends(require_role(*ANY))]
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
_BACK = f"{PREFIX}/webhooks"
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9]{1,60}")
INBOX_PAGE = 100


async def _inbox(
    request: Request,
    user: CurrentUser,
    status: str | None,
    *,
    after: str | None = None,
    inbox_id: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of the inbox rows ``user`` may see: the account's own, and a deployment
    gateway's (no account) for the default account's admins."""
    return await inbox_page(
        core(request).ctx,
        user.account_id,
        with_deployment=user.account_id == DEFAULT_ACCOUNT and user.role == "admin",
        status=status,
        limit=INBOX_PAGE,
        starting_after=after,
        inbox_id=inbox_id,
    )


@router.get("/webhooks")
async def webhooks_page(request: Request, user: Viewer) -> Response:
    status = request.query_params.get("status") or None
    if status not in INBOX_STATUSES:
        status = None
    after = (request.query_params.get("starting_after") or "")[:40] or None
    endpoints, _ = await core(request).webhook_endpoints.list_page(
        user.account_id, limit=100, starting_after=None, ending_before=None
    )
    inbox, more = await _inbox(request, user, status, after=after)
    older = None
    if inbox and more:
        older = "?" + urlencode(
            {**({"status": status} if status else {}), "starting_after": inbox[-1]["id"]}
        )
    return render(
        request,
        "dashboard/webhooks.html",
        user=user,
        inbox=inbox,
        older=older,
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
    rows, _ = await _inbox(request, user, "dead", inbox_id=wanted or None)
    dead = [r["id"] for r in rows]
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
