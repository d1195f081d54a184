"""Sending deliveries: claim the due ones, POST each (signed, SSRF-checked, time-limited),
record the attempts, schedule retries or give up.

At least once: a delivery is leased when claimed (``next_attempt_us`` moved past the longest
a send and its recording can take); its outcome is written after the request. A worker
killed in between leaves the delivery due again when the lease runs out: it is sent again,
with the same event id, which is how receivers recognise a duplicate. An outcome moves its
delivery on only while the lease is still the one its claim set: a late outcome after the
lease ran out and another claim took the delivery over is recorded as an attempt; a success
marks the delivery delivered if it is still pending (one the new holder already failed, say
on a 410, stays failed: the attempt shows the late success), and a failure leaves the
delivery to the new holder.

Throughput (bench/outbound.py, docs/benchmarks.md): deliveries are claimed many at once (one
transaction per claim), sent concurrently on kept-alive connections (``http1``), and their
outcomes recorded in ONE transaction per batch: the outcomes that finished while the loop
was busy with the database are recorded together on its next round. A batch that cannot be
recorded is recorded again one outcome per transaction, so one row the database refuses
never loses the others' outcomes; an outcome that still cannot be recorded is not lost
either: its lease runs out and it is sent again. What an endpoint answered is stored with
NUL characters replaced (PostgreSQL's text refuses them).

One slow endpoint never delays another: each send is its own task; at most
``webhook_endpoint_concurrency`` per endpoint (across every worker: its leased deliveries)
and ``webhook_max_in_flight`` per worker are in flight, and a claim takes the oldest few
due deliveries of each endpoint with room (``claims``), so no endpoint's backlog fills it.
The outcomes and the dispatcher's deliveries are written with one fixed statement per batch
(``batches``). Each request has a connect
timeout and a total timeout; redirects are not followed (a 3xx is a failure); at most
MAX_RESPONSE_BYTES of the answer are read and RESPONSE_BODY_CHARS kept.

A live endpoint is sent to over https only, checked at send time too (``post_signed``): one
stored with an ``http://`` URL before registration refused them gets no request; its
delivery fails at once (``Outcome.final``: no retry can succeed) with a reason that says to
update the URL. Each request carries ``Paymux-Object-Sequence``, the event's
``events.object_seq`` (its place among its object's events): deliveries run concurrently
and are retried, so they may arrive out of order, and this is what a receiver orders them
by (docs/webhooks.md, "Delivery guarantees"). Deliveries marked delivered are counted once
their outcome is committed (``paymux_webhook_deliveries_delivered_total``,
observability/metrics.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import (
    Table,
    select,
)

from paymux.domain.ids import new_id
from paymux.observability.metrics import count_delivered
from paymux.outbound.batches import insert_rows, update_rows
from paymux.outbound.claims import Head, claim_postgres, claim_sqlite
from paymux.outbound.dispatch import DISPATCH_BATCH, dispatch_once
from paymux.outbound.endpoints import WebhookEndpoints
from paymux.outbound.http1 import ConnectionPool, ConnectTimeout, ProtocolError, request_target
from paymux.outbound.schedule import parse_schedule, retry_delay
from paymux.outbound.signing import signed_headers
from paymux.outbound.ssrf import Blocked
from paymux.outbound.views import endpoint_view, event_payload
from paymux.services.context import Context, emit
from paymux.storage.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = [
    "OBJECT_SEQUENCE_HEADER",
    "PLAIN_HTTP_REFUSED",
    "DeliveryRunner",
    "Outcome",
    "Send",
    "post_signed",
    "storable",
]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
RESPONSE_BODY_CHARS = 2000
USER_AGENT = "paymux-webhooks/1"
# Not Stripe's: Stripe's event has no per-object sequence, so it is a header, not a field.
OBJECT_SEQUENCE_HEADER = "paymux-object-sequence"
SETTLE_SECONDS = 0.02
CLAIM_ROUNDS = 2  # claim statements per claim: one more when another worker took rows first
_ATTEMPTS = cast(Table, WebhookAttempt.__table__)
_DELIVERIES = cast(Table, WebhookDelivery.__table__)


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
    # The lease the claim set (``lease_until_us``): the outcome moves the delivery on only if
    # the lease is still this one (not run out and taken over by another claim since).
    lease_until: int
    # The event's place among its object's events (``events.object_seq``), sent as the
    # ``Paymux-Object-Sequence`` header so a receiver can order what arrives out of order;
    # None for an event written before it was numbered (no header).
    object_seq: int | None = None


def storable(text: str) -> str:
    """Text an endpoint sent, fit for any database column: NUL (which PostgreSQL's text
    refuses) replaced by U+FFFD, as undecodable bytes are."""
    return text.replace("\x00", "\ufffd")


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    http_status: int | None
    latency_ms: int
    response_body: str | None
    error: str | None
    # No retry can succeed (a live endpoint's http:// URL): the delivery fails at once.
    final: bool = False


# Why a live endpoint's delivery is refused before any connection (stored before the rule).
PLAIN_HTTP_REFUSED = (
    "refused: a live endpoint's URL must use https; nothing was sent. Update the endpoint's URL."
)


async def post_signed(
    client: ConnectionPool,
    job: Send,
    *,
    total_timeout: float,
    now: float | None = None,
) -> Outcome:
    """POST one delivery (a new connection goes to the address its host resolves to then,
    checked: ssrf), with the Host header and TLS server name of the URL. Never raises for
    the endpoint's faults."""
    started = time.monotonic()

    def done(status: int | None, body: str | None, error: str | None) -> Outcome:
        ok = status is not None and 200 <= status < 300
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(ok, status, latency, body, error)

    parts = urlsplit(job.url)
    if job.livemode and parts.scheme != "https":
        # Registered before live endpoints had to be https: never sent in the clear.
        return Outcome(False, None, 0, None, PLAIN_HTTP_REFUSED, final=True)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timestamp = int(time.time() if now is None else now)
    headers = [
        ("content-type", "application/json; charset=utf-8"),
        ("user-agent", USER_AGENT),
        *signed_headers(job.scheme, job.event_id, timestamp, job.body, job.secrets).items(),
    ]
    if job.object_seq is not None:
        headers.append((OBJECT_SEQUENCE_HEADER, str(job.object_seq)))
    try:
        async with asyncio.timeout(total_timeout):
            response = await client.post(
                parts.scheme,
                host,
                port,
                request_target(parts.path, parts.query),
                headers,
                job.body,
                livemode=job.livemode,
                max_body=MAX_RESPONSE_BYTES,
            )
    except Blocked as exc:
        return done(None, None, f"blocked: {exc}")
    except ConnectTimeout:
        return done(None, None, f"connect timeout after {client.connect_timeout:g} s")
    except TimeoutError:
        return done(None, None, f"timeout: no answer within {total_timeout:g} s")
    except ProtocolError as exc:
        return done(None, None, f"protocol error: {exc}")
    except (OSError, ValueError) as exc:
        return done(None, None, f"{type(exc).__name__}: could not reach the endpoint")
    text = response.body.decode("utf-8", "replace")
    return done(response.status, text[:RESPONSE_BODY_CHARS], None)


class DeliveryRunner:
    """The worker's outbound loop: dispatch new events, record finished sends, claim due
    deliveries, start their sends; wait for a send to finish (or a poll interval) when
    there is nothing to do."""

    def __init__(self, ctx: Context, endpoints: WebhookEndpoints) -> None:
        self.ctx = ctx
        self.endpoints = endpoints
        settings = ctx.settings
        self.schedule = parse_schedule(settings.webhook_retry_schedule)
        # Longer than a send (its total timeout) and its recording can take.
        self.lease_us = int((2 * settings.webhook_timeout + 5.0) * 1_000_000)
        self.in_flight: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.finished: list[tuple[Send, Outcome]] = []  # sent, not yet recorded
        self.wake = asyncio.Event()  # a send finished (or stop): the loop has work
        self.poll = settings.webhook_poll_interval
        self._looked_at = float("-inf")  # when undispatched events were last looked for
        self._swept_at = time.monotonic()  # when idle connections were last closed
        self._more_events = True
        self._saw_due = False  # the last claim's window held due deliveries
        self.client = ConnectionPool(
            connect_timeout=settings.webhook_connect_timeout,
            allow_private=settings.webhook_allow_private,
            # Many endpoints may share a host (one receiver, or a SaaS's): keep as many
            # connections to one as may be in flight at once.
            max_idle_per_host=max(1, settings.webhook_max_in_flight),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: dispatch, record, claim, send; wait when idle. On stop, the sends
        in flight finish and are recorded (their deliveries would be sent again anyway)."""
        poll = self.poll

        async def relay() -> None:
            await stop.wait()
            self.wake.set()

        relay_task = asyncio.create_task(relay())
        try:
            while not stop.is_set():
                try:
                    busy = await self.step()
                except Exception:
                    log.exception("outbound webhooks loop error; backing off")
                    busy = False
                    await asyncio.sleep(1.0)
                if busy:
                    await self._settle()
                else:
                    try:
                        await asyncio.wait_for(self.wake.wait(), poll)
                    except TimeoutError:
                        self.client.sweep()
        finally:
            relay_task.cancel()
            try:
                if self.tasks:
                    await asyncio.gather(*self.tasks, return_exceptions=True)
            finally:
                # Also when cut short (cancelled while the sends finish): the sends that did
                # finish are recorded (else delivered ones are sent again) and the sockets
                # closed. Shielded: a cancellation here leaves them running to the end.
                await asyncio.shield(self._close())

    async def _close(self) -> None:
        try:
            await self.flush()
        finally:
            await self.client.aclose()

    async def _settle(self) -> None:
        """Between busy rounds, let the sends in flight finish for a moment (until half of
        them have, or SETTLE_SECONDS): a round's transactions then record and refill many
        deliveries at once, instead of one or two each (their cost is per round)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while len(self.finished) < (len(self.tasks) + len(self.finished)) // 2:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), left)
            except TimeoutError:
                return

    async def step(self, *, look: bool = False) -> bool:
        """One round: dispatch new events, record finished sends, start due sends. Whether
        anything happened. New events are looked for at most once a poll interval, unless
        the last look found a full batch (then at once: a backlog drains at full speed)."""
        self.wake.clear()  # a send finishing from here on wakes the next wait at once
        dispatched = 0
        started_at = time.monotonic()
        if look or self._more_events or started_at - self._looked_at >= self.poll:
            self._looked_at = started_at
            dispatched = await dispatch_once(self.ctx)
            # A full batch is a backlog: looked at again at once. Fewer (the events of the
            # payments made since the last look) wait for the next poll interval, and are
            # dispatched together: looking again at once after each commit's events cost
            # every payment about four more round trips on PostgreSQL (issue 10).
            self._more_events = dispatched >= DISPATCH_BATCH
        if started_at - self._swept_at >= 1.0:
            # Idle connections are closed on a clock, busy or not: under a steady backlog the
            # loop never waits, and hosts not sent to again would keep their sockets open.
            self._swept_at = started_at
            self.client.sweep()
        recorded = await self.flush()
        self._saw_due = False
        started = await self.claim_and_start()
        # Due deliveries all claimed by another worker first are still work: look again at
        # once rather than wait a poll interval.
        return bool(dispatched or recorded or started or self._saw_due)

    async def drain(self) -> None:
        """Run rounds until nothing is due, in flight or unrecorded (tests, the CLI)."""
        while True:
            busy = await self.step(look=True)
            if self.tasks:
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
            elif not busy and not self.finished:
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
        """Lease up to ``free`` due deliveries, the oldest few of each endpoint with room
        (claims.py), and read what their requests need."""
        D, E = WebhookDelivery, WebhookEndpoint
        busy = [ep for ep, n in self.in_flight.items() if n >= per_endpoint]
        now = self.ctx.now_us()
        lease_until = now + self.lease_us
        self._saw_due = False
        if self.ctx.db.is_sqlite:
            # Idle: no write transaction (SQLite's one writer). PostgreSQL's writers do not
            # exclude each other: there the claim's statement is the only look.
            async with self.ctx.db.read() as s:
                probe = (
                    select(D.id)
                    .join(E, E.id == D.endpoint_id)
                    .where(
                        D.status == "pending",
                        D.next_attempt_us <= now,
                        E.status == "enabled",
                        E.deleted.is_(False),
                    )
                )
                if busy:
                    probe = probe.where(D.endpoint_id.not_in(busy))
                if await s.scalar(probe.limit(1)) is None:
                    return []
        async with self.ctx.db.write() as s:
            chosen: list[Head] = []
            if self.ctx.db.is_sqlite:  # one writer: the rows read are still due
                chosen = await claim_sqlite(
                    s,
                    now=now,
                    lease_until=lease_until,
                    free=free,
                    per_endpoint=per_endpoint,
                    in_flight=self.in_flight,
                )
            else:
                # Rows another worker claimed first (its claim read the same heads) are
                # lost; the next round claims past them, counting them against their
                # endpoint's room, or a worker racing another would claim nothing while
                # deliveries are due.
                lost: list[Head] = []
                for _ in range(CLAIM_ROUNDS):
                    rows = await claim_postgres(
                        s,
                        now=now,
                        lease_until=lease_until,
                        free=free - len(chosen),
                        per_endpoint=per_endpoint,
                        busy=busy,
                        lost=lost,
                    )
                    if rows:
                        self._saw_due = True
                    chosen += [r for r in rows if r.won]
                    lost += [r for r in rows if not r.won]
                    if all(r.won for r in rows) or len(chosen) >= free:
                        break
            if not chosen:
                return []
            endpoints = {
                ep.id: ep
                for ep in (
                    await s.execute(select(E).where(E.id.in_({r.endpoint_id for r in chosen})))
                ).scalars()
            }
            event_columns = (
                Event.id,
                Event.type,
                Event.data,
                Event.created_us,
                Event.livemode,
                Event.request_id,
                Event.idempotency_key,
                Event.previous_attributes,
                Event.object_seq,
            )  # rows, not ORM objects: nothing here is changed, nothing to track
            events = {
                ev.id: ev
                for ev in (
                    await s.execute(
                        select(*event_columns).where(Event.id.in_({r.event_id for r in chosen}))
                    )
                ).all()
            }
            secrets: dict[str, list[str]] = {}  # unsealed once per endpoint and batch
            bodies: dict[tuple[str, str | None], bytes] = {}  # one per event and API version
            jobs = []
            for row in chosen:
                ep, ev = endpoints[row.endpoint_id], events.get(row.event_id)
                if ev is None:  # cannot happen (events are never deleted); skip it safely
                    continue
                if ep.id not in secrets:
                    secrets[ep.id] = self.endpoints.secrets_of(ep, now)
                body = bodies.get((ev.id, ep.api_version))
                if body is None:
                    payload = event_payload(
                        ev.id,
                        ev.type,
                        ev.data,
                        ev.created_us,
                        ev.livemode,
                        ep.api_version,
                        request_id=ev.request_id,
                        idempotency_key=ev.idempotency_key,
                        previous_attributes=ev.previous_attributes,
                    )
                    body = json.dumps(payload, separators=(",", ":")).encode()
                    bodies[(ev.id, ep.api_version)] = body
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
                        secrets=secrets[ep.id],
                        body=body,
                        lease_until=lease_until,
                        object_seq=ev.object_seq,
                    )
                )
            return jobs

    # -- sending and recording -----------------------------------------------------------
    async def _deliver(self, job: Send) -> None:
        try:
            outcome = await post_signed(
                self.client, job, total_timeout=self.ctx.settings.webhook_timeout
            )
            self.finished.append((job, outcome))
        except Exception:
            # The lease runs out and the delivery is sent again: at least once.
            log.exception("webhook delivery %s failed unexpectedly", job.delivery_id)
        finally:
            left = self.in_flight.get(job.endpoint_id, 1) - 1
            if left > 0:
                self.in_flight[job.endpoint_id] = left
            else:
                self.in_flight.pop(job.endpoint_id, None)
            self.wake.set()

    async def flush(self) -> int:
        """Record every finished send, in one transaction; if that fails, one per
        transaction, so one outcome the database refuses loses no other. How many were
        recorded (or given up on: an outcome that cannot be written is sent again when its
        lease ends)."""
        if not self.finished:
            return 0
        batch, self.finished = self.finished, []
        try:
            await self._record(batch)
        except Exception:
            if len(batch) == 1:
                log.exception("a webhook attempt could not be recorded")
                return 1
            log.exception(
                "%d webhook attempts could not be recorded together; recording each alone",
                len(batch),
            )
            for one in batch:
                try:
                    await self._record([one])
                except Exception:
                    log.exception(
                        "webhook attempt for %s could not be recorded", one[0].delivery_id
                    )
        return len(batch)

    async def _record(self, batch: list[tuple[Send, Outcome]]) -> None:
        """The attempts, the deliveries' new states and the endpoints' failure streaks of a
        batch of sends, in one transaction, in the order the sends finished."""
        settings = self.ctx.settings
        D, E = WebhookDelivery, WebhookEndpoint
        now = self.ctx.now_us()
        delivered = {True: 0, False: 0}  # by livemode, counted once committed
        async with self.ctx.db.write() as s:
            # Endpoints first, then deliveries, each in id order: the attempts' foreign keys
            # share-lock the endpoints, and two batches that both upgraded that lock later
            # (or took the rows in another order) would deadlock.
            ep_query = select(E).where(E.id.in_({j.endpoint_id for j, _ in batch})).order_by(E.id)
            d_query = (
                select(D.id, D.status, D.attempts, D.next_attempt_us, D.lease_until_us)
                .where(D.id.in_({j.delivery_id for j, _ in batch}))
                .order_by(D.id)
            )
            if not self.ctx.db.is_sqlite:
                ep_query = ep_query.with_for_update()
                d_query = d_query.with_for_update()
            endpoints = {ep.id: ep for ep in (await s.execute(ep_query)).scalars()}
            states: dict[str, dict[str, Any]] = {}
            leases: dict[str, int | None] = {}
            for row in (await s.execute(d_query)).all():
                states[row.id] = {
                    "id": row.id,
                    "status": row.status,
                    "attempts": row.attempts,
                    "next_attempt_us": row.next_attempt_us,
                }
                leases[row.id] = row.lease_until_us
            attempts: list[dict[str, Any]] = []
            changed: dict[str, dict[str, Any]] = {}
            for job, outcome in batch:
                ep, state = endpoints.get(job.endpoint_id), states.get(job.delivery_id)
                if ep is None or state is None:
                    continue
                attempts.append(
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
                        "response_body": (
                            None
                            if outcome.response_body is None
                            else storable(outcome.response_body)
                        ),
                        "error": storable(outcome.error or "")[:255] or None,
                        "created_us": now,
                    }
                )
                # A send whose lease ran out and was taken over by another claim (the other
                # worker's request is in flight or recorded): its outcome is history (the
                # attempt above); a success still marks the event delivered, a failure leaves
                # the delivery to the lease's holder (no retry scheduled over its lease).
                lost = state["status"] == "pending" and leases[job.delivery_id] != job.lease_until
                if outcome.ok or not lost:
                    changed[job.delivery_id] = state
                    state["attempts"] += 1
                if outcome.ok:
                    if state["status"] == "pending":
                        state["status"] = "delivered"
                        delivered[job.livemode] += 1
                    if ep.failing_since_us is not None:
                        ep.failing_since_us = None
                    continue
                if ep.failing_since_us is None:
                    ep.failing_since_us = now
                if outcome.http_status == 410:
                    await self._disable(s, ep, "gone", now)
                elif now - ep.failing_since_us >= settings.webhook_disable_after_seconds * 1e6:
                    await self._disable(s, ep, "failing", now)
                if state["status"] != "pending" or lost:
                    continue
                delay = retry_delay(state["attempts"], self.schedule, settings.webhook_retry_jitter)
                if delay is None or ep.status != "enabled" or outcome.final:
                    state["status"] = "failed"
                else:
                    state["next_attempt_us"] = now + int(delay * 1_000_000)
            # Core, not ORM (no per-row bookkeeping); one statement each (batches.py).
            await insert_rows(s, _ATTEMPTS, attempts)
            await update_rows(
                s, _DELIVERIES, "id", list(changed.values()), nulls=["lease_until_us"]
            )
        for livemode, count in delivered.items():
            count_delivered(livemode, count)

    async def _disable(self, s: Any, ep: WebhookEndpoint, reason: str, now: int) -> None:
        """Disable an endpoint (410 Gone, or failing without a break for too long), with a
        ``webhook_endpoint.disabled`` event and a log line."""
        if ep.status != "enabled":
            return
        ep.status, ep.disabled_reason = "disabled", reason
        await s.flush()
        await emit(s, ep.account_id, "webhook_endpoint.disabled", endpoint_view(ep), now)
        log.warning("webhook endpoint %s disabled (%s)", ep.id, reason)
