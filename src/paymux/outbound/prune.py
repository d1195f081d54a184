"""Pruning old delivery attempts: ``webhook_attempts`` gains a row per try of every delivery
and is read only to explain recent deliveries (``/v1/webhook_endpoints/{id}/attempts``), so
rows older than the retention (``paymux webhooks prune-attempts --older-than-days N``,
default PAYMUX_WEBHOOK_ATTEMPT_RETENTION_DAYS or 30; docs/webhooks.md) are deleted.

Deleted in batches of ``batch`` rows, each its own short transaction, so a large backlog
never holds one long write (SQLite's single writer, PostgreSQL's row locks). Deliveries and
events are kept: an event's deliveries say whether it was delivered, and resend works on
any event.
"""

from __future__ import annotations

from sqlalchemy import delete, select

from paymux.services.context import Context
from paymux.storage.models import WebhookAttempt

__all__ = ["DEFAULT_RETENTION_DAYS", "prune_attempts"]

DEFAULT_RETENTION_DAYS = 30.0


async def prune_attempts(ctx: Context, older_than_days: float, *, batch: int = 5000) -> int:
    """Delete the attempts made more than ``older_than_days`` ago. How many were deleted."""
    if older_than_days < 0:
        raise ValueError("the retention must not be negative")
    cutoff = ctx.now_us() - int(older_than_days * 86400 * 1_000_000)
    deleted = 0
    while True:
        async with ctx.db.write() as s:
            ids = list(
                (
                    await s.execute(
                        select(WebhookAttempt.id)
                        .where(WebhookAttempt.created_us < cutoff)
                        .limit(batch)
                    )
                ).scalars()
            )
            if not ids:
                return deleted
            await s.execute(
                delete(WebhookAttempt)
                .where(WebhookAttempt.id.in_(ids))
                .execution_options(synchronize_session=False)
            )
            deleted += len(ids)
