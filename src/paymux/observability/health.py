"""Health: what ``/health/live`` and ``/health/ready`` answer, and the workers' heartbeats.

- **live**: the process answers (no I/O): restart it only when this fails.
- **ready**: the database answers (``SELECT 1`` within ``READY_TIMEOUT``), its schema is not
  behind the code (``alembic_version`` is the code's head; a revision this code does not know
  is a newer release's, migrated first in a rolling upgrade: ready, with a ``warning``; a
  known older one, or none, is unready: run ``paymux migrate``), and, when this process runs
  a job worker (``paymux serve`` without ``--no-worker``), that worker beat within
  ``PAYMUX_WORKER_HEARTBEAT_TIMEOUT`` seconds. The deployment's other workers (``paymux
  worker`` processes) are reported (``alive``, ``known``) but don't make an API process
  unready: jobs are durable and wait for a worker, while an API taken out of its load
  balancer would refuse every payment. Watch them with the ``paymux_workers_alive`` metric
  (deploy/prometheus-alerts.yaml).

A worker beats (``WorkerBeat.beat``) at most every ``PAYMUX_WORKER_HEARTBEAT_INTERVAL``
seconds from its loop, deletes its row when it stops cleanly (``forget``), and deletes rows
of workers silent for a day (crashed ones), so a worker that crashed and was replaced does
not hold readiness down forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import text

from paymux.config import Settings
from paymux.storage.db import Database
from paymux.storage.migrate import release_revisions

__all__ = [
    "READY_TIMEOUT",
    "Readiness",
    "WorkerBeat",
    "head_revision",
    "known_revisions",
    "readiness",
]

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0
FORGET_AFTER_US = 24 * 3600 * 1_000_000

_UPSERT = text(
    "INSERT INTO worker_heartbeats (worker_id, started_us, beat_us) VALUES (:w, :now, :now) "
    "ON CONFLICT (worker_id) DO UPDATE SET beat_us = excluded.beat_us"
)


@lru_cache(maxsize=1)
def _revisions() -> tuple[str | None, frozenset[str]]:
    # From the migration files' lines: Alembic (about 10 MiB once imported) stays unloaded.
    return release_revisions()


def head_revision() -> str | None:
    """The newest migration this code has (read once per process)."""
    return _revisions()[0]


def known_revisions() -> frozenset[str]:
    """Every migration this code has: a revision outside them is a newer release's."""
    return _revisions()[1]


@dataclass
class WorkerBeat:
    """One worker's heartbeat row."""

    db: Database
    worker_id: str
    interval: float
    _last: float = field(default=-1e18, init=False)

    @property
    def key(self) -> str:
        return self.worker_id[:128]

    async def beat(self, now_us: int, *, force: bool = False) -> bool:
        """Write the beat if ``interval`` has passed since the last one; True if written."""
        moment = time.monotonic()
        if not force and moment - self._last < self.interval:
            return False
        self._last = moment
        try:
            async with self.db.write() as s:
                await s.execute(_UPSERT, {"w": self.key, "now": now_us})
                await s.execute(
                    text("DELETE FROM worker_heartbeats WHERE beat_us < :before"),
                    {"before": now_us - FORGET_AFTER_US},
                )
        except Exception:
            # Never in the way of the jobs: a missed beat shows as a stale worker.
            log.warning("worker %s could not write its heartbeat", self.key, exc_info=True)
            return False
        return True

    async def forget(self) -> None:
        """The worker stops: its row goes (a deployment without workers is not unready)."""
        async with self.db.write() as s:
            await s.execute(
                text("DELETE FROM worker_heartbeats WHERE worker_id = :w"), {"w": self.key}
            )


@dataclass
class Readiness:
    ready: bool
    checks: dict[str, dict[str, Any]]

    def body(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "unavailable", "checks": self.checks}


async def _database(db: Database) -> dict[str, Any]:
    async with db.read() as s:
        await s.execute(text("SELECT 1"))
    return {"ok": True}


async def _migrations(db: Database) -> dict[str, Any]:
    head = head_revision()
    async with db.read() as s:
        rows = (await s.execute(text("SELECT version_num FROM alembic_version"))).scalars()
        current = next(iter(rows), None)
    if current is not None and current != head and current not in known_revisions():
        # A newer release migrated first (a rolling upgrade: migrations add, they don't
        # take away): this code still runs on that schema. Unready here would take every
        # old process out of its load balancer at once.
        return {
            "ok": True,
            "current": current,
            "head": head,
            "warning": "the schema is newer than this code: finish rolling out the new release",
        }
    ok = current == head
    found: dict[str, Any] = {"ok": ok, "current": current, "head": head}
    if not ok:
        found["detail"] = "the schema is not at the newest migration: run `paymux migrate`"
    return found


async def _workers(
    db: Database, settings: Settings, now_us: int, own: WorkerBeat | None
) -> dict[str, Any]:
    after = now_us - int(settings.worker_heartbeat_timeout * 1_000_000)
    async with db.read() as s:
        rows = (await s.execute(text("SELECT worker_id, beat_us FROM worker_heartbeats"))).all()
    fresh = [worker for worker, beat in rows if beat >= after]
    found: dict[str, Any] = {"ok": True, "alive": len(fresh), "known": len(rows)}
    if own is not None and own.key not in fresh:
        found["ok"] = False
        found["detail"] = (
            f"this process's job worker has not beaten in {settings.worker_heartbeat_timeout:g}s"
        )
    return found


async def readiness(
    db: Database, settings: Settings, now_us: int, own: WorkerBeat | None = None
) -> Readiness:
    """The checks, each bounded by READY_TIMEOUT; a failure names itself, not a secret."""
    checks: dict[str, dict[str, Any]] = {}
    for name in ("database", "migrations", "workers"):
        check: Coroutine[Any, Any, dict[str, Any]] = (
            _database(db)
            if name == "database"
            else _migrations(db)
            if name == "migrations"
            else _workers(db, settings, now_us, own)
        )
        try:
            checks[name] = await asyncio.wait_for(check, READY_TIMEOUT)
        except Exception as exc:  # any failure is "not ready", said plainly
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}"}
        if name == "database" and not checks[name]["ok"]:
            break  # the others ask the same database
    return Readiness(all(c["ok"] for c in checks.values()), checks)
