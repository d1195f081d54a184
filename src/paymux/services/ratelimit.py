"""Requests per API key, and failed authentications per client address, per window: 429
``rate_limited`` with ``Retry-After`` past the limit.

A fixed window counts the requests of each key (by its hash; the key itself is never
stored): ``PAYMUX_RATE_LIMIT_REQUESTS`` every ``PAYMUX_RATE_LIMIT_WINDOW_SECONDS`` (100 a
second by default). A request with no key or a key that does not authenticate has no key to
count, so it is counted by the address it came from (the peer, or ``X-Forwarded-For`` when
the peer is one of ``PAYMUX_TRUSTED_PROXIES``, as uvicorn resolves it):
``PAYMUX_RATE_LIMIT_UNAUTHENTICATED_REQUESTS`` every
``PAYMUX_RATE_LIMIT_UNAUTHENTICATED_WINDOW_SECONDS`` (100 a minute). Only the failures count,
so a valid key sent from a busy address (a NAT, an office) is never refused for another
client's bad keys; it has its own limit. Either limit at 0 is off.

On PostgreSQL the count is one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` in a table
every API process shares, so a limit holds for the deployment, not per process. On SQLite
(one process) it is counted in memory. A row is named by a SHA-256 (of the key, or of the
address with a prefix, so the two never meet) and the window's start in microseconds, so
windows of different lengths share the table and the sweep. Once a counter is past its
limit, the process remembers it until the window ends and refuses further requests of that
key or address without writing to the database: a flood costs one write per process and
window, not one per request. Old windows are deleted by the worker's sweep.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math

from sqlalchemy import delete

from paymux.domain.errors import PaymuxError
from paymux.services.context import Context
from paymux.storage import driver
from paymux.storage.models import RateLimitWindow

__all__ = ["RateLimiter", "address_hash", "client_block"]

# The window of the payer pages' counts (``check_payer``).
PAYER_WINDOW_SECONDS = 600

# Entries kept in memory before the ended windows are dropped (SQLite counts, blocks).
_MEMORY_PRUNE_AT = 10_000

# PostgreSQL's count: one statement in its own short transaction, run on the database driver
# (storage/driver.py) rather than through SQLAlchemy's execution layers: the ORM's upsert
# cost each request about 600 Python calls more (issue 10).
_COUNT = driver.Statement(
    "INSERT INTO rate_limit_windows (key_hash, window_no, count) VALUES (:name, :start, 1) "
    "ON CONFLICT (key_hash, window_no) DO UPDATE SET count = rate_limit_windows.count + 1 "
    "RETURNING count"
)


def client_block(address: str) -> str:
    """What one client is counted as: an IPv4 address itself, an IPv6 address by its /64
    (one subscriber's network: a client that draws a new address from it for each request
    is still one client). An IPv4 address written in IPv6 (``::ffff:a.b.c.d``) is that
    IPv4 address. Anything else (a Unix socket's name) as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def address_hash(address: str) -> str:
    """The counter name of a client address (its ``client_block``): never the address
    itself, and never equal to a key's hash (a key's is the SHA-256 of the key alone)."""
    block = client_block(address)
    return hashlib.sha256(b"paymux-client-address:" + block.encode()).hexdigest()


def _named(prefix: str, subject: str) -> str:
    """A counter name (64 hex characters, as the table holds) of ``prefix`` + ``subject``."""
    return hashlib.sha256((prefix + subject).encode()).hexdigest()


class RateLimiter:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # counter name -> (window start us, count): SQLite's counts
        self._memory: dict[str, tuple[int, int]] = {}
        # counter name -> end of the window it is refused for (us)
        self._blocked: dict[str, int] = {}

    async def check(self, key_hash: str) -> None:
        """Count one request of the key; raise 429 ``rate_limited`` past the limit."""
        settings = self.ctx.settings
        await self._check(
            key_hash,
            settings.rate_limit_requests,
            settings.rate_limit_window_seconds,
            "with this API key",
        )

    async def check_unauthenticated(self, address: str | None) -> None:
        """Count one request from ``address`` that had no valid key; raise 429
        ``rate_limited`` past the limit (the caller answers 401 otherwise)."""
        settings = self.ctx.settings
        await self._check(
            address_hash(address or "unknown"),
            settings.rate_limit_unauthenticated_requests,
            settings.rate_limit_unauthenticated_window_seconds,
            "without a valid API key from this address",
        )

    async def check_payer(
        self, address: str | None, account_id: str, *, per_address: int, per_account: int
    ) -> None:
        """Count one card a payer's page (no API key: checkout's) sends, whoever's card and
        whatever comes of it (a token that does not resolve counts too): at most
        ``per_address`` every ``PAYER_WINDOW_SECONDS`` from one client address, and
        ``per_account`` for one account from every address; raise 429 ``rate_limited``
        past either. Card testers try many cards across many sessions."""
        await self._check(
            _named("paymux-payer-address:", client_block(address or "unknown")),
            per_address,
            PAYER_WINDOW_SECONDS,
            "paying from this address",
        )
        await self._check(
            _named("paymux-payer-account:", account_id),
            per_account,
            PAYER_WINDOW_SECONDS,
            "paying this merchant",
        )

    async def _check(self, name: str, limit: int, seconds: float, what: str) -> None:
        if limit <= 0:
            return
        window_us = max(1, int(seconds * 1_000_000))
        now = self.ctx.now_us()
        start = now - now % window_us
        end = start + window_us
        if self._blocked.get(name, 0) <= now:
            count = await self._count(name, start, now)
            if count <= limit:
                return
            self._prune(now)
            self._blocked[name] = end
        wait = max(1, math.ceil((end - now) / 1_000_000))
        raise PaymuxError.of(
            "rate_limited",
            f"Too many requests {what}: at most {limit} every {seconds:g} s. "
            f"Retry after {wait} s.",
            retry_after=wait,
        )

    async def _count(self, name: str, start: int, now: int) -> int:
        if self.ctx.db.is_sqlite:
            seen, count = self._memory.get(name, (start, 0))
            count = count + 1 if seen == start else 1
            self._prune(now)
            self._memory[name] = (start, count)
            return count
        # One statement, atomic alone: in autocommit, no BEGIN/COMMIT, and no ping before it
        # (``Database.one_row``: retried on a pinged connection if its connection was closed;
        # a count retried after a connection lost mid-statement counts twice: it refuses
        # early, never admits more).
        row = await self.ctx.db.one_row(_COUNT, {"name": name, "start": start}, write=True)
        assert row is not None  # RETURNING gives the row inserted or updated
        return int(row[0])

    def _prune(self, now: int) -> None:
        """Forget the windows that have ended once many are kept: many addresses, each seen
        once, must not grow a process without bound."""
        if len(self._memory) >= _MEMORY_PRUNE_AT:
            longest = self._longest_window_us()
            self._memory = {n: v for n, v in self._memory.items() if v[0] + longest > now}
        if len(self._blocked) >= _MEMORY_PRUNE_AT:
            self._blocked = {n: end for n, end in self._blocked.items() if end > now}

    def _longest_window_us(self) -> int:
        settings = self.ctx.settings
        return max(
            1,
            PAYER_WINDOW_SECONDS * 1_000_000,
            int(settings.rate_limit_window_seconds * 1_000_000),
            int(settings.rate_limit_unauthenticated_window_seconds * 1_000_000),
        )

    async def purge(self) -> None:
        """Forget windows that have ended (the worker's sweep): every row whose window began
        more than two of the longest windows ago (rows are named by their start, in us)."""
        if self.ctx.db.is_sqlite:
            return
        before = self.ctx.now_us() - 2 * self._longest_window_us()
        async with self.ctx.db.write() as s:
            await s.execute(delete(RateLimitWindow).where(RateLimitWindow.window_no < before))
