"""Idempotency keys with Stripe's semantics and brandur's recovery points
("Implementing Stripe-like Idempotency Keys in Postgres").

The first request with a key inserts a row ``in_flight`` and commits. Its *final* answer
(a success or a 4xx) is stored when it ends and replayed for every retry with the same key
and parameters. Different parameters: 400 ``idempotency_key_mismatch``. Keys are per account
*and mode*, as on Stripe: a live request never replays (or collides with) a test request's
key, so a merchant moving from test to live with deterministic keys gets live charges, not
its test objects back. A retry while the
first is still running: 409 ``idempotency_key_in_use``, nothing saved.

While it runs, the request records how far it got on the key row, in the same transaction as
the work itself (``record_recovery_point``): the object it created, and the attempt it
started before any gateway call. A row left ``in_flight`` by a process that died is taken
over once its lease expires, and the retry *resumes* from that point (``KeyClaim``): it
never creates a second object, and answers with the object's real state.

An answer that is not final (a cancelled request, a database or gateway outage, an outcome
still unknown) is not stored: the key is released at once (its lease ended, its recovery
point kept), so the next retry runs again, from where this one stopped. Keys are kept 24 h
and then purged by a job. Auth and request validation run before this layer.
"""

from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.services.context import Context
from paymux.storage.models import IdempotencyKey

__all__ = [
    "IdempotencyService",
    "KeyClaim",
    "Replay",
    "current_claim",
    "record_recovery_point",
    "request_fingerprint",
]

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """This request owns the key. ``object_id``/``recovery_point``: where an earlier request
    with the same key stopped (None on a first run)."""

    account_id: str
    livemode: bool
    key: str
    recovery_point: str | None = None
    object_id: str | None = None
    # When the key's row was made: a key used again after the purge (a new request, as on
    # Stripe) has another, so what a request derives from its key (a payment method's id)
    # differs from what the key's earlier life derived.
    created_us: int = 0

    @property
    def resumed(self) -> bool:
        return self.object_id is not None


# The key the running request holds, if any: services record their recovery points on it.
current_claim: ContextVar[KeyClaim | None] = ContextVar("paymux_idempotency_claim", default=None)


async def record_recovery_point(session: AsyncSession, point: str, object_id: str) -> None:
    """Note on the running request's key, in the caller's transaction, that it got to
    ``point`` with ``object_id``. No-op for a request without a key."""
    claim = current_claim.get()
    if claim is None:
        return
    await session.execute(
        _RECOVERY_POINT,
        {
            "b_account_id": claim.account_id,
            "b_livemode": claim.livemode,
            "b_key": claim.key,
            "v_point": point,
            "v_object_id": object_id,
        },
    )


# ``record_recovery_point``'s UPDATE: a Core statement built once (two or three per keyed
# payment; no session object of the key is ever changed by it).
_KEYS = cast(Table, IdempotencyKey.__table__)
_RECOVERY_POINT = (
    update(_KEYS)
    .where(
        _KEYS.c.account_id == bindparam("b_account_id"),
        _KEYS.c.livemode == bindparam("b_livemode"),
        _KEYS.c.key == bindparam("b_key"),
    )
    .values(recovery_point=bindparam("v_point"), object_id=bindparam("v_object_id"))
)


def _row_of(account_id: str, livemode: bool, key: str) -> tuple[ColumnElement[bool], ...]:
    """The WHERE clause of one key's row: its account, its mode and the key itself."""
    return (
        IdempotencyKey.account_id == account_id,
        IdempotencyKey.livemode == livemode,
        IdempotencyKey.key == key,
    )


def request_fingerprint(method: str, path: str, params: Any) -> str:
    canonical = json.dumps([method, path, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def begin(
        self,
        account_id: str,
        key: str,
        method: str,
        path: str,
        fingerprint: str,
        *,
        livemode: bool,
    ) -> Replay | KeyClaim:
        """A KeyClaim: this request owns the key and must ``finish`` or ``release`` it.
        A Replay: answer with it. ``livemode``: the mode of the request's API key (required,
        so no caller can forget it and share a key across modes)."""
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
                livemode=livemode,
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
            return KeyClaim(account_id, livemode, key, created_us=now)
        except IntegrityError:
            pass
        lease_cutoff = now - self.ctx.settings.idempotency_lease_seconds * 1_000_000
        async with self.ctx.db.write() as s:
            row = await s.get(IdempotencyKey, (account_id, livemode, key))
            if row is None:  # purged between the two statements: treat as new
                s.add(claimed())
                return KeyClaim(account_id, livemode, key, created_us=now)
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
                    *_row_of(account_id, livemode, key),
                    IdempotencyKey.status == "in_flight",
                    IdempotencyKey.locked_us < lease_cutoff,
                )
                .values(locked_us=now)
            )
            if getattr(taken, "rowcount", 0) == 1:
                return KeyClaim(
                    account_id,
                    livemode,
                    key,
                    row.recovery_point,
                    row.object_id,
                    created_us=row.created_us,
                )
        raise PaymuxError.of("idempotency_key_in_use")

    async def finish(
        self, account_id: str, key: str, status: int, body: str, *, livemode: bool
    ) -> None:
        async with self.ctx.db.write() as s:
            await s.execute(
                update(IdempotencyKey)
                .where(*_row_of(account_id, livemode, key))
                .values(status="done", response_status=status, response_body=body)
            )

    async def release(self, account_id: str, key: str, *, livemode: bool) -> None:
        """End the lease of a request whose answer was not final: the next retry takes the key
        over at once and resumes from its recovery point."""
        async with self.ctx.db.write() as s:
            await s.execute(
                update(IdempotencyKey)
                .where(*_row_of(account_id, livemode, key), IdempotencyKey.status == "in_flight")
                .values(locked_us=0)
            )

    async def purge(self) -> int:
        cutoff = self.ctx.now_us() - self.ctx.settings.idempotency_ttl_seconds * 1_000_000
        async with self.ctx.db.write() as s:
            result = await s.execute(
                delete(IdempotencyKey).where(IdempotencyKey.created_us < cutoff)
            )
            return int(getattr(result, "rowcount", 0) or 0)
