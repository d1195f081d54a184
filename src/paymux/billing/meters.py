"""Usage meters (Stripe's ``billing.meter``) and the aggregation invoices bill from.

A meter names the events it counts (``event_name``, unique per account and mode), the payload
keys that carry the customer and the value, and how a period's events add up: ``sum`` of
the values, ``count`` of the events, or ``last`` (the value of the latest event by
timestamp, ties broken by the order they were recorded). Only ``display_name`` changes after
creation; a meter is deactivated (it refuses new events; the recorded ones still count) and
reactivated.

``usage`` is the one aggregation: the invoices bill a metered price with it, and the event
summaries (``GET /v1/billing/meters/{id}/event_summaries``) show it. It is ONE query over
the ``ix_meter_events_usage`` index (account, mode, event name, customer, timestamp):
the meter's formula picks, in SQL, the branch that runs (a ``CASE`` evaluates only the
branch taken), so a period costs one range scan (``last``: one backward index step).

Events are recorded by billing/meter_ingest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.meter_ingest import MeterIngest, RawEvent
from paymux.domain.clock import seconds
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    page_of,
    request_livemode,
    scoped,
)
from paymux.storage.models import Meter, MeterEvent

__all__ = [
    "FORMULAS",
    "MeterParams",
    "MetersService",
    "meter_view",
    "usage_query",
]

Formula = Literal["sum", "count", "last"]
FORMULAS: tuple[Formula, ...] = ("sum", "count", "last")
Window = Literal["hour", "day"]
_WINDOW_S: dict[str, int] = {"hour": 3600, "day": 86_400}
_US = 1_000_000
# At most this many windows in one event summary list (a page is at most 100 of them).
_MAX_WINDOWS = 24 * 366



def meter_view(m: Meter) -> dict[str, Any]:
    """Stripe's ``billing.meter``."""
    return {
        "id": m.id,
        "object": "billing.meter",
        "created": seconds(m.created_us),
        "customer_mapping": {"event_payload_key": m.customer_mapping_key, "type": "by_id"},
        "default_aggregation": {"formula": m.aggregation},
        "display_name": m.display_name,
        "event_name": m.event_name,
        "event_time_window": None,
        "livemode": m.livemode,
        "status": m.status,
        "status_transitions": {"deactivated_at": seconds(m.deactivated_us)},
        "updated": seconds(m.updated_us),
        "value_settings": {"event_payload_key": m.value_key},
    }


def usage_query(
    account_id: str, livemode: bool, meter_id: str, customer_id: str, start_us: int, end_us: int
) -> Any:
    """The meter's aggregate over ``start_us <= timestamp < end_us``: one row (no row when the
    meter is not the account's), whose one column is the sum, the count or the last value
    (NULL for ``last`` over no event)."""
    e, m = MeterEvent, Meter
    window = and_(
        e.account_id == m.account_id,
        e.livemode == m.livemode,
        e.event_name == m.event_name,
        e.customer_id == customer_id,
        e.timestamp_us >= start_us,
        e.timestamp_us < end_us,
    )
    total = select(func.coalesce(func.sum(e.value), 0)).where(window).scalar_subquery()
    count = select(func.count()).where(window).scalar_subquery()
    last = (
        select(e.value)
        .where(window)
        .order_by(e.timestamp_us.desc(), e.created_us.desc())
        .limit(1)
        .scalar_subquery()
    )
    value = case((m.aggregation == "sum", total), (m.aggregation == "count", count), else_=last)
    return select(value).where(
        m.id == meter_id, m.account_id == account_id, m.livemode.is_(livemode)
    )


@dataclass
class MeterParams:
    display_name: str
    event_name: str
    formula: Formula
    customer_key: str = "stripe_customer_id"
    value_key: str = "value"


@dataclass(frozen=True, slots=True)
class SummaryRange:
    """``event_summaries``' parameters: the customer, the range (unix seconds, minute
    aligned, end exclusive) and the optional grouping window."""

    customer: str
    start_time: int
    end_time: int
    window: Window | None = None


class MetersService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ingest = MeterIngest(ctx.db)

    # -- meters -------------------------------------------------------------------------------
    async def create(self, account_id: str, p: MeterParams) -> dict[str, Any]:
        now = self.ctx.now_us()
        livemode = request_livemode()
        try:
            async with self.ctx.db.write() as s:
                taken = await s.execute(
                    scoped(Meter, account_id).where(Meter.event_name == p.event_name).limit(1)
                )
                if taken.first() is not None:
                    raise _event_name_taken(p.event_name)
                meter = Meter(
                    id=new_id("mtr"),
                    account_id=account_id,
                    livemode=livemode,
                    display_name=p.display_name,
                    event_name=p.event_name,
                    aggregation=p.formula,
                    customer_mapping_key=p.customer_key,
                    value_key=p.value_key,
                    status="active",
                    deactivated_us=None,
                    created_us=now,
                    updated_us=now,
                )
                s.add(meter)
                await s.flush()
                view = meter_view(meter)
                await emit(s, account_id, "billing.meter.created", view, now)
                return view
        except IntegrityError as exc:  # another request took the event name meanwhile
            raise _event_name_taken(p.event_name) from exc

    async def retrieve(self, account_id: str, meter_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return meter_view(await get_owned(s, Meter, meter_id, account_id))

    async def update(
        self, account_id: str, meter_id: str, display_name: str | None
    ) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            meter = await get_owned(s, Meter, meter_id, account_id, lock=True)
            if display_name is not None:
                meter.display_name = display_name
            meter.updated_us = now
            view = meter_view(meter)
            await emit(s, account_id, "billing.meter.updated", view, now)
            return view

    async def set_status(self, account_id: str, meter_id: str, active: bool) -> dict[str, Any]:
        """Deactivate (no new events; recorded ones still count) or reactivate a meter."""
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            meter = await get_owned(s, Meter, meter_id, account_id, lock=True)
            wanted = "active" if active else "inactive"
            if meter.status == wanted:
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"The meter is already {wanted}.",
                    param="id",
                )
            meter.status = wanted
            meter.deactivated_us = None if active else now
            meter.updated_us = now
            view = meter_view(meter)
            kind = "reactivated" if active else "deactivated"
            await emit(s, account_id, f"billing.meter.{kind}", view, now)
            return view

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        status: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Meter,
            account_id,
            meter_view,
            Meter.status == status if status else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    # -- events ---------------------------------------------------------------------------------
    async def record_events(
        self, account_id: str, events: list[RawEvent], *, answers: bool = True
    ) -> list[dict[str, Any]]:
        """Check and store a batch (all or nothing); the answers, the events as sent (none
        unless ``answers``: the stream answers ``{}``)."""
        livemode, now = request_livemode(), self.ctx.now_us()
        accepted = await self.ingest.record(account_id, livemode, events, now)
        return accepted.views(events, livemode, now) if answers else []

    # -- aggregation ----------------------------------------------------------------------------
    async def usage(
        self,
        s: AsyncSession,
        account_id: str,
        livemode: bool,
        meter_id: str,
        customer_id: str,
        start_us: int,
        end_us: int,
    ) -> int:
        """The meter's usage by the customer in ``[start_us, end_us)``: the sum of the
        values, the number of events, or the last value (0 without events). One query."""
        found = await s.execute(
            usage_query(account_id, livemode, meter_id, customer_id, start_us, end_us)
        )
        row = found.first()
        if row is None:
            raise PaymuxError.of("resource_missing", f"No such meter: '{meter_id}'", param="meter")
        return int(row[0] or 0)

    async def event_summaries(
        self,
        account_id: str,
        meter_id: str,
        r: SummaryRange,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Stripe's event summaries: one for the whole range, or one per hour or UTC day
        (newest first, a page at a time; a window without events shows 0)."""
        step = _check_range(r)
        starts = list(range(r.start_time, r.end_time, step))
        starts.reverse()
        if starting_after:
            starts = [t for t in starts if t < _summary_start(starting_after)]
        page_starts = starts[:limit]
        more = len(starts) > limit
        if ending_before:
            before = _summary_start(ending_before)
            earlier = [t for t in reversed(starts) if t > before]
            page_starts = list(reversed(earlier[:limit]))
            more = len(earlier) > limit
        livemode = request_livemode()
        async with self.ctx.db.read() as s:
            meter = await get_owned(s, Meter, meter_id, account_id)
            data = []
            for start in page_starts:
                value = await self.usage(
                    s,
                    account_id,
                    meter.livemode,
                    meter.id,
                    r.customer,
                    start * _US,
                    min(start + step, r.end_time) * _US,
                )
                data.append(
                    {
                        "id": f"mtrusg_{meter.id.removeprefix('mtr_')}_{start}",
                        "object": "billing.meter_event_summary",
                        "aggregated_value": value,
                        "end_time": min(start + step, r.end_time),
                        "livemode": livemode,
                        "meter": meter.id,
                        "start_time": start,
                    }
                )
        return data, more


def _event_name_taken(event_name: str) -> PaymuxError:
    return PaymuxError.of(
        "resource_already_exists",
        f"A meter with event_name '{event_name}' already exists.",
        param="event_name",
    )


def _check_range(r: SummaryRange) -> int:
    """The step between summaries (the whole range without a window); 400 for a range
    Stripe refuses: not minute aligned (hour or UTC day aligned with a window), empty."""
    for name, value in (("start_time", r.start_time), ("end_time", r.end_time)):
        if value % 60:
            raise PaymuxError.of(
                "parameter_invalid", f"{name} must be aligned with a minute boundary.", param=name
            )
    if r.end_time <= r.start_time:
        raise PaymuxError.of(
            "parameter_invalid", "end_time must be after start_time.", param="end_time"
        )
    if r.window is None:
        return r.end_time - r.start_time
    step = _WINDOW_S[r.window]
    for name, value in (("start_time", r.start_time), ("end_time", r.end_time)):
        if value % step:
            raise PaymuxError.of(
                "parameter_invalid",
                f"{name} must be aligned with a {r.window} boundary (UTC) for "
                f"value_grouping_window={r.window}.",
                param=name,
            )
    if (r.end_time - r.start_time) // step > _MAX_WINDOWS:
        raise PaymuxError.of(
            "parameter_invalid",
            f"At most {_MAX_WINDOWS} windows: narrow the range.",
            param="end_time",
        )
    return step


def _summary_start(summary_id: str) -> int:
    tail = summary_id.rpartition("_")[2]
    if not summary_id.startswith("mtrusg_") or not tail.isdigit():
        raise PaymuxError.of(
            "resource_missing", "No such billing.meter_event_summary.", param="starting_after"
        )
    return int(tail)
