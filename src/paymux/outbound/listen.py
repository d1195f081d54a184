"""``paymux listen --forward-to URL``: the account's new events, forwarded to a developer's
local handler (like ``stripe listen``).

It talks to a paymux API with the account's key (so it works against any paymux server, not
only one whose database is at hand): the newest event at start is the cursor, and every
``interval`` the events after it (``GET /v1/events?ending_before=``, oldest first) are
POSTed to the URL with the body and signature headers a test endpoint's delivery has
(``delivery.post_signed``), signed with the session's secret (printed at start, or given).
Only events created from now on are forwarded; one line is printed per event, with the
answer's status. Nothing is recorded: a handler that fails is not retried (re-send with
``paymux webhooks deliver`` to a registered endpoint for that).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx

from paymux.domain.events import EVENT_TYPES
from paymux.outbound.delivery import Send, post_signed
from paymux.outbound.http1 import ConnectionPool
from paymux.outbound.ssrf import Blocked, check_url
from paymux.outbound.views import DEFAULT_API_VERSION

__all__ = ["ListenError", "Listener", "forwarded_body"]

PAGE = 100


class ListenError(Exception):
    """Bad options, or the API refused (the message is safe to print)."""


def forwarded_body(event: dict[str, Any]) -> bytes:
    """The body of a forwarded event: the event as ``/v1/events`` lists it, with the fields
    a delivery carries (``outbound.views.event_payload``) filled in."""
    payload = {
        "api_version": DEFAULT_API_VERSION,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},  # /v1/events has it; older did not
        **event,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


class Listener:
    def __init__(
        self,
        *,
        api_base: str,
        api_key: str,
        forward_to: str,
        types: list[str] | None,
        secret: str,
        scheme: str,
    ) -> None:
        try:
            # The developer names the URL: loopback and private addresses are allowed.
            check_url(forward_to, livemode=False, allow_private=True)
        except Blocked as exc:
            raise ListenError(f"--forward-to: {exc}") from None
        unknown = sorted(set(types or ()) - EVENT_TYPES)
        if unknown:
            raise ListenError(f"--events: unknown event type(s) {', '.join(unknown)}")
        self.api_base = api_base.rstrip("/")
        self.api_key = api_key
        self.forward_to = forward_to
        self.types = set(types) if types else None
        self.secret = secret
        self.scheme = scheme

    async def forward(
        self, *, interval: float = 0.5, max_events: int | None = None
    ) -> AsyncIterator[str]:
        """Forward new events until ``max_events`` were (or forever): one line each, after
        a first "Ready!" line once the starting point is known."""
        pool = ConnectionPool(connect_timeout=5.0, allow_private=True)
        headers = {"authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(
            base_url=self.api_base, headers=headers, trust_env=False, timeout=30.0
        ) as api:
            try:
                newest, _ = await self._page(api, {"limit": 1})
                cursor: str | None = newest[0]["id"] if newest else None
                # Only now: an event made after this line is printed is forwarded.
                yield (
                    f"Ready! Forwarding to {self.forward_to}; your webhook signing secret is "
                    f"{self.secret} (^C to quit)"
                )
                forwarded = 0
                while max_events is None or forwarded < max_events:
                    new = await self._after(api, cursor)
                    for event in new:
                        cursor = str(event["id"])
                        if self.types is not None and event.get("type") not in self.types:
                            continue
                        yield await self._send(pool, event)
                        forwarded += 1
                        if max_events is not None and forwarded >= max_events:
                            return
                    if not new:
                        await asyncio.sleep(interval)
            finally:
                await pool.aclose()

    async def _page(
        self, api: httpx.AsyncClient, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of ``/v1/events`` and whether there are more."""
        try:
            r = await api.get("/v1/events", params=params)
        except httpx.HTTPError as exc:
            raise ListenError(f"{self.api_base}: {type(exc).__name__}") from None
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise ListenError(f"GET /v1/events answered {r.status_code}: {message}")
        body = r.json()
        data: list[dict[str, Any]] = body["data"]
        return data, bool(body.get("has_more"))

    async def _after(self, api: httpx.AsyncClient, cursor: str | None) -> list[dict[str, Any]]:
        """The events after ``cursor`` (all of them if None), oldest first."""
        if cursor is None:  # none at start: every event there is now is new
            found: list[dict[str, Any]] = []
            params: dict[str, Any] = {"limit": PAGE}
            while True:
                page, more = await self._page(api, params)
                found += page
                if not page or not more:
                    return list(reversed(found))
                params = {"limit": PAGE, "starting_after": page[-1]["id"]}
        found = []
        while True:
            page, more = await self._page(api, {"limit": PAGE, "ending_before": cursor})
            found += reversed(page)  # a page after the cursor comes newest first
            if not page or not more:
                return found
            cursor = page[0]["id"]

    async def _send(self, pool: ConnectionPool, event: dict[str, Any]) -> str:
        job = Send(
            delivery_id="",
            account_id="",
            endpoint_id="",
            event_id=str(event["id"]),
            event_type=str(event.get("type")),
            url=self.forward_to,
            livemode=False,
            scheme=self.scheme,
            secrets=[self.secret],
            body=forwarded_body(event),
            lease_until=0,  # no delivery row: nothing leased
        )
        outcome = await post_signed(pool, job, total_timeout=10.0)
        when = datetime.fromtimestamp(time.time(), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        answer = f"[{outcome.http_status}]" if outcome.http_status else f"[{outcome.error}]"
        return f"{when}  {job.event_type} {job.event_id} --> POST {self.forward_to} {answer}"
