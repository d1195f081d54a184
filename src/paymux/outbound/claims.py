"""Which due deliveries a worker claims: the oldest few of each endpoint that has room.

An endpoint has room for ``per_endpoint`` requests in flight, counted across every worker:
its leased deliveries (claimed, outcome not yet recorded: ``lease_until_us`` still ahead)
are in flight somewhere. A claim takes, for each enabled endpoint with room, its oldest due
deliveries up to that room, then the oldest of all those up to the worker's free slots. So
one busy or slow endpoint's backlog never fills a claim (each endpoint is one short index
range: ``ix_webhook_deliveries_endpoint_due``), and an endpoint never has more than its
limit in flight, whichever worker sends.

- PostgreSQL: ONE statement reads the heads (a LATERAL join per endpoint: its leases
  counted on ``ix_webhook_deliveries_endpoint_leased``, then its due rows up to its room)
  and leases the rows still due and not locked by another worker's claim (``SKIP LOCKED``:
  never wait); it returns every row it read, each marked won or lost. Rows lost to a worker
  claiming at the same moment count against their endpoint's room in the next round (that
  worker's claim may not be committed yet, so its leases are not seen): two workers racing
  for one endpoint never exceed its limit between them.
- SQLite (one writer: the rows read are still due when leased): the heads are read with a
  correlated ``IN (... LIMIT per_endpoint)`` per endpoint (SQLite has no LATERAL, and its
  LIMIT cannot name the outer row), the leases counted by a second statement, and ``pick``
  keeps each endpoint to its room.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, func, literal_column, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.storage.models import WebhookDelivery, WebhookEndpoint

__all__ = ["Head", "claim_postgres", "claim_sqlite", "pick"]

_D = cast(Table, WebhookDelivery.__table__)
_E = cast(Table, WebhookEndpoint.__table__)
# Literals, not bound parameters: the partial indexes' predicate (status = 'pending') must be
# provable when a prepared statement is planned generically.
_PENDING: ColumnElement[str] = literal_column("'pending'")
_ENABLED: ColumnElement[str] = literal_column("'enabled'")


@dataclass(frozen=True, slots=True)
class Head:
    """A due delivery a claim read; ``won``: leased by this claim (PostgreSQL: False when
    another worker's claim had it first)."""

    id: str
    endpoint_id: str
    event_id: str
    won: bool = True


def pick(
    rows: Iterable[Head],
    free: int,
    per_endpoint: int,
    in_flight: Mapping[str, int],
) -> list[Head]:
    """The rows to lease, oldest first as given: at most ``free``, and no endpoint past
    ``per_endpoint`` counting what ``in_flight`` says it has already."""
    counts = dict(in_flight)
    out: list[Head] = []
    for row in rows:
        if len(out) >= free:
            break
        n = counts.get(row.endpoint_id, 0)
        if n < per_endpoint:
            counts[row.endpoint_id] = n + 1
            out.append(row)
    return out


_POSTGRES_CLAIM = text(
    """
WITH picked AS MATERIALIZED (
    SELECT h.id, h.endpoint_id, h.event_id, h.next_attempt_us
    FROM webhook_endpoints AS e
    CROSS JOIN LATERAL (
        SELECT count(*) AS n
        FROM webhook_deliveries AS l
        WHERE l.endpoint_id = e.id AND l.status = 'pending' AND l.lease_until_us > :now
    ) AS leased
    CROSS JOIN LATERAL (
        SELECT d.id, d.endpoint_id, d.event_id, d.next_attempt_us
        FROM webhook_deliveries AS d
        WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_us <= :now
          AND d.id <> ALL (CAST(:lost AS varchar[]))
        ORDER BY d.next_attempt_us
        LIMIT greatest(
            CAST(:per_endpoint AS bigint) - leased.n
            - cardinality(array_positions(CAST(:lost_endpoints AS varchar[]), e.id)),
            0
        )
    ) AS h
    WHERE e.status = 'enabled' AND NOT e.deleted
      AND e.id <> ALL (CAST(:busy AS varchar[]))
      AND EXISTS (
          SELECT FROM webhook_deliveries AS g
          WHERE g.status = 'pending' AND g.next_attempt_us <= :now
      )
    ORDER BY h.next_attempt_us
    LIMIT :free
), claimed AS (
    UPDATE webhook_deliveries AS w
    SET next_attempt_us = :lease_until, lease_until_us = :lease_until
    WHERE w.id IN (
        SELECT x.id
        FROM webhook_deliveries AS x
        WHERE x.id IN (SELECT id FROM picked)
          AND x.status = 'pending' AND x.next_attempt_us <= :now
        FOR UPDATE SKIP LOCKED
    )
    RETURNING w.id
)
SELECT p.id, p.endpoint_id, p.event_id, c.id IS NOT NULL AS won
FROM picked AS p LEFT JOIN claimed AS c ON c.id = p.id
ORDER BY p.next_attempt_us
"""
)


async def claim_postgres(
    s: AsyncSession,
    *,
    now: int,
    lease_until: int,
    free: int,
    per_endpoint: int,
    busy: Sequence[str],
    lost: Sequence[Head],
) -> list[Head]:
    """One round of a claim on PostgreSQL (see the module's docstring): every row read, in
    due order, each marked won or lost. ``busy``: endpoints this worker knows are at their
    limit (skipped without a look); ``lost``: rows earlier rounds of this claim lost."""
    result = await s.execute(
        _POSTGRES_CLAIM,
        {
            "now": now,
            "lease_until": lease_until,
            "free": free,
            "per_endpoint": per_endpoint,
            "busy": list(busy),
            "lost": [r.id for r in lost],
            "lost_endpoints": [r.endpoint_id for r in lost],
        },
    )
    return [Head(r.id, r.endpoint_id, r.event_id, bool(r.won)) for r in result]


async def leased_counts(s: AsyncSession, now: int) -> dict[str, int]:
    """Requests in flight per endpoint, across workers: its deliveries whose lease is ahead."""
    query = (
        select(_D.c.endpoint_id, func.count())
        .where(_D.c.status == _PENDING, _D.c.lease_until_us > now)
        .group_by(_D.c.endpoint_id)
    )
    return {ep: int(n) for ep, n in (await s.execute(query)).all()}


async def claim_sqlite(
    s: AsyncSession,
    *,
    now: int,
    lease_until: int,
    free: int,
    per_endpoint: int,
    in_flight: Mapping[str, int],
) -> list[Head]:
    """A claim on SQLite, in the caller's write transaction (the one writer): the rows
    leased, in due order."""
    counts = dict(in_flight)
    for ep, n in (await leased_counts(s, now)).items():
        counts[ep] = max(n, counts.get(ep, 0))
    busy = [ep for ep, n in counts.items() if n >= per_endpoint]
    e, d, x = _E.alias("e"), _D.alias("d"), _D.alias("x")
    heads = (
        select(x.c.id)
        .where(x.c.endpoint_id == e.c.id, x.c.status == _PENDING, x.c.next_attempt_us <= now)
        .order_by(x.c.next_attempt_us)
        .limit(per_endpoint)
        .correlate(e)
    )
    # Rows beyond an endpoint's room are read and dropped by ``pick``: at most what the
    # not-busy endpoints already have in flight.
    window = free + sum(n for ep, n in counts.items() if ep not in busy)
    query: Any = (
        select(d.c.id, d.c.endpoint_id, d.c.event_id)
        .select_from(e.join(d, d.c.id.in_(heads)))
        .where(e.c.status == _ENABLED, e.c.deleted.is_(False))
        .order_by(d.c.next_attempt_us)
        .limit(window)
    )
    if busy:
        query = query.where(e.c.id.not_in(busy))
    rows = [Head(r.id, r.endpoint_id, r.event_id) for r in (await s.execute(query)).all()]
    chosen = pick(rows, free, per_endpoint, counts)
    if chosen:
        await s.execute(
            update(_D)
            .where(_D.c.id.in_([r.id for r in chosen]))
            .values(next_attempt_us=lease_until, lease_until_us=lease_until)
        )
    return chosen
