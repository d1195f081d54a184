"""What time it is for a billing object: its test clock's frozen time when its customer lives
on a clock (test mode only), else the wall clock. Every billing step takes its time from here,
so a clock's customers see a year pass in seconds while everyone else sees real time."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.services.context import Context
from paymux.storage.models import Customer, TestClock

__all__ = ["clock_now", "now_for"]

# A customer's clock, read by the customer's id alone (its primary key), the account compared
# on the row: PostgreSQL keeps a generic plan for a statement asyncpg prepared once it has run
# five times, and the plan kept for ``id = $1 AND account_id = $2`` on a table without
# statistics walked every customer of the account through (account_id, created_us)
# (tests/integration/test_key_lookup_plans.py). Every billing step of a customer reads it.
_CUSTOMER_CLOCK = select(Customer.account_id, Customer.test_clock_id).where(
    Customer.id == bindparam("customer_id")
)


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
    row = (await s.execute(_CUSTOMER_CLOCK, {"customer_id": customer_id})).one_or_none()
    clock_id = row.test_clock_id if row is not None and row.account_id == account_id else None
    return await clock_now(s, ctx, clock_id)
