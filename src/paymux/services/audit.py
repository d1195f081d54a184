"""The audit log: who (which key, ``admin`` or ``cli``) did what to which object, and when.

Entries are only ever added: the database refuses an UPDATE or a DELETE of ``audit_log``
(triggers, migration 0006). ``details`` holds a few plain facts (a status, an amount, a
key's redacted form), never a key, a secret or card data.
"""

from __future__ import annotations

from typing import Any

from paymux.domain.ids import new_id
from paymux.services.context import Context, page_of
from paymux.storage.models import AuditEntry

__all__ = ["AuditLog", "audit_entry", "audit_view"]


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
