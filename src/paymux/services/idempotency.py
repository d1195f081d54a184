"""Idempotency keys with Stripe's semantics (brandur.org/idempotency-keys).

The first request with a key inserts a row ``in_flight`` and commits; its final status and
body (5xx included) are stored when it ends, and replayed for every retry with the same key
and parameters. Different parameters: 400 ``idempotency_key_mismatch``. A retry while the
first is still running: 409 ``idempotency_key_in_use``, nothing saved. A row left
``in_flight`` by a process that died is taken over once its lease expires (the operation
itself is safe to re-run: gateway calls carry their own idempotency keys). Keys are kept 24 h
and then purged by a job. Auth and request validation run before this layer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from paymux.domain.errors import PaymuxError
from paymux.services.context import Context
from paymux.storage.models import IdempotencyKey

__all__ = ["IdempotencyService", "Replay", "request_fingerprint"]

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: str


def request_fingerprint(method: str, path: str, params: Any) -> str:
    canonical = json.dumps([method, path, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def begin(
        self, account_id: str, key: str, method: str, path: str, fingerprint: str
    ) -> Replay | None:
        """None: this request owns the key and must call ``finish``. A Replay: answer with it."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise PaymuxError.of(
                "parameter_invalid",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
                param="Idempotency-Key",
            )
        now = self.ctx.now_us()

        def claimed() -> IdempotencyKey:
            return IdempotencyKey(
                account_id=account_id,
                key=key,
                method=method,
                path=path,
                request_hash=fingerprint,
                status="in_flight",
                response_status=None,
                response_body=None,
                locked_us=now,
                created_us=now,
            )

        try:
            async with self.ctx.db.write() as s:
                s.add(claimed())
            return None
        except IntegrityError:
            pass
        lease_cutoff = now - self.ctx.settings.idempotency_lease_seconds * 1_000_000
        async with self.ctx.db.write() as s:
            row = await s.get(IdempotencyKey, (account_id, key))
            if row is None:  # purged between the two statements: treat as new
                s.add(claimed())
                return None
            if row.request_hash != fingerprint or row.path != path or row.method != method:
                raise PaymuxError.of(
                    "idempotency_key_mismatch",
                    f"Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    f"meant to execute a different request.",
                )
            if row.status == "done":
                assert row.response_status is not None and row.response_body is not None
                return Replay(row.response_status, row.response_body)
            taken = await s.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.account_id == account_id,
                    IdempotencyKey.key == key,
                    IdempotencyKey.status == "in_flight",
                    IdempotencyKey.locked_us < lease_cutoff,
                )
                .values(locked_us=now)
            )
            if getattr(taken, "rowcount", 0) == 1:
                return None
        raise PaymuxError.of("idempotency_key_in_use")

    async def finish(self, account_id: str, key: str, status: int, body: str) -> None:
        async with self.ctx.db.write() as s:
            await s.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
                .values(status="done", response_status=status, response_body=body)
            )

    async def release(self, account_id: str, key: str) -> None:
        """Forget a key whose request ended before doing anything (nothing to replay)."""
        async with self.ctx.db.write() as s:
            await s.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.account_id == account_id,
                    IdempotencyKey.key == key,
                    IdempotencyKey.status == "in_flight",
                )
            )

    async def purge(self) -> int:
        cutoff = self.ctx.now_us() - self.ctx.settings.idempotency_ttl_seconds * 1_000_000
        async with self.ctx.db.write() as s:
            result = await s.execute(
                delete(IdempotencyKey).where(IdempotencyKey.created_us < cutoff)
            )
            return int(getattr(result, "rowcount", 0) or 0)
