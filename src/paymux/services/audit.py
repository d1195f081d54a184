"""The audit log: who (which key, ``admin`` or ``cli``) did what to which object, and when.

Entries are only ever added: the database refuses an UPDATE or a DELETE of ``audit_log``
(triggers, migration 0006). ``details`` holds a few plain facts (a status, an amount, a
key's redacted form), never a key, a secret or card data.

A successful mutating API request is audited in the transaction that makes its answer
(``audit_in``), so the entry and the change commit together: a change is never left without
its entry, and a request whose write fails leaves none. The API layer (api/deps.py) notes
who is asking (``AuditRequest`` in ``pending_audit``); the services that write an answer's
last transaction themselves add the entry there: payment intents' create, confirm, capture
and cancel, refunds, and connections' create, update (a disable too) and delete. For every
other request, and for an answer whose gateway outcome is still unknown, the API layer writes
it in a transaction of its own after the answer.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.ids import new_id
from paymux.services.context import Context, flush_pending, page_of
from paymux.storage.driver import insert_of, later
from paymux.storage.models import AuditEntry

__all__ = [
    "AUDIT_FIELDS",
    "AuditLog",
    "AuditRequest",
    "audit_entry",
    "audit_in",
    "audit_view",
    "pending_audit",
]

# Facts about the object an audit entry may keep (never a key, a secret or card data).
AUDIT_FIELDS = (
    "status",
    "amount",
    "currency",
    "amount_received",
    "amount_refunded",
    "disabled",
)


@dataclass(slots=True)
class AuditRequest:
    """The request an entry is about (set by the API layer before the operation runs);
    ``written`` once a service has added its entry in the answer's transaction."""

    account_id: str
    actor: str
    action_verb: str  # create | update | delete | <the route's last segment>
    method: str
    path: str
    livemode: bool
    request_id: str | None
    written: bool = False
    # The route's fixed segments (``("payment_intents", "capture")``): whose answer it is.
    route: tuple[str, ...] = ()

    def answers_with(self, result: dict[str, Any]) -> bool:
        """Is ``result`` the request's own answer, not an object a service made on the way
        (a credit note's refund, an invoice's payment intent)? Its type names the route:
        ``refund`` for /v1/refunds, ``billing.meter_event`` for /v2/billing/meter_event_stream.
        No route known (a library caller): yes."""
        kind = str(result.get("object") or "").rsplit(".", 1)[-1]
        return not self.route or any(segment.startswith(kind) for segment in self.route)

    def details(self, result: dict[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {"method": self.method, "path": self.path}
        details.update({k: result[k] for k in AUDIT_FIELDS if isinstance(result.get(k), str | int)})
        return details

    def values(self, result: dict[str, Any], now_us: int) -> dict[str, Any]:
        """The entry's row for the answer ``result`` (an API object)."""
        object_type = str(result.get("object") or "object")
        return {
            "id": new_id("aud"),
            "account_id": self.account_id,
            "actor": self.actor[:64],
            "action": f"{object_type}.{self.action_verb}"[:64],
            "object_type": object_type,
            "object_id": str(result["id"]) if result.get("id") is not None else None,
            "livemode": self.livemode,
            "request_id": self.request_id,
            "details": self.details(result),
            "created_us": now_us,
        }


# The API request being served, if any (None in workers, the CLI and library use).
pending_audit: ContextVar[AuditRequest | None] = ContextVar("paymux_audit", default=None)

# The entry's columns, as ``AuditRequest.values`` gives them (every column: none is left to
# its default).
_AUDIT_KEYS = (
    "id",
    "account_id",
    "actor",
    "action",
    "object_type",
    "object_id",
    "livemode",
    "request_id",
    "details",
    "created_us",
)
# The entry's INSERT on the database driver (storage/driver.py), written once: a row that is
# only ever inserted needs no unit of work, and a statement whose SQL never changes none of
# SQLAlchemy's execution layers (a confirmed payment's settle ran it through them: issue 10).
# ``details`` is bound as the ORM binds JSON, ``livemode`` as each database's boolean.
_INSERT = insert_of(AuditEntry, _AUDIT_KEYS)


async def _insert(session: AsyncSession, values: dict[str, Any]) -> None:
    """One entry's INSERT in ``session``'s transaction (held on PostgreSQL until the next
    statement or the COMMIT: ``driver.later``), after the autoflush that ``session.execute``
    of a Core statement did (``flush_pending``: the transaction's writes in the order they
    were)."""
    await flush_pending(session)
    await later(session, _INSERT, values)


async def audit_in(session: AsyncSession, result: dict[str, Any], now_us: int) -> None:
    """Add the running API request's entry for its answer ``result`` in the caller's write
    transaction (the one that makes the answer); no-op outside an API request, once written,
    or for an object that is not the request's answer (a service called by another's route:
    that route's entry is the API layer's). Call it only where the operation can no longer
    fail after that transaction."""
    request = pending_audit.get()
    if request is None or request.written or not request.answers_with(result):
        return
    await _insert(session, request.values(result, now_us))
    request.written = True


def audit_entry(
    ctx: Context,
    *,
    account_id: str,
    actor: str,
    action: str,
    object_type: str | None = None,
    object_id: str | None = None,
    livemode: bool = False,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """A new entry, for the caller to add in its own transaction."""
    return AuditEntry(
        id=new_id("aud"),
        account_id=account_id,
        actor=actor[:64],
        action=action[:64],
        object_type=object_type,
        object_id=object_id,
        livemode=livemode,
        request_id=request_id,
        details=details or {},
        created_us=ctx.now_us(),
    )


def audit_view(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "object": "audit_entry",
        "actor": e.actor,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "request_id": e.request_id,
        "details": e.details or {},
        "created": e.created_us // 1_000_000,
        "livemode": e.livemode,
    }


class AuditLog:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def record(
        self,
        *,
        account_id: str,
        actor: str,
        action: str,
        object_type: str | None = None,
        object_id: str | None = None,
        livemode: bool = False,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        entry = audit_entry(
            self.ctx,
            account_id=account_id,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            livemode=livemode,
            request_id=request_id,
            details=details,
        )
        async with self.ctx.db.write() as s:
            s.add(entry)

    async def write(self, values: dict[str, Any]) -> None:
        """An entry (``AuditRequest.values``) in a transaction of its own."""
        async with self.ctx.db.write() as s:
            await _insert(s, values)

    async def list(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        object_id: str | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the account's entries, newest first."""
        return await page_of(
            self.ctx,
            AuditEntry,
            account_id,
            audit_view,
            AuditEntry.object_id == object_id if object_id else None,
            AuditEntry.action == action if action else None,
            AuditEntry.actor == actor if actor else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )
