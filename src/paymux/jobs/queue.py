"""The durable jobs table: enqueue in the caller's transaction, claim, finish, retry, bury.

Claiming uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers share the
table; on SQLite the claim is one ``UPDATE ... RETURNING`` under the write lock. A claimed job
carries a lease (``locked_until_us``): a worker that died leaves a lease that expires, and
the job is claimed again. Failures back off exponentially with full jitter; after
``max_attempts`` the job is ``dead`` and stays for an operator to replay.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.storage.models import Job

__all__ = ["ClaimedJob", "backoff_seconds", "claim", "complete", "enqueue", "fail"]

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


def backoff_seconds(attempts: int, base: float = 1.0, cap: float = 3600.0) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempts - 1)))."""
    try:
        ceiling = min(cap, math.ldexp(base, max(0, attempts - 1)))
    except OverflowError:  # base * 2**n past the float range (n > ~1023): the cap applies
        ceiling = cap
    return random.uniform(0, ceiling)


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    now_us: int,
    delay: float = 0.0,
    dedupe_key: str | None = None,
    max_attempts: int = 10,
) -> None:
    """Add a job in the caller's transaction. With ``dedupe_key``, a second enqueue is a no-op."""
    values = {
        "kind": kind,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "status": QUEUED,
        "run_at_us": now_us + int(delay * 1_000_000),
        "attempts": 0,
        "max_attempts": max_attempts,
        "created_us": now_us,
        "updated_us": now_us,
    }
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Job).values(**values)
    if dedupe_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"])
    await session.execute(stmt)


async def claim(
    session: AsyncSession, worker_id: str, *, now_us: int, limit: int, lease: float = 60.0
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs (and jobs whose worker's lease ran out)."""
    due = or_(
        and_(Job.status == QUEUED, Job.run_at_us <= now_us),
        and_(Job.status == RUNNING, Job.locked_until_us < now_us),
    )
    candidates = select(Job.id).where(due).order_by(Job.run_at_us).limit(limit)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
        ids = list((await session.execute(candidates)).scalars())
        if not ids:
            return []
        where = Job.id.in_(ids)
    else:
        where = Job.id.in_(candidates.scalar_subquery())
    rows = await session.execute(
        update(Job)
        .where(where)
        .values(
            status=RUNNING,
            locked_by=worker_id,
            locked_until_us=now_us + int(lease * 1_000_000),
            attempts=Job.attempts + 1,
            updated_us=now_us,
        )
        .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts)
    )
    return [ClaimedJob(r.id, r.kind, r.payload, r.attempts, r.max_attempts) for r in rows]


async def complete(session: AsyncSession, job: ClaimedJob, *, now_us: int) -> None:
    await session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(status=DONE, locked_by=None, locked_until_us=None, updated_us=now_us)
    )


async def fail(
    session: AsyncSession,
    job: ClaimedJob,
    error: str,
    *,
    now_us: int,
    delay: float | None = None,
) -> str:
    """Record a failure: back off and requeue, or bury the job. Returns the new status."""
    status = DEAD if job.attempts >= job.max_attempts else QUEUED
    wait = backoff_seconds(job.attempts) if delay is None else delay
    await session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            status=status,
            last_error=error[:2000],
            run_at_us=now_us + int(wait * 1_000_000),
            locked_by=None,
            locked_until_us=None,
            updated_us=now_us,
        )
    )
    return status
