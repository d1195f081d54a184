"""Group commit of inbound webhooks: the deliveries that arrive together share ONE transaction.

One transaction per delivery (a connection checkout, BEGIN, two INSERTs, COMMIT, and on SQLite
a turn of the single writer connection) cost more than the rest of ``POST /webhooks/...``
together. Here ``InboxWriter.store`` queues the verified
event with a future and waits; one flusher task takes everything queued (at most
``batch_size``), writes the inbox rows with one multi-row ``INSERT ... ON CONFLICT (gateway,
event_id) DO NOTHING RETURNING id`` and an ``apply_webhook`` job for each new row (carrying
the trace context of the request that delivered it, when tracing is on), commits, and only
then resolves the futures. While it writes, the next deliveries queue up for the next
batch: no timer, no added latency when traffic is light (a batch of one).

The promise is unchanged: nothing is answered before its commit. A failed transaction fails
every waiter of its batch (the endpoint answers 5xx, the provider delivers again), except that
a batch failing on one event's data (an integrity or data error: one bad event) is retried one
event per transaction, so that one event cannot refuse the others delivered alongside it.

Duplicates: a delivery whose event is already stored (a conflict) is answered with the stored
row's id; the same event twice in one batch is written once, the first delivery answered as
new and the others as duplicates.

The flusher starts on the running loop when something is queued and ends when the queue is
empty (so there is no idle task to stop, and no wakeup to lose: the queue is checked and the
task cleared without an ``await`` between). ``aclose`` waits for a flush in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Insert, Select, Table, bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from paymux.domain.ids import new_id
from paymux.observability.tracing import TRACE_KEY
from paymux.storage.db import Database
from paymux.storage.models import Job, WebhookInbox

__all__ = ["Arrival", "InboxWriter", "Stored"]

log = logging.getLogger(__name__)

_INBOX = cast(Table, WebhookInbox.__table__)
_JOBS = cast(Table, Job.__table__)
# Errors caused by one event's values rather than by the database: split the batch on these.
_ONE_EVENT_ERRORS = (IntegrityError, DataError)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A verified delivery, ready to store."""

    gateway: str
    account_id: str | None
    connection_id: str | None
    event_id: str
    type: str
    payload: str
    received_us: int
    # The delivering request's trace context (tracing.carrier(), taken in the request: the
    # flusher writing the job runs in a task of its own), for the job's payload (``_trace``).
    trace: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    inbox_id: str
    duplicate: bool


_Waiter = tuple[Arrival, "asyncio.Future[Stored]"]


class InboxWriter:
    """Stores arrivals in group-committed batches; see the module docstring."""

    def __init__(self, db: Database, *, max_attempts: int, batch_size: int = 500) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.batch_size = max(1, batch_size)
        self.batches = 0  # transactions committed
        self.stored = 0  # deliveries answered (new or duplicate) after a commit
        self._queue: deque[_Waiter] = deque()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: AsyncConnection | None = None  # PostgreSQL: the flusher's connection
        self._insert_inbox, self._insert_jobs, self._existing = _statements(db.is_sqlite)

    @property
    def busy(self) -> bool:
        """Whether a flusher task is running (it ends as soon as the queue is empty)."""
        return self._task is not None

    async def store(self, arrival: Arrival) -> Stored:
        """Queue ``arrival`` and wait for the commit of its batch (or its error)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # First use, or a new loop (asyncio.run again): what the old loop left is gone
            # with it.
            self._loop, self._queue, self._task, self._held = loop, deque(), None, None
        future: asyncio.Future[Stored] = loop.create_future()
        self._queue.append((arrival, future))
        if self._task is None:
            self._task = loop.create_task(self._flush(), name="paymux-webhook-ingest")
        return await future

    async def aclose(self) -> None:
        """Wait for the flush in progress (if any) to answer its waiters."""
        task = self._task
        if task is not None and self._loop is asyncio.get_running_loop():
            await asyncio.wait([task])

    # -- the flusher ---------------------------------------------------------------------
    async def _flush(self) -> None:
        batch: list[_Waiter] = []
        try:
            while True:
                while self._queue:
                    take = min(len(self._queue), self.batch_size)
                    batch = [self._queue.popleft() for _ in range(take)]
                    await self._commit(batch)
                    batch = []
                await self._release()
                if not self._queue:  # (what arrived while releasing is taken above)
                    break
        except BaseException as exc:  # cancelled (the loop is closing): nobody is left waiting
            stopped = RuntimeError("webhook ingest stopped before the commit")
            stopped.__cause__ = exc
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.set_exception(stopped)
            self._queue.clear()
            self._held = None  # its loop is going away; the pool reclaims it
            raise
        finally:
            # No await since the queue was seen empty: a store() from now on starts a new task.
            self._task = None

    async def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            try:
                await held.close()
            except Exception:  # a connection that broke: the pool discards it
                log.debug("closing the ingest connection failed", exc_info=True)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. On PostgreSQL the flusher keeps its connection while the queue
        is busy (a pool checkout per batch saved; dropped after any error); on SQLite
        the one writer connection is taken per batch, so other writers get their turns."""
        if self.db.is_sqlite:
            async with self.db.writer.begin() as conn:
                yield conn
            return
        if self._held is None:
            self._held = await self.db.writer.connect()
        try:
            async with self._held.begin():
                yield self._held
        except BaseException:
            await self._release()
            raise

    async def _commit(self, batch: list[_Waiter]) -> None:
        try:
            answers = await self._write([arrival for arrival, _ in batch])
        except _ONE_EVENT_ERRORS as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            for waiter in batch:  # find the bad one: each event in its own transaction
                await self._commit([waiter])
            return
        except Exception as exc:
            _fail(batch, exc)
            return
        self.batches += 1
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its request was cancelled meanwhile
                continue
            if isinstance(answer, Stored):
                self.stored += 1
                future.set_result(answer)
            else:
                future.set_exception(answer)

    async def _write(self, arrivals: list[Arrival]) -> list[Stored | LookupError]:
        """One transaction: the batch's new inbox rows and their jobs. Returns the answers in
        the order of ``arrivals``."""
        first: dict[tuple[str, str], int] = {}  # (gateway, event id) -> its first arrival
        rows: list[dict[str, Any]] = []
        traces: list[dict[str, str] | None] = []  # each row's first arrival's trace context
        for i, a in enumerate(arrivals):
            key = (a.gateway, a.event_id)
            if key in first:
                continue
            first[key] = i
            traces.append(a.trace)
            rows.append(
                {
                    "id": new_id("we"),
                    "gateway": a.gateway,
                    "account_id": a.account_id,
                    "connection_id": a.connection_id,
                    "event_id": a.event_id,
                    "type": a.type,
                    "payload": a.payload,
                    "status": "received",
                    "error": None,
                    "received_us": a.received_us,
                    "applied_us": None,
                }
            )
        # A Core connection, not an ORM session: nothing here needs the unit of work, and a
        # session's set-up and teardown were a good part of a small batch's cost.
        async with self._transaction() as s:
            new_ids = set((await s.execute(self._insert_inbox, rows)).scalars())
            ids: dict[tuple[str, str], str] = {}
            jobs: list[dict[str, Any]] = []
            conflicts: dict[str, list[str]] = {}
            for row, trace in zip(rows, traces, strict=True):
                key = (row["gateway"], row["event_id"])
                if row["id"] in new_ids:
                    ids[key] = row["id"]
                    now = row["received_us"]
                    jobs.append(
                        {
                            "kind": "apply_webhook",
                            "account_id": row["account_id"],
                            # Linked to the request that delivered it, as any job.
                            "payload": (
                                {"inbox_id": row["id"], TRACE_KEY: trace}
                                if trace
                                else {"inbox_id": row["id"]}
                            ),
                            "dedupe_key": None,
                            "status": "queued",
                            "run_at_us": now,
                            "attempts": 0,
                            "max_attempts": self.max_attempts,
                            "created_us": now,
                            "updated_us": now,
                        }
                    )
                else:
                    conflicts.setdefault(row["gateway"], []).append(row["event_id"])
            if jobs:
                await s.execute(self._insert_jobs, jobs)
            for gateway, event_ids in conflicts.items():
                found = await s.execute(self._existing, {"gateway": gateway, "ids": event_ids})
                ids.update(((gateway, event_id), id_) for event_id, id_ in found)
        answers: list[Stored | LookupError] = []
        for i, a in enumerate(arrivals):
            key = (a.gateway, a.event_id)
            inbox_id = ids.get(key)
            if inbox_id is None:  # it conflicted, then went (purged) before we looked: 5xx
                answers.append(LookupError(f"the stored {a.gateway} event {a.event_id} vanished"))
            else:
                duplicate = first[key] != i or inbox_id not in new_ids
                answers.append(Stored(inbox_id, duplicate=duplicate))
        return answers


def _fail(batch: list[_Waiter], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _statements(is_sqlite: bool) -> tuple[Insert, Insert, Select[str, str]]:
    """Built once per writer: SQLAlchemy caches their compiled form."""
    dialect_insert = sqlite_insert if is_sqlite else pg_insert
    inbox = (
        dialect_insert(_INBOX)
        .on_conflict_do_nothing(index_elements=["gateway", "event_id"])
        .returning(_INBOX.c.id)
    )
    jobs = insert(_JOBS)
    existing = select(_INBOX.c.event_id, _INBOX.c.id).where(
        _INBOX.c.gateway == bindparam("gateway"),
        _INBOX.c.event_id.in_(bindparam("ids", expanding=True)),
    )
    return inbox, jobs, existing
