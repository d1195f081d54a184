"""What every service needs: the database, the gateways, settings, a clock; and small helpers
shared by all of them (events, lookups scoped to an account, cursor pagination)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.config import Settings
from paymux.domain.clock import Clock, SystemClock
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.gateways.base import Gateway
from paymux.gateways.registry import GatewayRegistry
from paymux.storage.db import Database
from paymux.storage.models import Event

__all__ = ["Context", "emit", "get_owned", "page_of", "paginate", "scoped"]

T = TypeVar("T")


@dataclass
class Context:
    db: Database
    gateways: GatewayRegistry
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)

    def now_us(self) -> int:
        return self.clock.now_us()

    def gateway(self, name: str | None, *, param: str = "gateway") -> Gateway:
        key = name or self.gateways.default
        gateway = self.gateways.get(key)
        if gateway is None:
            raise PaymuxError.of(
                "gateway_unknown", f"No gateway named {key!r} is configured.", param=param
            )
        return gateway


async def emit(
    session: AsyncSession, account_id: str, type_: str, obj: dict[str, Any], now_us: int
) -> Event:
    """Write an event in the caller's transaction (the outbox)."""
    event = Event(
        id=new_id("evt"),
        account_id=account_id,
        type=type_,
        object_id=str(obj["id"]),
        data=obj,
        created_us=now_us,
    )
    session.add(event)
    return event


async def get_owned(
    session: AsyncSession,
    model: type[T],
    object_id: str,
    account_id: str,
    *,
    param: str = "id",
    include_deleted: bool = False,
) -> T:
    """The object if it exists and belongs to the account; 404 otherwise (never a leak).

    A deleted object (a customer) is found only when asked for with ``include_deleted``."""
    obj = await session.get(model, object_id)
    if (
        obj is None
        or getattr(obj, "account_id", None) != account_id
        or (getattr(obj, "deleted", False) and not include_deleted)
    ):
        kind = model.__name__.replace("PaymentIntent", "payment_intent").lower()
        raise PaymuxError.of("resource_missing", f"No such {kind}: '{object_id}'", param=param)
    return obj


async def paginate(
    session: AsyncSession,
    model: Any,
    query: Select[Any],
    account_id: str,
    *,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
) -> tuple[list[Any], bool]:
    """Newest first, by (created_us, id); cursors are object ids."""
    key = tuple_(model.created_us, model.id)
    if starting_after:
        cursor = await get_owned(session, model, starting_after, account_id, param="starting_after")
        query = query.where(key < tuple_(cursor.created_us, cursor.id))
    if ending_before:
        cursor = await get_owned(session, model, ending_before, account_id, param="ending_before")
        query = query.where(key > tuple_(cursor.created_us, cursor.id))
        rows = list(
            (
                await session.execute(
                    query.order_by(model.created_us.asc(), model.id.asc()).limit(limit + 1)
                )
            ).scalars()
        )
        has_more = len(rows) > limit
        return list(reversed(rows[:limit])), has_more
    rows = list(
        (
            await session.execute(
                query.order_by(model.created_us.desc(), model.id.desc()).limit(limit + 1)
            )
        ).scalars()
    )
    return rows[:limit], len(rows) > limit


async def page_of(
    ctx: Context,
    model: Any,
    account_id: str,
    view: Callable[[Any], dict[str, Any]],
    *filters: Any,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
) -> tuple[list[dict[str, Any]], bool]:
    """One page of an account's objects, newest first, as API views. ``filters`` are SQL
    clauses; None entries (an absent query parameter) are skipped."""
    query = scoped(model, account_id).where(*(f for f in filters if f is not None))
    async with ctx.db.read() as s:
        rows, more = await paginate(
            s,
            model,
            query,
            account_id,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )
        return [view(row) for row in rows], more


def scoped(model: Any, account_id: str) -> Select[Any]:
    return select(model).where(model.account_id == account_id)
