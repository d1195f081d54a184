"""Sending deliveries: claim the due ones, POST each (signed, SSRF-checked, time-limited),
record the attempt, schedule a retry or give up.

At least once: a delivery is leased when claimed (``next_attempt_us`` moved past the longest
a send can take); its outcome is written after the request. A worker killed in between
leaves the delivery due again when the lease runs out: it is sent again, with the same event
id, which is how receivers recognise a duplicate.

One slow endpoint never delays another: each send is its own task; at most
``webhook_endpoint_concurrency`` per endpoint and ``webhook_max_in_flight`` in all are in
flight, and the claim skips endpoints already at their limit. Each request has a connect
timeout and a total timeout; redirects are not followed (a 3xx is a failure); at most
MAX_RESPONSE_BYTES of the answer are read and RESPONSE_BODY_CHARS kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import insert, select, update

from paymux.domain.ids import new_id
from paymux.outbound.dispatch import dispatch_once
from paymux.outbound.endpoints import WebhookEndpoints
from paymux.outbound.schedule import parse_schedule, retry_delay
from paymux.outbound.signing import signed_headers
from paymux.outbound.ssrf import Blocked, resolve_allowed
from paymux.outbound.views import endpoint_view, event_payload
from paymux.services.context import Context, emit
from paymux.storage.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = ["DeliveryRunner", "Outcome", "Send", "post_signed"]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
RESPONSE_BODY_CHARS = 2000
USER_AGENT = "paymux-webhooks/1"


@dataclass(frozen=True, slots=True)
class Send:
    """What one request needs, read when the delivery was claimed."""

    delivery_id: str
    account_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    url: str
    livemode: bool
    scheme: str
    secrets: list[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    http_status: int | None
    latency_ms: int
    response_body: str | None
    error: str | None


async def post_signed(
    client: httpx.AsyncClient,
    job: Send,
    *,
    allow_private: bool,
    total_timeout: float,
    now: float | None = None,
) -> Outcome:
    """POST one delivery to the address its host resolves to NOW (checked: ssrf), with the
    Host header and TLS server name of the URL. Never raises for the endpoint's faults."""
    started = time.monotonic()

    def done(status: int | None, body: str | None, error: str | None) -> Outcome:
        ok = status is not None and 200 <= status < 300
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(ok, status, latency, body, error)

    parts = urlsplit(job.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(total_timeout):
            ip = await resolve_allowed(
                host, port, livemode=job.livemode, allow_private=allow_private
            )
    except Blocked as exc:
        return done(None, None, f"blocked: {exc}")
    except TimeoutError:
        return done(None, None, f"timeout: {host!r} did not resolve in time")
    target = urlunsplit(
        (
            parts.scheme,
            f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}",
            parts.path or "/",
            parts.query,
            "",
        )
    )
    timestamp = int(time.time() if now is None else now)
    headers = {
        "content-type": "application/json; charset=utf-8",
        "user-agent": USER_AGENT,
        "host": parts.netloc.rsplit("@", 1)[-1],
        **signed_headers(job.scheme, job.event_id, timestamp, job.body, job.secrets),
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    try:
        async with asyncio.timeout(total_timeout):
            async with client.stream(
                "POST", target, content=job.body, headers=headers, extensions=extensions
            ) as response:
                received = bytearray()
                async for chunk in response.aiter_raw():
                    received += chunk
                    if len(received) >= MAX_RESPONSE_BYTES:
                        break
                text = bytes(received[:MAX_RESPONSE_BYTES]).decode("utf-8", "replace")
                return done(response.status_code, text[:RESPONSE_BODY_CHARS], None)
    except TimeoutError:
        return done(None, None, f"timeout: no answer within {total_timeout:g} s")
    except httpx.HTTPError as exc:
        return done(None, None, f"{type(exc).__name__}: could not reach the endpoint")


class DeliveryRunner:
    """The worker's outbound loop: dispatch new events, claim due deliveries, send them."""

    def __init__(self, ctx: Context, endpoints: WebhookEndpoints) -> None:
        self.ctx = ctx
        self.endpoints = endpoints
        settings = ctx.settings
        self.schedule = parse_schedule(settings.webhook_retry_schedule)
        # Longer than a send (its total timeout) and its recording can take.
        self.lease_us = int((2 * settings.webhook_timeout + 5.0) * 1_000_000)
        self.in_flight: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(
                settings.webhook_timeout, connect=settings.webhook_connect_timeout
            ),
            limits=httpx.Limits(
                max_connections=settings.webhook_max_in_flight,
                max_keepalive_connections=settings.webhook_max_in_flight,
            ),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: dispatch, claim, send; wait a poll interval when idle. On stop,
        the sends in flight finish (their deliveries would be sent again anyway)."""
        poll = self.ctx.settings.webhook_poll_interval
        try:
            while not stop.is_set():
                try:
                    busy = await self.step()
                except Exception:
                    log.exception("outbound webhooks loop error; backing off")
                    busy = False
                    await asyncio.sleep(1.0)
                if not busy:
                    try:
                        await asyncio.wait_for(stop.wait(), poll)
                    except TimeoutError:
                        pass
        finally:
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.client.aclose()

    async def step(self) -> bool:
        """One round: dispatch new events, start due sends. Whether anything happened."""
        dispatched = await dispatch_once(self.ctx)
        started = await self.claim_and_start()
        return bool(dispatched or started)

    async def drain(self) -> None:
        """Run rounds until nothing is due or in flight (tests, the CLI)."""
        while True:
            busy = await self.step()
            if self.tasks:
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
            elif not busy:
                return

    # -- claiming ------------------------------------------------------------------------
    async def claim_and_start(self) -> int:
        settings = self.ctx.settings
        free = settings.webhook_max_in_flight - sum(self.in_flight.values())
        if free <= 0:
            return 0
        jobs = await self._claim(free, settings.webhook_endpoint_concurrency)
        for job in jobs:
            self.in_flight[job.endpoint_id] = self.in_flight.get(job.endpoint_id, 0) + 1
            task = asyncio.create_task(self._deliver(job))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return len(jobs)

    async def _claim(self, free: int, per_endpoint: int) -> list[Send]:
        D, E = WebhookDelivery, WebhookEndpoint
        busy = [ep for ep, n in self.in_flight.items() if n >= per_endpoint]
        now = self.ctx.now_us()
        async with self.ctx.db.read() as s:  # idle: no write transaction (SQLite's one writer)
            due = await s.scalar(
                select(D.id)
                .join(E, E.id == D.endpoint_id)
                .where(
                    D.status == "pending",
                    D.next_attempt_us <= now,
                    E.status == "enabled",
                    E.deleted.is_(False),
                )
                .limit(1)
            )
        if due is None:
            return []
        async with self.ctx.db.write() as s:
            query = (
                select(D.id, D.endpoint_id, D.event_id)
                .join(E, E.id == D.endpoint_id)
                .where(
                    D.status == "pending",
                    D.next_attempt_us <= now,
                    E.status == "enabled",
                    E.deleted.is_(False),
                )
                .order_by(D.next_attempt_us)
                .limit(free)
            )
            if busy:
                query = query.where(D.endpoint_id.not_in(busy))
            if not self.ctx.db.is_sqlite:
                query = query.with_for_update(skip_locked=True, of=D)
            counts = dict(self.in_flight)
            chosen = []
            for row in (await s.execute(query)).all():
                if counts.get(row.endpoint_id, 0) < per_endpoint:
                    counts[row.endpoint_id] = counts.get(row.endpoint_id, 0) + 1
                    chosen.append(row)
            if not chosen:
                return []
            await s.execute(
                update(D)
                .where(D.id.in_([r.id for r in chosen]))
                .values(next_attempt_us=now + self.lease_us, lease_until_us=now + self.lease_us)
                .execution_options(synchronize_session=False)
            )
            endpoints = {
                ep.id: ep
                for ep in (
                    await s.execute(select(E).where(E.id.in_({r.endpoint_id for r in chosen})))
                ).scalars()
            }
            events = {
                ev.id: ev
                for ev in (
                    await s.execute(select(Event).where(Event.id.in_({r.event_id for r in chosen})))
                ).scalars()
            }
            jobs = []
            for row in chosen:
                ep, ev = endpoints[row.endpoint_id], events.get(row.event_id)
                if ev is None:  # cannot happen (events are never deleted); skip it safely
                    continue
                payload = event_payload(
                    ev.id, ev.type, ev.data, ev.created_us, ev.livemode, ep.api_version
                )
                jobs.append(
                    Send(
                        delivery_id=row.id,
                        account_id=ep.account_id,
                        endpoint_id=ep.id,
                        event_id=ev.id,
                        event_type=ev.type,
                        url=ep.url,
                        livemode=bool(ep.livemode),
                        scheme=ep.signature_scheme,
                        secrets=self.endpoints.secrets_of(ep, now),
                        body=json.dumps(payload, separators=(",", ":")).encode(),
                    )
                )
            return jobs

    # -- sending and recording -----------------------------------------------------------
    async def _deliver(self, job: Send) -> None:
        settings = self.ctx.settings
        try:
            outcome = await post_signed(
                self.client,
                job,
                allow_private=settings.webhook_allow_private,
                total_timeout=settings.webhook_timeout,
            )
            await self._record(job, outcome)
        except Exception:
            # The lease runs out and the delivery is sent again: at least once.
            log.exception("webhook delivery %s could not be recorded", job.delivery_id)
        finally:
            left = self.in_flight.get(job.endpoint_id, 1) - 1
            if left > 0:
                self.in_flight[job.endpoint_id] = left
            else:
                self.in_flight.pop(job.endpoint_id, None)

    async def _record(self, job: Send, outcome: Outcome) -> None:
        settings = self.ctx.settings
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            # The endpoint first: the attempt's foreign key share-locks it, and two records
            # that both upgraded that lock later would deadlock.
            ep = await s.get(WebhookEndpoint, job.endpoint_id, with_for_update=True)
            delivery = await s.get(WebhookDelivery, job.delivery_id, with_for_update=True)
            if delivery is None or ep is None:
                return
            await s.execute(
                insert(WebhookAttempt),
                {
                    "id": new_id("wha"),
                    "account_id": job.account_id,
                    "endpoint_id": job.endpoint_id,
                    "delivery_id": job.delivery_id,
                    "event_id": job.event_id,
                    "event_type": job.event_type,
                    "status": "succeeded" if outcome.ok else "failed",
                    "http_status": outcome.http_status,
                    "latency_ms": outcome.latency_ms,
                    "response_body": outcome.response_body,
                    "error": (outcome.error or "")[:255] or None,
                    "created_us": now,
                },
            )
            delivery.attempts += 1
            delivery.lease_until_us = None
            if outcome.ok:
                if delivery.status == "pending":
                    delivery.status = "delivered"
                if ep.failing_since_us is not None:
                    ep.failing_since_us = None
                return
            if ep.failing_since_us is None:
                ep.failing_since_us = now
            if outcome.http_status == 410:
                await self._disable(s, ep, "gone", now)
            elif now - ep.failing_since_us >= settings.webhook_disable_after_seconds * 1e6:
                await self._disable(s, ep, "failing", now)
            if delivery.status != "pending":
                return
            delay = retry_delay(delivery.attempts, self.schedule, settings.webhook_retry_jitter)
            if delay is None or ep.status != "enabled":
                delivery.status = "failed"
            else:
                delivery.next_attempt_us = now + int(delay * 1_000_000)

    async def _disable(self, s: Any, ep: WebhookEndpoint, reason: str, now: int) -> None:
        """Disable an endpoint (410 Gone, or failing without a break for too long), with a
        ``webhook_endpoint.disabled`` event and a log line."""
        if ep.status != "enabled":
            return
        ep.status, ep.disabled_reason = "disabled", reason
        await s.flush()
        await emit(s, ep.account_id, "webhook_endpoint.disabled", endpoint_view(ep), now)
        log.warning("webhook endpoint %s disabled (%s)", ep.id, reason)
