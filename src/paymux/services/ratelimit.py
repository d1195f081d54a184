"""Requests per API key, per window: 429 ``rate_limited`` with ``Retry-After`` past the limit.

A fixed window (``PAYMUX_RATE_LIMIT_WINDOW_SECONDS``, 1 s by default) counts the requests of
each key (by its hash; the key itself is never stored). On PostgreSQL the count is one
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` in a table every API process shares, so
the limit holds for the deployment, not per process. On SQLite (one process) it is counted
in memory. ``PAYMUX_RATE_LIMIT_REQUESTS=0`` turns it off. Old windows are deleted by the
worker's sweep.
"""

from __future__ import annotations

import math

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert

from paymux.domain.errors import PaymuxError
from paymux.services.context import Context
from paymux.storage.models import RateLimitWindow

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._memory: dict[str, tuple[int, int]] = {}  # key hash -> (window, count)

    async def check(self, key_hash: str) -> None:
        """Count one request of the key; raise 429 ``rate_limited`` past the limit."""
        settings = self.ctx.settings
        limit = settings.rate_limit_requests
        if limit <= 0:
            return
        window_us = max(1, int(settings.rate_limit_window_seconds * 1_000_000))
        now = self.ctx.now_us()
        window = now // window_us
        count = await self._count(key_hash, window)
        if count > limit:
            wait = ((window + 1) * window_us - now) / 1_000_000
            raise PaymuxError.of(
                "rate_limited",
                f"Too many requests with this API key: at most {limit} every "
                f"{settings.rate_limit_window_seconds:g} s. Retry after {math.ceil(wait)} s.",
                retry_after=max(1, math.ceil(wait)),
            )

    async def _count(self, key_hash: str, window: int) -> int:
        if self.ctx.db.is_sqlite:
            seen, count = self._memory.get(key_hash, (window, 0))
            count = count + 1 if seen == window else 1
            self._memory[key_hash] = (window, count)
            return count
        counted = (
            pg_insert(RateLimitWindow)
            .values(key_hash=key_hash, window_no=window, count=1)
            .on_conflict_do_update(
                index_elements=["key_hash", "window_no"],
                set_={"count": RateLimitWindow.count + 1},
            )
            .returning(RateLimitWindow.count)
        )
        async with self.ctx.db.write() as s:
            return int((await s.execute(counted)).scalar_one())

    async def purge(self) -> None:
        """Forget windows that have ended (the worker's sweep)."""
        if self.ctx.db.is_sqlite:
            return
        window_us = max(1, int(self.ctx.settings.rate_limit_window_seconds * 1_000_000))
        current = self.ctx.now_us() // window_us
        async with self.ctx.db.write() as s:
            await s.execute(delete(RateLimitWindow).where(RateLimitWindow.window_no < current - 1))
