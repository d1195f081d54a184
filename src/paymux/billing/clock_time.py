"""What time it is for a billing object: its test clock's frozen time when its customer lives
on a clock (test mode only), else the wall clock. Every billing step takes its time from here,
so a clock's customers see a year pass in seconds while everyone else sees real time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.services.context import Context
from paymux.storage.models import Customer, TestClock

__all__ = ["clock_now", "now_for"]


async def clock_now(s: AsyncSession, ctx: Context, clock_id: str | None) -> int:
    """The clock's frozen time (the wall's for None or a deleted clock)."""
    if clock_id is None:
        return ctx.now_us()
    frozen = (
        await s.execute(
            select(TestClock.frozen_time_us).where(
                TestClock.id == clock_id, TestClock.deleted.is_(False)
            )
        )
    ).scalar_one_or_none()
    return ctx.now_us() if frozen is None else int(frozen)


async def now_for(s: AsyncSession, ctx: Context, account_id: str, customer_id: str) -> int:
    """The time of a customer: its clock's when it lives on one."""
    clock_id = (
        await s.execute(
            select(Customer.test_clock_id).where(
                Customer.id == customer_id, Customer.account_id == account_id
            )
        )
    ).scalar_one_or_none()
    return await clock_now(s, ctx, clock_id)
