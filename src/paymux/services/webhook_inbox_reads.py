"""The inbound webhook inbox as one account sees it (the dashboard's Webhooks page): its own
rows (the events that came in on its connections), newest first, filtered by status and paged
in SQL with a cursor, so an account whose events are older than every other account's still
sees them. ``with_deployment`` adds the rows of deployment gateways (configured by environment
variables: their rows have no account), which belong to the default account's admins.

The index ``ix_webhook_inbox_account`` (account_id, status, received_us) and
``ix_webhook_inbox_account_received`` (account_id, received_us) (migration 0030) answer both
shapes without reading other accounts' rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select

from paymux.services.context import Context
from paymux.storage.models import WebhookInbox
from paymux.webhooks.inbound import inbox_view

__all__ = ["inbox_page"]


async def inbox_page(
    ctx: Context,
    account_id: str,
    *,
    with_deployment: bool = False,
    status: str | None = None,
    limit: int = 100,
    starting_after: str | None = None,
    inbox_id: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of the account's inbox rows (``inbox_view``), newest first, and whether more
    follow. ``starting_after``: the last row id of the page before (a row the account may not
    see, or that does not exist, gives an empty page). ``inbox_id``: that row only."""
    row = WebhookInbox
    owner = row.account_id == account_id
    if with_deployment:
        owner = or_(owner, row.account_id.is_(None))
    query = select(row).where(owner)
    if status:
        query = query.where(row.status == status)
    if inbox_id:
        query = query.where(row.id == inbox_id)
    async with ctx.db.read() as s:
        if starting_after:
            cursor = await s.scalar(select(row).where(row.id == starting_after, owner))
            if cursor is None:
                return [], False
            query = query.where(
                or_(
                    row.received_us < cursor.received_us,
                    and_(row.received_us == cursor.received_us, row.id > cursor.id),
                )
            )
        found = list(
            (await s.scalars(query.order_by(row.received_us.desc(), row.id).limit(limit + 1))).all()
        )
    return [inbox_view(r) for r in found[:limit]], len(found) > limit
