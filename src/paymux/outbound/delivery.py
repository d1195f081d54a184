"""Sending deliveries: claim the due ones, POST each (signed, SSRF-checked, time-limited),
record the attempts, schedule retries or give up.

At least once: a delivery is leased when claimed (``next_attempt_us`` moved past the longest
a send and its recording can take); its outcome is written after the request. A worker
killed in between leaves the delivery due again when the lease runs out: it is sent again,
with the same event id, which is how receivers recognise a duplicate.

Throughput (bench/outbound.py, docs/benchmarks.md): deliveries are claimed many at once (one
transaction per claim), sent concurrently on kept-alive connections (``http1``), and their
outcomes recorded in ONE transaction per batch: the outcomes that finished while the loop
was busy with the database are recorded together on its next round. A batch that cannot be
recorded is not lost either: its leases run out and it is sent again.

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
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    bindparam,
    column,
    insert,
    select,
    update,
    values,
)

from paymux.domain.ids import new_id
from paymux.outbound.dispatch import dispatch_once
from paymux.outbound.endpoints import WebhookEndpoints
from paymux.outbound.http1 import ConnectionPool, ProtocolError, request_target
from paymux.outbound.schedule import parse_schedule, retry_delay
from paymux.outbound.signing import signed_headers
from paymux.outbound.ssrf import Blocked
from paymux.outbound.views import endpoint_view, event_payload
from paymux.services.context import Context, emit
from paymux.storage.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = ["DeliveryRunner", "Outcome", "Send", "post_signed"]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
RESPONSE_BODY_CHARS = 2000
USER_AGENT = "paymux-webhooks/1"
SETTLE_SECONDS = 0.02
CLAIM_OVERSAMPLE = 8
MAX_CLAIM_ROWS = 2000
CLAIM_ROUNDS = 2  # window reads per claim: one more when another worker took rows first
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


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    http_status: int | None
    latency_ms: int
    response_body: str | None
    error: str | None


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
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timestamp = int(time.time() if now is None else now)
    headers = [
        ("content-type", "application/json; charset=utf-8"),
        ("user-agent", USER_AGENT),
        *signed_headers(job.scheme, job.event_id, timestamp, job.body, job.secrets).items(),
    ]
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
    except TimeoutError:
        return done(None, None, f"timeout: no answer within {total_timeout:g} s")
    except ProtocolError as exc:
        return done(None, None, f"protocol error: {exc}")
    except (OSError, ValueError) as exc:
        return done(None, None, f"{type(exc).__name__}: could not reach the endpoint")
    text = response.body.decode("utf-8", "replace")
    return done(response.status, text[:RESPONSE_BODY_CHARS], None)


def _outcomes_update(states: list[dict[str, Any]]) -> Any:
    """ONE ``UPDATE ... FROM (VALUES ...)`` for a batch's deliveries (PostgreSQL): one
    statement the database plans and runs once, not one execution per delivery."""
    table = _DELIVERIES
    new = values(
        column("d_id", String),
        column("d_status", String),
        column("d_attempts", Integer),
        column("d_next", BigInteger),
        name="outcome",
    ).data([(st["d_id"], st["d_status"], st["d_attempts"], st["d_next"]) for st in states])
    return (
        update(table)
        .where(table.c.id == new.c.d_id)
        .values(
            status=new.c.d_status,
            attempts=new.c.d_attempts,
            next_attempt_us=new.c.d_next,
            lease_until_us=None,
        )
    )


# SQLite (in-process, no round trips): the same change as an executemany by primary key.
_OUTCOME_BY_ID = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("d_id"))
    .values(
        status=bindparam("d_status"),
        attempts=bindparam("d_attempts"),
        next_attempt_us=bindparam("d_next"),
        lease_until_us=None,
    )
)


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
        self._oversample = 2  # rows read per free slot when the per-endpoint limit binds
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
        the last look found some (then at once: a backlog drains at full speed)."""
        self.wake.clear()  # a send finishing from here on wakes the next wait at once
        dispatched = 0
        started_at = time.monotonic()
        if look or self._more_events or started_at - self._looked_at >= self.poll:
            self._looked_at = started_at
            dispatched = await dispatch_once(self.ctx)
            self._more_events = dispatched > 0
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
        D, E = WebhookDelivery, WebhookEndpoint
        busy = [ep for ep, n in self.in_flight.items() if n >= per_endpoint]
        now = self.ctx.now_us()
        due_now = (
            D.status == "pending",
            D.next_attempt_us <= now,
            E.status == "enabled",
            E.deleted.is_(False),
        )
        if self.ctx.db.is_sqlite:
            # Idle: no write transaction (SQLite's one writer). PostgreSQL's writers do not
            # exclude each other: there the window read below is the only look (this probe
            # scanned the busy endpoints' rows a second time each round).
            async with self.ctx.db.read() as s:
                probe = select(D.id).join(E, E.id == D.endpoint_id).where(*due_now)
                if busy:
                    probe = probe.where(D.endpoint_id.not_in(busy))
                if await s.scalar(probe.limit(1)) is None:
                    return []
        # The per-endpoint limit is applied below, on the rows read: when it can bind, read
        # more rows than there are free slots, or a window full of one endpoint's backlog
        # would fill one slot per round (each round costs the same transactions). How many
        # more adapts: doubled (up to CLAIM_OVERSAMPLE) after a full window left slots
        # empty, halved after one filled them all (reading rows not taken costs both sides).
        oversample = 1 if per_endpoint >= free else self._oversample
        window = min(free * oversample, max(free, MAX_CLAIM_ROWS))
        self._saw_due = False
        async with self.ctx.db.write() as s:
            counts = dict(self.in_flight)
            chosen: list[Any] = []
            lost: list[str] = []  # chosen, then claimed by another worker first
            for claim_round in range(CLAIM_ROUNDS):
                query = (
                    select(D.id, D.endpoint_id, D.event_id)
                    .join(E, E.id == D.endpoint_id)
                    .where(*due_now)
                    .order_by(D.next_attempt_us)
                    .limit(window)
                )
                if busy:
                    query = query.where(D.endpoint_id.not_in(busy))
                if lost:
                    query = query.where(D.id.not_in(lost))
                # The window is read without locks: locking every row read (up to
                # MAX_CLAIM_ROWS for a few free slots) cost PostgreSQL more CPU than the
                # deliveries themselves. Only the rows chosen are claimed, below.
                rows = (await s.execute(query)).all()
                if rows:
                    self._saw_due = True
                taken = {r.id for r in chosen}
                picked: list[Any] = []
                for row in rows:
                    if len(chosen) + len(picked) >= free:
                        break
                    if row.id in taken:
                        continue
                    if counts.get(row.endpoint_id, 0) < per_endpoint:
                        counts[row.endpoint_id] = counts.get(row.endpoint_id, 0) + 1
                        picked.append(row)
                if claim_round == 0 and (oversample > 1 or per_endpoint < free):
                    if len(picked) < free and len(rows) == window:
                        self._oversample = min(self._oversample * 2, CLAIM_OVERSAMPLE)
                    elif len(picked) == free:
                        self._oversample = max(self._oversample // 2, 1)
                if not picked:
                    break
                lease = {
                    "next_attempt_us": now + self.lease_us,
                    "lease_until_us": now + self.lease_us,
                }
                ids = [r.id for r in picked]
                if self.ctx.db.is_sqlite:  # one writer: the rows read are still due
                    await s.execute(
                        update(D)
                        .where(D.id.in_(ids))
                        .values(**lease)
                        .execution_options(synchronize_session=False)
                    )
                    chosen.extend(picked)
                    break
                # Another worker may have claimed some since the read (its window read the
                # same head rows): take only those still due and not locked by it (SKIP
                # LOCKED: never wait), in one statement. The ones lost are read past once
                # more (CLAIM_ROUNDS), or a worker racing another would claim nothing
                # while deliveries are due.
                still_due = (
                    select(D.id)
                    .where(D.id.in_(ids), D.status == "pending", D.next_attempt_us <= now)
                    .with_for_update(skip_locked=True)
                )
                claimed = set(
                    (
                        await s.execute(
                            update(D)
                            .where(D.id.in_(still_due))
                            .values(**lease)
                            .returning(D.id)
                            .execution_options(synchronize_session=False)
                        )
                    ).scalars()
                )
                for row in picked:
                    if row.id in claimed:
                        chosen.append(row)
                    else:
                        lost.append(row.id)
                        counts[row.endpoint_id] -= 1
                if len(claimed) == len(picked) or len(chosen) >= free:
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
        """Record every finished send, in one transaction. How many were recorded (or
        given up on: a batch that cannot be written is sent again when its leases end)."""
        if not self.finished:
            return 0
        batch, self.finished = self.finished, []
        try:
            await self._record(batch)
        except Exception:
            log.exception("%d webhook attempts could not be recorded", len(batch))
        return len(batch)

    async def _record(self, batch: list[tuple[Send, Outcome]]) -> None:
        """The attempts, the deliveries' new states and the endpoints' failure streaks of a
        batch of sends, in one transaction, in the order the sends finished."""
        settings = self.ctx.settings
        D, E = WebhookDelivery, WebhookEndpoint
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            # Endpoints first, then deliveries, each in id order: the attempts' foreign keys
            # share-lock the endpoints, and two batches that both upgraded that lock later
            # (or took the rows in another order) would deadlock.
            ep_query = select(E).where(E.id.in_({j.endpoint_id for j, _ in batch})).order_by(E.id)
            d_query = (
                select(D.id, D.status, D.attempts, D.next_attempt_us)
                .where(D.id.in_({j.delivery_id for j, _ in batch}))
                .order_by(D.id)
            )
            if not self.ctx.db.is_sqlite:
                ep_query = ep_query.with_for_update()
                d_query = d_query.with_for_update()
            endpoints = {ep.id: ep for ep in (await s.execute(ep_query)).scalars()}
            states: dict[str, dict[str, Any]] = {
                row.id: {
                    "d_id": row.id,
                    "d_status": row.status,
                    "d_attempts": row.attempts,
                    "d_next": row.next_attempt_us,
                }
                for row in (await s.execute(d_query)).all()
            }
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
                        "response_body": outcome.response_body,
                        "error": (outcome.error or "")[:255] or None,
                        "created_us": now,
                    }
                )
                changed[job.delivery_id] = state
                state["d_attempts"] += 1
                if outcome.ok:
                    if state["d_status"] == "pending":
                        state["d_status"] = "delivered"
                    if ep.failing_since_us is not None:
                        ep.failing_since_us = None
                    continue
                if ep.failing_since_us is None:
                    ep.failing_since_us = now
                if outcome.http_status == 410:
                    await self._disable(s, ep, "gone", now)
                elif now - ep.failing_since_us >= settings.webhook_disable_after_seconds * 1e6:
                    await self._disable(s, ep, "failing", now)
                if state["d_status"] != "pending":
                    continue
                delay = retry_delay(
                    state["d_attempts"], self.schedule, settings.webhook_retry_jitter
                )
                if delay is None or ep.status != "enabled":
                    state["d_status"] = "failed"
                else:
                    state["d_next"] = now + int(delay * 1_000_000)
            if attempts:  # Core, not ORM: one multi-row INSERT, no per-row ORM bookkeeping
                await s.execute(insert(_ATTEMPTS), attempts)
            if changed and self.ctx.db.is_sqlite:  # its VALUES cannot name columns: executemany
                await s.execute(_OUTCOME_BY_ID, list(changed.values()))
            elif changed:
                await s.execute(_outcomes_update(list(changed.values())))

    async def _disable(self, s: Any, ep: WebhookEndpoint, reason: str, now: int) -> None:
        """Disable an endpoint (410 Gone, or failing without a break for too long), with a
        ``webhook_endpoint.disabled`` event and a log line."""
        if ep.status != "enabled":
            return
        ep.status, ep.disabled_reason = "disabled", reason
        await s.flush()
        await emit(s, ep.account_id, "webhook_endpoint.disabled", endpoint_view(ep), now)
        log.warning("webhook endpoint %s disabled (%s)", ep.id, reason)
