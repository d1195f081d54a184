"""/v1/webhook_endpoints: the URLs an account's events go to (Stripe's webhook_endpoint),
with their signing secrets sealed at rest, their delivery attempts, and manual sends
(resend one event, replay a time range, a test event)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update

from paymux.domain.errors import PaymuxError
from paymux.domain.events import EVENT_TYPES
from paymux.domain.ids import new_id
from paymux.outbound.signing import SCHEMES, new_secret
from paymux.outbound.ssrf import Blocked, check_url
from paymux.outbound.stripe_event_types import STRIPE_EVENT_TYPES
from paymux.outbound.views import attempt_view, endpoint_view
from paymux.security.envelope import Keyring
from paymux.services.context import (
    Context,
    get_owned,
    merge_metadata,
    page_of,
    paginate,
    scoped,
)
from paymux.storage.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = ["EndpointParams", "WebhookEndpoints", "account_of", "matches", "secret_context"]

log = logging.getLogger(__name__)

MAX_ENDPOINTS = 16  # per account and mode, as Stripe
MAX_GRACE_SECONDS = 7 * 24 * 3600
MAX_REPLAY_EVENTS = 10_000
TEST_EVENT_TYPE = "webhook_endpoint.test"


def secret_context(endpoint_id: str, field: str = "secret") -> str:
    """What a sealed secret is bound to: copied to another row or field, it does not open."""
    return f"webhook_endpoint:{endpoint_id}:{field}"


def matches(enabled_events: list[str], event_type: str) -> bool:
    """Whether an endpoint listening to ``enabled_events`` gets an event of this type."""
    return "*" in enabled_events or event_type in enabled_events


@dataclass(frozen=True, slots=True)
class EndpointParams:
    url: str | None = None
    enabled_events: list[str] | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None
    signature_scheme: str | None = None
    api_version: str | None = None
    disabled: bool | None = None


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise PaymuxError.of(
            "parameter_invalid",
            "enabled_events must name at least one event type, or '*'.",
            param="enabled_events",
        )
    for name in events:
        # paymux's catalog (domain/events.py), or a type Stripe has that paymux never sends:
        # an endpoint a merchant's Stripe code registers keeps working.
        if name != "*" and name not in EVENT_TYPES and name not in STRIPE_EVENT_TYPES:
            raise PaymuxError.of(
                "parameter_invalid",
                f"Invalid event type in enabled_events: {name[:80]!r} (see docs/events.md).",
                param="enabled_events",
            )
    return list(dict.fromkeys(events))


class WebhookEndpoints:
    def __init__(self, ctx: Context, keyring: Keyring) -> None:
        self.ctx = ctx
        self.keyring = keyring

    # -- secrets -------------------------------------------------------------------------
    def _seal(self, endpoint_id: str, secret: str, field: str = "secret") -> str:
        if not self.keyring.configured:
            raise PaymuxError.of(
                "encryption_not_configured",
                "Webhook endpoint secrets are stored encrypted: set PAYMUX_ENCRYPTION_KEYS "
                "on the server.",
            )
        return self.keyring.seal(secret.encode(), context=secret_context(endpoint_id, field))

    def secrets_of(self, ep: WebhookEndpoint, now_us: int) -> list[str]:
        """The secrets that sign a delivery now: the current one, and the previous one while
        its grace period lasts."""
        out = [self.keyring.open(ep.secret, context=secret_context(ep.id)).decode()]
        if ep.old_secret and (ep.old_secret_expires_us or 0) > now_us:
            old = self.keyring.open(ep.old_secret, context=secret_context(ep.id, "old_secret"))
            out.append(old.decode())
        return out

    # -- checks --------------------------------------------------------------------------
    def _check_url(self, url: str, livemode: bool) -> str:
        try:
            check_url(url, livemode=livemode, allow_private=self.ctx.settings.webhook_allow_private)
        except Blocked as exc:
            raise PaymuxError.of("parameter_invalid", str(exc), param="url") from None
        return url

    @staticmethod
    def _check_scheme(scheme: str) -> str:
        if scheme not in SCHEMES:
            raise PaymuxError.of(
                "parameter_invalid",
                f"signature_scheme must be one of {', '.join(SCHEMES)}.",
                param="signature_scheme",
            )
        return scheme

    # -- the resource --------------------------------------------------------------------
    async def create(self, account_id: str, livemode: bool, p: EndpointParams) -> dict[str, Any]:
        if not p.url:
            raise PaymuxError.of("parameter_missing", "Missing required param: url.", param="url")
        if p.enabled_events is None:
            raise PaymuxError.of(
                "parameter_missing",
                "Missing required param: enabled_events.",
                param="enabled_events",
            )
        url = self._check_url(p.url, livemode)
        events = _check_events(p.enabled_events)
        scheme = self._check_scheme(p.signature_scheme or "standard")
        endpoint_id = new_id("we")
        secret = new_secret()
        sealed = self._seal(endpoint_id, secret)
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            count = await s.scalar(
                select(func.count())
                .select_from(WebhookEndpoint)
                .where(
                    WebhookEndpoint.account_id == account_id,
                    WebhookEndpoint.livemode.is_(livemode),
                    WebhookEndpoint.deleted.is_(False),
                )
            )
            if (count or 0) >= MAX_ENDPOINTS:
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"An account can have at most {MAX_ENDPOINTS} webhook endpoints per mode.",
                    param="url",
                )
            ep = WebhookEndpoint(
                id=endpoint_id,
                account_id=account_id,
                livemode=livemode,
                url=url,
                description=p.description or None,
                metadata_=merge_metadata({}, p.metadata or {}),
                enabled_events=events,
                signature_scheme=scheme,
                api_version=p.api_version,
                status="disabled" if p.disabled else "enabled",
                secret=sealed,
                deleted=False,
                created_us=now,
            )
            s.add(ep)
            await s.flush()
            return endpoint_view(ep, secret=secret)

    async def retrieve(self, account_id: str, endpoint_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return endpoint_view(await get_owned(s, WebhookEndpoint, endpoint_id, account_id))

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            WebhookEndpoint,
            account_id,
            endpoint_view,
            WebhookEndpoint.deleted.is_(False),
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )

    async def update(self, account_id: str, endpoint_id: str, p: EndpointParams) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            ep = await get_owned(s, WebhookEndpoint, endpoint_id, account_id, lock=True)
            if p.url is not None:
                ep.url = self._check_url(p.url, ep.livemode)
            if p.enabled_events is not None:
                ep.enabled_events = _check_events(p.enabled_events)
            if p.description is not None:
                ep.description = p.description or None
            if p.metadata is not None:
                ep.metadata_ = merge_metadata(ep.metadata_, p.metadata)
            if p.signature_scheme is not None:
                ep.signature_scheme = self._check_scheme(p.signature_scheme)
            if p.api_version is not None:
                ep.api_version = p.api_version or None
            if p.disabled is True:
                ep.status, ep.disabled_reason = "disabled", "manual"
            elif p.disabled is False and ep.status != "enabled":
                ep.status, ep.disabled_reason, ep.failing_since_us = "enabled", None, None
            await s.flush()
            return endpoint_view(ep)

    async def delete(self, account_id: str, endpoint_id: str) -> dict[str, Any]:
        """Deleted endpoints get nothing more: their pending deliveries are canceled."""
        async with self.ctx.db.write() as s:
            ep = await get_owned(s, WebhookEndpoint, endpoint_id, account_id, lock=True)
            ep.deleted, ep.status = True, "disabled"
            ep.old_secret = None
            await s.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == ep.id, WebhookDelivery.status == "pending")
                .values(status="canceled")
            )
        return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}

    async def roll_secret(
        self, account_id: str, endpoint_id: str, grace_period: int
    ) -> dict[str, Any]:
        """A new secret, shown in this answer only. For ``grace_period`` seconds the old one
        signs too (each delivery carries both signatures), so receivers can switch over."""
        if not 0 <= grace_period <= MAX_GRACE_SECONDS:
            raise PaymuxError.of(
                "parameter_invalid",
                f"grace_period must be between 0 and {MAX_GRACE_SECONDS} seconds.",
                param="grace_period",
            )
        secret = new_secret()
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            ep = await get_owned(s, WebhookEndpoint, endpoint_id, account_id, lock=True)
            current = self.keyring.open(ep.secret, context=secret_context(ep.id)).decode()
            if grace_period:
                ep.old_secret = self._seal(ep.id, current, "old_secret")
                ep.old_secret_expires_us = now + grace_period * 1_000_000
            else:
                ep.old_secret, ep.old_secret_expires_us = None, None
            ep.secret = self._seal(ep.id, secret)
            await s.flush()
            return endpoint_view(ep, secret=secret)

    # -- attempts and manual sends -------------------------------------------------------
    async def attempts(
        self,
        account_id: str,
        endpoint_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        event: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        async with self.ctx.db.read() as s:
            await get_owned(s, WebhookEndpoint, endpoint_id, account_id)
            query = select(WebhookAttempt).where(
                WebhookAttempt.account_id == account_id,
                WebhookAttempt.endpoint_id == endpoint_id,
            )
            if event:
                query = query.where(WebhookAttempt.event_id == event)
            rows, more = await paginate(
                s,
                WebhookAttempt,
                query,
                account_id,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
            )
            return [attempt_view(a) for a in rows], more

    async def _enqueue(self, s: Any, ep: WebhookEndpoint, event_ids: list[str]) -> int:
        now = self.ctx.now_us()
        if event_ids:
            await s.execute(
                insert(WebhookDelivery),
                [
                    {
                        "id": new_id("whdl"),
                        "account_id": ep.account_id,
                        "endpoint_id": ep.id,
                        "event_id": event_id,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_us": now,
                        "created_us": now,
                    }
                    for event_id in event_ids
                ],
            )
        return len(event_ids)

    async def resend(self, account_id: str, endpoint_id: str, event_id: str) -> dict[str, Any]:
        """Send one event to the endpoint again (or for the first time), now; the receiver
        sees the same event id as before."""
        async with self.ctx.db.write() as s:
            ep = await get_owned(s, WebhookEndpoint, endpoint_id, account_id)
            event = await get_owned(s, Event, event_id, account_id, param="event")
            if event.livemode != ep.livemode:
                raise PaymuxError.of(
                    "resource_missing", f"No such event: '{event_id}'", param="event"
                )
            await self._enqueue(s, ep, [event.id])
        return {
            "object": "webhook_endpoint.resend",
            "webhook_endpoint": endpoint_id,
            "event": event_id,
            "queued": 1,
        }

    async def replay(
        self, account_id: str, endpoint_id: str, gte: int | None, lte: int | None
    ) -> dict[str, Any]:
        """Send again every event of a time range (``created`` seconds, inclusive) the
        endpoint listens to, oldest first; at most MAX_REPLAY_EVENTS per call."""
        async with self.ctx.db.write() as s:
            ep = await get_owned(s, WebhookEndpoint, endpoint_id, account_id)
            query = scoped(Event, account_id).where(Event.livemode.is_(ep.livemode))
            if gte is not None:
                query = query.where(Event.created_us >= gte * 1_000_000)
            if lte is not None:
                query = query.where(Event.created_us < (lte + 1) * 1_000_000)
            rows = (
                await s.execute(
                    query.with_only_columns(Event.id, Event.type)
                    .order_by(Event.created_us, Event.id)
                    .limit(MAX_REPLAY_EVENTS + 1)
                )
            ).all()
            if len(rows) > MAX_REPLAY_EVENTS:
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"The range holds more than {MAX_REPLAY_EVENTS} events: narrow it.",
                    param="created",
                )
            ids = [r.id for r in rows if matches(ep.enabled_events, r.type)]
            queued = await self._enqueue(s, ep, ids)
        return {
            "object": "webhook_endpoint.replay",
            "webhook_endpoint": endpoint_id,
            "queued": queued,
        }

    async def send_test(self, account_id: str, endpoint_id: str) -> dict[str, Any]:
        """A ``webhook_endpoint.test`` event (its object: the endpoint), sent to this endpoint
        alone, whatever it listens to. It is a real event (listed in /v1/events)."""
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            ep = await get_owned(s, WebhookEndpoint, endpoint_id, account_id)
            event_id = new_id("evt")
            await s.execute(
                insert(Event),
                {
                    "id": event_id,
                    "account_id": account_id,
                    "type": TEST_EVENT_TYPE,
                    "object_id": ep.id,
                    "livemode": ep.livemode,
                    "data": endpoint_view(ep),
                    "created_us": now,
                    # No row in the outbox: to this endpoint only, not for the dispatcher.
                    # Marked, so the previous release's dispatcher skips it too (0040).
                    "dispatched_us": now,
                },
            )
            await self._enqueue(s, ep, [event_id])
        return {
            "object": "webhook_endpoint.test",
            "webhook_endpoint": endpoint_id,
            "event": event_id,
            "queued": 1,
        }


async def account_of(ctx: Context, endpoint_id: str) -> str:
    """The account an endpoint belongs to (for the operator's CLI, which names no account)."""
    async with ctx.db.read() as s:
        ep = await s.get(WebhookEndpoint, endpoint_id)
        if ep is None or ep.deleted:
            raise PaymuxError.of(
                "resource_missing", f"No such webhook_endpoint: '{endpoint_id}'", param="id"
            )
        return ep.account_id
