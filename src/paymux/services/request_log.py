"""The request log: recent API calls of an account, for the dashboard (issue 15).

Each authenticated API call (``/v1/...``, a key of the account: api/request_log.py notes it)
is kept as one ``request_log`` row: method, route template and path, status, duration,
request id, the key's id (never the key), time, and the request body **redacted as the logs
redact it** (``security/redact.py``: card numbers, CVCs, keys, secrets, Authorization values)
and capped at ``BODY_KEPT`` characters.

No database write on a request's path: ``note`` appends to an in-memory buffer of this
process (a bounded deque: past ``max_pending`` waiting calls the oldest are dropped and
counted in ``dropped``), and a background task of this process flushes the buffer every
``interval`` seconds, or as soon as ``batch`` calls wait, in one transaction: one batched
INSERT per ``batch`` rows (on PostgreSQL one statement of column arrays, ``unnest``; on
SQLite one prepared statement, executemany; a ``VALUES`` list of 200 rows cost five times the
CPU to compile), then the trim of each account and mode written to its newest ``keep`` rows.
Redaction runs in the flush, not in the request. What the buffer holds when a process dies
(at most ``interval`` seconds of calls) is lost: a log, not a record of money. ``close``
(the app's shutdown) flushes what is left.

The body is redacted from its first ``BODY_SCANNED`` bytes and then cut to ``BODY_KEPT``
characters: a card number cut in two by the first cut lies far past the second. The bodies of
the connections routes (``/v1/connections...``: gateway credentials, some of a form no
redaction pattern knows, as Square's webhook signature key) are not kept at all
(``WITHHELD``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Boolean, Table, insert

from paymux.domain.ids import new_id
from paymux.security.redact import redact
from paymux.services.context import Context, page_of
from paymux.storage.driver import Statement, execute, fetchrow
from paymux.storage.models import RequestLogEntry

__all__ = [
    "BODY_KEPT",
    "BODY_SCANNED",
    "STATUS_CLASSES",
    "WITHHELD",
    "ApiCall",
    "RequestLog",
    "redacted_body",
    "request_log_view",
]

log = logging.getLogger(__name__)

BODY_SCANNED = 8192  # bytes of a body read and redacted
BODY_KEPT = 2048  # characters of the redacted body kept
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
WITHHELD = "[not kept: gateway credentials]"
_WITHHELD_ROUTES = ("/v1/connections",)
_PATH_KEPT = 500
_ROUTE_KEPT = 200
_TABLE = cast(Table, RequestLogEntry.__table__)
_INSERT = insert(_TABLE)  # built once (cached compiled); rows as one executemany (SQLite)
# PostgreSQL: a batch is ONE execution, each column one array (asyncpg encodes them in C).
# executemany ran the INSERT once per row, each with its own bind and execute, and
# SQLAlchemy's executemany converted every row's parameters in Python: about 1.5 % of a GET's
# CPU at 3,000 GETs/s (issue 10). The arrays' types are the table's as migration 0033 made it
# (the model says ``Mapped[int]`` for the BIGINT columns); VARCHAR without a length, so that a
# value too long fails as the INSERT's own would (a cast to VARCHAR(n) would cut it).
_COLUMNS = (
    ("id", "VARCHAR"),
    ("account_id", "VARCHAR"),
    ("livemode", "BOOLEAN"),
    ("method", "VARCHAR"),
    ("route", "VARCHAR"),
    ("path", "VARCHAR"),
    ("status", "INTEGER"),
    ("duration_us", "BIGINT"),
    ("request_id", "VARCHAR"),
    ("key_id", "VARCHAR"),
    ("body", "TEXT"),
    ("created_us", "BIGINT"),
)
_INSERT_ARRAYS = Statement(
    f"INSERT INTO request_log ({', '.join(name for name, _ in _COLUMNS)}) "  # noqa: S608 (ours)
    "SELECT * FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _COLUMNS)
    + ")"
)
# The trim (driver statements: the flush's transaction is never made an ORM session,
# storage/db.py ``_LeanSession``): the newest row past ``keep``, then it and older ones.
_MINE = "account_id = :account AND livemode = :livemode"
_EDGE = Statement(
    f"SELECT created_us, id FROM request_log WHERE {_MINE} "  # noqa: S608 (ours)
    "ORDER BY created_us DESC, id DESC LIMIT 1 OFFSET :keep",
    binds={"livemode": Boolean()},
)
_TRIM = Statement(
    f"DELETE FROM request_log WHERE {_MINE} "  # noqa: S608 (ours)
    "AND (created_us, id) <= (:created_us, :id)",
    binds={"livemode": Boolean()},
)
_PATH_TEXT = re.compile(r"/[A-Za-z0-9_/.{}\-]{0,199}")


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One answered API call, as the API layer notes it (the body still raw, capped at
    ``BODY_SCANNED`` bytes)."""

    account_id: str
    livemode: bool
    key_id: str | None
    method: str
    route: str
    path: str
    status: int
    duration_us: int
    request_id: str | None
    body: bytes
    at_us: int


def redacted_body(raw: bytes) -> str | None:
    """The body as the request log keeps it: decoded, redacted as the logs are, capped."""
    if not raw:
        return None
    text = raw[:BODY_SCANNED].decode("utf-8", "replace")
    return redact(text)[:BODY_KEPT]


def _row(call: ApiCall) -> dict[str, Any]:
    return {
        "id": new_id("rql"),
        "account_id": call.account_id,
        "livemode": call.livemode,
        "method": call.method[:8],
        "route": call.route[:_ROUTE_KEPT],
        "path": redact(call.path)[:_PATH_KEPT],
        "status": call.status,
        "duration_us": max(0, call.duration_us),
        "request_id": call.request_id,
        "key_id": call.key_id,
        "body": WITHHELD
        if call.body and call.route.startswith(_WITHHELD_ROUTES)
        else redacted_body(call.body),
        "created_us": call.at_us,
    }


def request_log_view(e: RequestLogEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "object": "request_log_entry",
        "method": e.method,
        "route": e.route,
        "path": e.path,
        "status": e.status,
        "latency_ms": round(e.duration_us / 1000, 1),
        "request_id": e.request_id,
        "key_id": e.key_id,
        "body": e.body,
        "created": e.created_us // 1_000_000,
        "livemode": e.livemode,
    }


def _retrieve(task: asyncio.Task[None]) -> None:
    """A flusher's end read, so a flusher stopped by an error is never reported unread."""
    if not task.cancelled():
        task.exception()


class RequestLog:
    """This process's buffer of API calls, its flusher, and the account's page of them."""

    def __init__(
        self,
        ctx: Context,
        *,
        keep: int = 10_000,
        batch: int = 200,
        interval: float = 1.0,
        max_pending: int = 20_000,
    ) -> None:
        self.ctx = ctx
        self.keep = keep
        self.batch = max(1, batch)
        self.interval = interval
        self.dropped = 0
        self._pending: deque[ApiCall] = deque(maxlen=max(1, max_pending))
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- writing ---------------------------------------------------------------------------
    def note(self, call: ApiCall) -> None:
        """Keep ``call`` for the next flush (no I/O; starts this process's flusher)."""
        if self._closed or self.keep <= 0:
            return
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1  # the deque drops the oldest
        self._pending.append(call)
        if len(self._pending) >= self.batch:
            self._wake.set()
        if self._task is None or self._task.done():
            # A context of its own: not the first request's (its request id, its mode).
            self._task = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context()
            )
            self._task.add_done_callback(_retrieve)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        """Flush every ``interval`` (or when a batch waits) until a flush finds nothing: the
        task ends while no call comes (the next ``note`` starts another)."""
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if await self.flush() == 0 and not self._pending:
                    return
            except Exception as exc:  # the database is down: these calls are lost
                log.warning("request log: a batch was not written (%s)", type(exc).__name__)

    async def flush(self) -> int:
        """Write every waiting call now (one transaction); returns how many."""
        async with self._lock:
            calls = list(self._pending)
            self._pending.clear()
            if not calls:
                return 0
            rows = [_row(c) for c in calls]
            owners = sorted({(c.account_id, c.livemode) for c in calls})
            async with self.ctx.db.write() as s:
                for start in range(0, len(rows), self.batch):
                    chunk = rows[start : start + self.batch]
                    if self.ctx.db.is_sqlite:
                        await s.execute(_INSERT, chunk)
                    else:
                        columns = {name: [row[name] for row in chunk] for name, _ in _COLUMNS}
                        await execute(s, _INSERT_ARRAYS, columns)
                for account_id, livemode in owners:
                    await self._trim(s, account_id, livemode)
            return len(rows)

    async def _trim(self, s: Any, account_id: str, livemode: bool) -> None:
        """Delete the account's rows of this mode past its newest ``keep``."""
        mine = {"account": account_id, "livemode": livemode}
        edge = await fetchrow(s, _EDGE, {**mine, "keep": self.keep})
        if edge is not None:
            await execute(s, _TRIM, {**mine, "created_us": edge[0], "id": edge[1]})

    async def close(self) -> None:
        """Stop the flusher and write what is left (the app's shutdown)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # Its end (cancelled, or whatever stopped it), retrieved: never left unread.
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self.flush()
        except Exception as exc:
            log.warning("request log: the last batch was not written (%s)", type(exc).__name__)

    # -- reading ---------------------------------------------------------------------------
    async def list(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        status_class: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the account's calls of the current mode, newest first. ``status_class``
        is one of ``STATUS_CLASSES``; ``path`` a prefix of the path (``/v1/refunds``)."""
        t = RequestLogEntry
        low = None
        if status_class is not None and status_class in STATUS_CLASSES:
            low = int(status_class[0]) * 100
        return await page_of(
            self.ctx,
            t,
            account_id,
            request_log_view,
            t.status.between(low, low + 99) if low is not None else None,
            t.method == method.upper() if method else None,
            t.path.startswith(path, autoescape=True) if path else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )

    @staticmethod
    def valid_path_filter(value: str) -> bool:
        return _PATH_TEXT.fullmatch(value) is not None
