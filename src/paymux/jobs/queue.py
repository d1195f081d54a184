"""The durable jobs table: enqueue in the caller's transaction, claim, finish, retry, bury.

Claiming uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers share the
table; on SQLite the claim is one ``UPDATE ... RETURNING`` under the write lock. A claimed job
carries a lease (``locked_until_us``): a worker that died leaves a lease that expires, and
the job is claimed again. Failures back off exponentially with full jitter; after
``max_attempts`` the job is ``dead`` and stays for an operator to retry (``list_jobs``,
``retry_job``: ``paymux jobs list --dead``, ``paymux jobs retry ID`` and the admin API). A job
whose lease ran out on its last attempt is claimed once more only to be buried (``spent``:
the worker does that), never run again, so a job that kills its worker is not claimed forever.
``done`` jobs are deleted once older than the retention (``prune_done``, by the worker's sweep
in small batches); dead ones stay until an operator acts. Job ids are never reused (SQLite's
table is AUTOINCREMENT, migration 0017).

Leases are fenced. Every claim bumps the row's ``lease_id``; the claiming worker's
``complete``, ``complete_many``, ``fail`` and ``extend`` (its heartbeat, which keeps the lease
of a job that runs long alive) take effect only while the row is still ``running``, locked by
that worker, with that ``lease_id``. A worker that lost its lease (it stalled past it, and
another worker claimed the job) is told so (``complete`` returns False, ``fail`` returns
None) and changes nothing: the new owner's outcome stands.

A ``dedupe_key`` is unique among live jobs only (``queued`` or ``running``; a partial unique
index): enqueueing a key a live job holds is a no-op, while a key whose job is ``done`` or
``dead`` can be queued again.

Every query that selects jobs is ordered and limited, and served by an index whatever the
backlog: a claim is two index range scans of at most ``limit`` rows each (see ``claim``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, literal, select, text, tuple_, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from paymux.domain.clock import seconds
from paymux.domain.errors import PaymuxError
from paymux.observability.tracing import inject
from paymux.storage import driver
from paymux.storage.models import Job

__all__ = [
    "DEAD",
    "DONE",
    "LIVE",
    "MAX_LIST",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "ClaimedJob",
    "LeaseLost",
    "any_due",
    "backoff_seconds",
    "claim",
    "complete",
    "complete_many",
    "enqueue",
    "extend",
    "fail",
    "job_view",
    "list_jobs",
    "list_jobs_page",
    "prune_done",
    "release_held",
    "retry_job",
    "revive_dead",
    "spent",
]

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"
STATUSES = (QUEUED, RUNNING, DONE, DEAD)
# The jobs that hold their dedupe key: the predicate of ux_jobs_dedupe_key_live (models.Job).
LIVE = (QUEUED, RUNNING)
_LIVE_SQL = text("status IN ('queued', 'running')")
MAX_LIST = 1000
_MAX_ID = 2**63 - 1  # BIGINT (and SQLite's INTEGER): a larger id names no job

# Kinds whose dead jobs are not retried as jobs: what put them there has state of its own
# that a retry would not reset. An apply_webhook job would find its inbox row ``dead`` and
# finish without applying anything; replaying the event resets the row and revives the job
# (``revive_dead``).
_RETRY_ELSEWHERE = {
    "apply_webhook": (
        "replay its event instead: `paymux webhooks replay {inbox_id}` or "
        "POST /v1/admin/webhooks/{inbox_id}/replay"
    ),
}


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    # The claim: who holds the lease, and its fencing token (the row's lease_id).
    locked_by: str = ""
    lease_id: int = 0


class LeaseLost(Exception):
    """A worker's lease on a job ran out and another worker claimed it: what this worker
    would have written about the job is refused (see ``complete``)."""

    def __init__(self, job: ClaimedJob) -> None:
        super().__init__(
            f"job {job.id} ({job.kind}): the lease of {job.locked_by} (claim {job.lease_id}) "
            "was lost, another worker holds the job now"
        )
        self.job = job


def _held(job: ClaimedJob) -> tuple[Any, ...]:
    """The row is still this claim's: running, locked by its worker, with its lease_id."""
    return (
        Job.id == job.id,
        Job.status == RUNNING,
        Job.locked_by == job.locked_by,
        Job.lease_id == job.lease_id,
    )


def spent(job: ClaimedJob) -> bool:
    """Whether ``job`` was claimed past its last attempt: its lease ran out while its last
    attempt ran (the worker died, or the job outran the lease). It is buried, not run again:
    a job that kills its worker each time would otherwise be claimed again forever."""
    return job.attempts > job.max_attempts


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
    account_id: str | None = None,
) -> int | None:
    """Add a job in the caller's transaction; returns its id. ``account_id``: the account
    whose object the job works on (None: the deployment's own, such as purges).

    With ``dedupe_key``, it is a no-op (returning None) while a job with that key is queued or
    running; once that job is done or dead, the key can be queued again.
    """
    values = {
        "kind": kind,
        "account_id": account_id,
        "payload": inject(payload),  # the enqueuer's trace context, when tracing is on
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
        # Names the partial unique index by its predicate, as literal SQL: with bound values
        # PostgreSQL cannot match it once a prepared statement goes to a generic plan (from
        # its sixth run), and fails with "no unique or exclusion constraint matching".
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=_LIVE_SQL)
    new_id: int | None = (await session.execute(stmt.returning(Job.id))).scalar_one_or_none()
    return new_id


async def claim(
    session: AsyncSession,
    worker_id: str,
    *,
    now_us: int,
    limit: int,
    lease: float = 60.0,
    kind: str | None = None,
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs (and jobs whose worker's lease ran out); only jobs of
    ``kind`` if given (the worker's top-up of a batch of webhook events).

    Jobs whose lease ran out come first, then queued jobs in ``run_at_us`` order. Each is one
    range scan of ix_jobs_status_run_at (``status = 'running'``, then ``status = 'queued'
    AND run_at_us <= now``) that stops after ``limit`` rows. One query with the two
    conditions OR-ed, as before, had to collect and sort every due job first, so its cost
    grew with the backlog (bench/jobs.py).
    """
    if limit <= 0:
        return []
    expired: tuple[ColumnElement[bool], ...] = (
        Job.status == RUNNING,
        Job.locked_until_us < now_us,
    )
    due: tuple[ColumnElement[bool], ...] = (Job.status == QUEUED, Job.run_at_us <= now_us)
    if kind is not None:
        expired, due = (*expired, Job.kind == kind), (*due, Job.kind == kind)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    if dialect == "postgresql":
        # FOR UPDATE cannot lock through a UNION: one locking query per condition.
        ids: list[int] = []
        for condition in (expired, due):
            query = (
                select(Job.id)
                .where(*condition)
                .order_by(Job.run_at_us)
                .limit(limit - len(ids))
                .with_for_update(skip_locked=True)
            )
            ids += (await session.execute(query)).scalars()
            if len(ids) >= limit:
                break
        if not ids:
            return []
        where = Job.id.in_(ids)
    else:
        # SQLite: one UPDATE under the write lock; each branch reads at most ``limit`` rows.
        branches = [
            select(Job.id, literal(rank).label("rank"), Job.run_at_us)
            .where(*condition)
            .order_by(Job.run_at_us)
            .limit(limit)
            .subquery()
            .select()
            for rank, condition in enumerate((expired, due))
        ]
        both = union_all(*branches).subquery()
        first = select(both.c.id).order_by(both.c.rank, both.c.run_at_us).limit(limit)
        where = Job.id.in_(first.scalar_subquery())
    rows = await session.execute(
        update(Job)
        .where(where)
        .values(
            status=RUNNING,
            locked_by=worker_id,
            locked_until_us=now_us + int(lease * 1_000_000),
            attempts=Job.attempts + 1,
            lease_id=Job.lease_id + 1,
            updated_us=now_us,
        )
        .returning(
            Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts, Job.lease_id
        )
    )
    return [
        ClaimedJob(r.id, r.kind, r.payload, r.attempts, r.max_attempts, worker_id, r.lease_id)
        for r in rows
    ]


# Whether ``claim`` would find a job: a queued one that is due, or a running one whose lease
# ran out (the same two index range scans, stopping at the first row).
_ANY_DUE = driver.Statement(
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM jobs WHERE status = 'queued' AND run_at_us <= :now)"
    " OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND locked_until_us < :now)"
)


async def any_due(reader: AsyncEngine, *, now_us: int) -> bool:
    """Whether a claim at ``now_us`` would find a job, in one read outside any transaction
    (``driver.first_row`` on ``reader``, ``Database.reader``).

    Why: an idle worker polls every PAYMUX_WORKER_POLL_INTERVAL, and a claim is a write
    transaction. On SQLite that takes the one write lock (the API's writes wait behind it,
    five times a second); on PostgreSQL it is five round trips (the pool's ping, BEGIN, two
    locking SELECTs, COMMIT) where this read is two. A job enqueued after the read is claimed
    at the next poll, as one enqueued after an empty claim was."""
    return await driver.first_row(reader, _ANY_DUE, {"now": now_us}) is not None


async def extend(
    session: AsyncSession, jobs: Sequence[ClaimedJob], *, now_us: int, lease: float
) -> set[int]:
    """Extend the leases of ``jobs`` to ``now_us + lease`` (the running worker's heartbeat,
    and its check right before a handler starts), each only if its claim still holds it.

    Returns the ids whose lease was lost: the row is no longer this claim's (another claim
    bumped its ``lease_id``, or the row is gone). A job this very claim already finished
    (``complete``, ``fail``: done, queued again or dead, ``lease_id`` unchanged) is not
    lost: a heartbeat that waited on the handler's own commit must not report it so.
    Nothing is written for either."""
    kept = await _fenced(session, jobs, {"locked_until_us": now_us + int(lease * 1_000_000)})
    if {job.id for job in jobs} <= kept:
        return set()
    unwritten = [job for job in jobs if job.id not in kept]
    finished = (
        await session.execute(
            select(Job.id).where(
                tuple_(Job.id, Job.lease_id).in_(sorted((j.id, j.lease_id) for j in unwritten)),
                Job.status != RUNNING,
            )
        )
    ).scalars()
    return {job.id for job in unwritten} - set(finished)


async def _fenced(
    session: AsyncSession, jobs: Sequence[ClaimedJob], values: dict[str, Any]
) -> set[int]:
    """Write ``values`` on the rows ``jobs`` still hold (running, locked by the claim's
    worker, with its ``lease_id``; one statement per worker); returns the ids written."""
    if not jobs:
        return set()
    written: set[int] = set()
    by_worker: dict[str, set[tuple[int, int]]] = {}
    for job in jobs:
        by_worker.setdefault(job.locked_by, set()).add((job.id, job.lease_id))
    for worker_id, claims in sorted(by_worker.items()):
        rows = await session.execute(
            update(Job)
            .where(
                tuple_(Job.id, Job.lease_id).in_(sorted(claims)),
                Job.status == RUNNING,
                Job.locked_by == worker_id,
            )
            .values(**values)
            .returning(Job.id)
        )
        written |= set(rows.scalars())
    return written


async def complete(session: AsyncSession, job: ClaimedJob, *, now_us: int) -> bool:
    """Mark the job done, if this claim still holds it; False (nothing written) if its lease
    was lost to another worker."""
    row = await session.execute(
        update(Job)
        .where(*_held(job))
        .values(status=DONE, locked_by=None, locked_until_us=None, updated_us=now_us)
        .returning(Job.id)
    )
    return row.scalar_one_or_none() is not None


async def complete_many(
    session: AsyncSession, jobs: Sequence[ClaimedJob], *, now_us: int
) -> set[int]:
    """Mark ``jobs`` done in ``session`` (the worker uses it for a batch of applied webhook
    events, in the transaction that applied them), each only if its claim still holds it.
    Returns the ids NOT marked done: their row is no longer their claim's (their lease ran
    out and another worker claimed them, or they were already finished); nothing is written
    for those, and the caller decides whether the rest of its transaction stands."""
    written = await _fenced(
        session,
        jobs,
        {"status": DONE, "locked_by": None, "locked_until_us": None, "updated_us": now_us},
    )
    return {job.id for job in jobs} - written


async def fail(
    session: AsyncSession,
    job: ClaimedJob,
    error: str,
    *,
    now_us: int,
    delay: float | None = None,
) -> str | None:
    """Record a failure: back off and requeue, or bury the job. Returns the new status, or
    None if this claim's lease was lost to another worker (nothing written: the job is the
    new owner's, whose outcome a late failure must not undo)."""
    status = DEAD if job.attempts >= job.max_attempts else QUEUED
    wait = backoff_seconds(job.attempts) if delay is None else delay
    row = await session.execute(
        update(Job)
        .where(*_held(job))
        .values(
            status=status,
            last_error=error[:2000],
            run_at_us=now_us + int(wait * 1_000_000),
            locked_by=None,
            locked_until_us=None,
            updated_us=now_us,
        )
        .returning(Job.id)
    )
    return status if row.scalar_one_or_none() is not None else None


async def release_held(
    session: AsyncSession,
    jobs: Sequence[ClaimedJob],
    *,
    now_us: int,
    started: Collection[int] = (),
) -> int:
    """Queue again, due now, the claims ``jobs`` a worker still holds at a graceful shutdown,
    each only if the claim still holds its row (running, its worker, its ``lease_id``: a job
    whose lease ran out and that another worker claimed is left to that worker). A job that
    never started (claimed, not run) gets its claim's attempt back; one in ``started`` (cut
    short, its transaction rolled back) keeps it, as after a crash. Returns how many were
    released. (The worker's shutdown hook.)"""
    released = 0
    for begun in (False, True):
        part = [job for job in jobs if (job.id in started) == begun]
        values: dict[str, Any] = {
            "status": QUEUED,
            "locked_by": None,
            "locked_until_us": None,
            "run_at_us": now_us,
            "updated_us": now_us,
        }
        if not begun:
            values["attempts"] = Job.attempts - 1
        released += len(await _fenced(session, part, values))
    return released


async def prune_done(session: AsyncSession, *, before_us: int, limit: int) -> int:
    """Delete up to ``limit`` ``done`` jobs finished before ``before_us``; returns how many.

    One range of ix_jobs_status_run_at (``status = 'done'``, oldest ``run_at_us`` first: a
    job runs after its ``run_at``, so a job finished before the cutoff was due before it),
    cut at ``limit``, so each call is small whatever the table holds; the caller repeats it
    in transactions of their own. ``updated_us`` (when it finished) is the rule itself."""
    if limit <= 0:
        return 0
    ids = list(
        (
            await session.execute(
                select(Job.id)
                .where(Job.status == DONE, Job.run_at_us < before_us, Job.updated_us < before_us)
                .order_by(Job.run_at_us)
                .limit(limit)
            )
        ).scalars()
    )
    if not ids:
        return 0
    await session.execute(delete(Job).where(Job.id.in_(ids), Job.status == DONE))
    return len(ids)


# -- operating the queue: list, retry -----------------------------------------------------


def job_view(job: Any) -> dict[str, Any]:
    """A job as the admin API and the CLI show it (a Job row or a row of its columns)."""
    return {
        "id": job.id,
        "object": "job",
        "kind": job.kind,
        "status": job.status,
        "payload": job.payload,
        "dedupe_key": job.dedupe_key,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "locked_by": job.locked_by,
        "run_at": seconds(job.run_at_us),
        "locked_until": seconds(job.locked_until_us),
        "created": seconds(job.created_us),
        "updated": seconds(job.updated_us),
    }


async def list_jobs(
    session: AsyncSession,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Jobs, most recently changed first (``updated_us``, then id), at most ``limit``.

    ``status`` must be one of STATUSES; ``limit`` is 1 to 1000 (else ``parameter_invalid``).
    """
    jobs, _ = await list_jobs_page(session, status=status, kind=kind, limit=limit)
    return jobs


async def list_jobs_page(
    session: AsyncSession,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], bool]:
    """``list_jobs``, and whether more jobs match than ``limit``."""
    if status is not None and status not in STATUSES:
        raise PaymuxError.of(
            "parameter_invalid",
            f"Invalid status: {status!r}; use one of {', '.join(STATUSES)}.",
            param="status",
        )
    if not 1 <= limit <= MAX_LIST:
        raise PaymuxError.of(
            "parameter_invalid", f"Invalid limit: use 1 to {MAX_LIST}.", param="limit"
        )
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    query = query.order_by(Job.updated_us.desc(), Job.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    return [job_view(job) for job in rows[:limit]], len(rows) > limit


def _requeued(now_us: int) -> dict[str, Any]:
    """What a dead job put back in the queue gets (``retry_job``, ``revive_dead``): due now,
    attempts reset, no lease."""
    return {
        "status": QUEUED,
        "attempts": 0,
        "run_at_us": now_us,
        "locked_by": None,
        "locked_until_us": None,
        "updated_us": now_us,
    }


def _missing(job_id: object) -> PaymuxError:
    return PaymuxError.of("resource_missing", f"No such job: {job_id}", param="id")


async def retry_job(session: AsyncSession, job_id: int, *, now_us: int) -> dict[str, Any]:
    """Put a dead job back in the queue, due now, with its attempts reset; returns it.

    Refused (PaymuxError): an unknown id (``resource_missing``), a job that is not dead
    (``job_unexpected_state``), a kind retried another way (``job_not_retryable``), a job
    whose dedupe key a live job holds now (``job_dedupe_conflict``: that job does the work).
    ``last_error`` is kept until the next attempt replaces it.
    """
    if not 1 <= job_id <= _MAX_ID:
        raise _missing(job_id)
    current = (
        await session.execute(
            select(Job.id, Job.kind, Job.status, Job.payload, Job.dedupe_key).where(
                Job.id == job_id
            )
        )
    ).one_or_none()
    if current is None:
        raise _missing(job_id)
    if current.status != DEAD:
        raise PaymuxError.of(
            "job_unexpected_state",
            f"Job {job_id} is {current.status}, not dead: only dead jobs can be retried.",
            param="id",
        )
    hint = _RETRY_ELSEWHERE.get(current.kind)
    if hint is not None:
        payload = current.payload if isinstance(current.payload, dict) else {}
        raise PaymuxError.of(
            "job_not_retryable",
            f"Job {job_id} ({current.kind}) is not retried as a job: "
            + hint.format(**{k: payload.get(k, "...") for k in ("inbox_id",)}),
            param="id",
        )
    revive = (
        update(Job)
        .where(Job.id == job_id, Job.status == DEAD)  # a concurrent retry wins once
        .values(**_requeued(now_us))
        .returning(*Job.__table__.columns)
    )
    try:
        async with session.begin_nested():
            row = (await session.execute(revive)).one_or_none()
    except IntegrityError:  # ux_jobs_dedupe_key_live: a live job holds the key
        holder = await session.scalar(
            select(Job.id)
            .where(Job.dedupe_key == current.dedupe_key, Job.status.in_(LIVE))
            .order_by(Job.id)
            .limit(1)
        )
        raise PaymuxError.of(
            "job_dedupe_conflict",
            f"Job {job_id} was not retried: job {holder if holder is not None else '?'} with "
            f"the same dedupe key ({current.dedupe_key}) is queued or running and does "
            "this work.",
            param="id",
        ) from None
    if row is None:  # retried (or changed) between the read and the update
        status = await session.scalar(select(Job.status).where(Job.id == job_id))
        raise PaymuxError.of(
            "job_unexpected_state",
            f"Job {job_id} is {status}, not dead: only dead jobs can be retried.",
            param="id",
        )
    return job_view(row)


async def revive_dead(
    session: AsyncSession, kind: str, field: str, values: Sequence[str], *, now_us: int
) -> set[str]:
    """Put the dead ``kind`` jobs whose ``payload[field]`` is one of ``values`` back in the
    queue, due now, attempts reset (as ``retry_job``); returns the values whose job was
    revived. For work retried another way than ``retry_job`` (a replayed webhook event):
    its dead job comes back to life instead of staying dead beside a new one.

    Reads only dead jobs (the ``status = 'dead'`` range of ix_jobs_status_run_at), a few
    hundred values per statement."""
    revived: set[str] = set()
    wanted = sorted(set(values))
    key = Job.payload[field].as_string()
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        rows = (
            await session.execute(
                select(Job.id, key.label("value"))
                .where(Job.status == DEAD, Job.kind == kind, key.in_(chunk))
                .order_by(Job.run_at_us, Job.id)
            )
        ).all()
        if not rows:
            continue
        await session.execute(
            update(Job)
            .where(Job.id.in_([r.id for r in rows]), Job.status == DEAD)
            .values(**_requeued(now_us))
        )
        revived |= {str(r.value) for r in rows}
    return revived
