"""Billing periods: where each period of a subscription starts and ends.

Every boundary is computed from the billing cycle anchor, never from the previous boundary, so
a clamped month end does not drift: an anchor on Jan 31 gives Feb 28 (Feb 29 in a leap year),
then Mar 31, Apr 30, May 31 -- the anchor's day of month and time of day are kept, clamped to
the last day of a shorter month. A yearly anchor on Feb 29 gives Feb 28 in common years and
Feb 29 again in leap years. Days and weeks are fixed lengths in UTC (no DST: UTC has none).

Times are int microseconds since the epoch, UTC (proleptic Gregorian, via ``datetime``'s
ordinal days so no float is involved).
"""

from __future__ import annotations

import calendar
from datetime import date
from typing import Literal, get_args

__all__ = [
    "INTERVALS",
    "MAX_INTERVAL_COUNT",
    "Interval",
    "boundary",
    "check_interval",
    "next_boundary",
    "period_containing",
]

Interval = Literal["day", "week", "month", "year"]
INTERVALS: tuple[str, ...] = get_args(Interval)

#: Stripe's limit: a period may be at most three years long.
MAX_INTERVAL_COUNT: dict[str, int] = {"day": 1095, "week": 156, "month": 36, "year": 3}

_US_PER_DAY = 86_400 * 1_000_000
_US_PER_WEEK = 7 * _US_PER_DAY
# date.toordinal() of 1970-01-01: day numbers relative to the Unix epoch.
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def check_interval(interval: str, count: int) -> str | None:
    """A message when ``interval``/``count`` is not a valid recurring interval, else None.

    Stripe caps a period at three years: day*1095, week*156, month*36, year*3.
    """
    if interval not in MAX_INTERVAL_COUNT:
        return f"interval must be one of day, week, month, year (got {interval!r})."
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return "interval_count must be a positive integer."
    limit = MAX_INTERVAL_COUNT[interval]
    if count > limit:
        return (
            f"The maximum billing period is three years: interval_count may be at most "
            f"{limit} for interval {interval!r} (got {count})."
        )
    return None


def _split(at_us: int) -> tuple[date, int]:
    """(UTC calendar date, microseconds since that date's midnight)."""
    days, time_us = divmod(at_us, _US_PER_DAY)
    return date.fromordinal(_EPOCH_ORDINAL + days), time_us


def _join(day: date, time_us: int) -> int:
    return (day.toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY + time_us


def _add_months(anchor_us: int, months: int) -> int:
    """The anchor moved by ``months`` calendar months, its day clamped to the month's end."""
    day, time_us = _split(anchor_us)
    year, month0 = divmod(day.year * 12 + (day.month - 1) + months, 12)
    if not 1 <= year <= 9999:
        raise ValueError("billing period boundary out of the supported range (years 1-9999)")
    last = calendar.monthrange(year, month0 + 1)[1]
    return _join(date(year, month0 + 1, min(day.day, last)), time_us)


def _check(interval: str, count: int) -> None:
    if interval not in MAX_INTERVAL_COUNT:
        raise ValueError(f"unknown interval {interval!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("interval count must be a positive integer")


def boundary(anchor_us: int, interval: Interval, count: int, n: int) -> int:
    """The ``n``-th period boundary from the anchor (``n == 0`` is the anchor; may be negative).

    Computed from the anchor as ``anchor + n*count`` units, never by stepping from the previous
    boundary, so month-end clamping never accumulates (Jan 31 -> Feb 28 -> Mar 31).
    """
    _check(interval, count)
    if interval == "day":
        return anchor_us + n * count * _US_PER_DAY
    if interval == "week":
        return anchor_us + n * count * _US_PER_WEEK
    if interval == "month":
        return _add_months(anchor_us, n * count)
    return _add_months(anchor_us, n * count * 12)


def _index_at_or_before(anchor_us: int, interval: Interval, count: int, at_us: int) -> int:
    """The largest k with boundary(k) <= at_us."""
    _check(interval, count)
    if interval in ("day", "week"):
        step = count * (_US_PER_DAY if interval == "day" else _US_PER_WEEK)
        return (at_us - anchor_us) // step
    months_per = count * (12 if interval == "year" else 1)
    a_day, _ = _split(anchor_us)
    t_day, _ = _split(at_us)
    diff = (t_day.year - a_day.year) * 12 + (t_day.month - a_day.month)
    # Boundary k falls in calendar month a + k*months_per (clamping keeps it in its month), so
    # boundary(k) sits in ``at``'s month or earlier and boundary(k+1) in a later month: the
    # answer is k, or k - 1 when boundary(k) is later in that same month than ``at``.
    k = diff // months_per
    if boundary(anchor_us, interval, count, k) > at_us:
        k -= 1
    return k


def period_containing(
    anchor_us: int, interval: Interval, count: int, at_us: int
) -> tuple[int, int]:
    """(start, end) of the period holding ``at_us``: boundary(k) == start <= at_us < end ==
    boundary(k+1). Periods are half-open, so a time exactly on a boundary starts a period."""
    k = _index_at_or_before(anchor_us, interval, count, at_us)
    return boundary(anchor_us, interval, count, k), boundary(anchor_us, interval, count, k + 1)


def next_boundary(anchor_us: int, interval: Interval, count: int, after_us: int) -> int:
    """The first boundary strictly after ``after_us`` (a boundary at ``after_us`` is skipped)."""
    return period_containing(anchor_us, interval, count, after_us)[1]
