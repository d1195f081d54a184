"""Billing periods: calendar edges with literal dates, and no gap or overlap over 10 years."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paymux.billing.rules.periods import (
    boundary,
    check_interval,
    next_boundary,
    period_containing,
)


def us(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       micro: int = 0) -> int:
    """A UTC wall time as int microseconds, through datetime (not the code under test)."""
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + micro


def date_of(at_us: int) -> tuple[int, int, int]:
    moment = datetime.fromtimestamp(at_us // 1_000_000, tz=UTC)
    return (moment.year, moment.month, moment.day)


# -- month ends: the anchor's day is kept, clamped, never drifting --------------------------


def test_jan_31_in_a_common_year_goes_to_feb_28_then_back_to_31() -> None:
    anchor = us(2025, 1, 31, 13, 45, 30, 123_456)
    expected = [
        us(2025, 1, 31, 13, 45, 30, 123_456),
        us(2025, 2, 28, 13, 45, 30, 123_456),
        us(2025, 3, 31, 13, 45, 30, 123_456),
        us(2025, 4, 30, 13, 45, 30, 123_456),
        us(2025, 5, 31, 13, 45, 30, 123_456),
        us(2025, 6, 30, 13, 45, 30, 123_456),
        us(2025, 7, 31, 13, 45, 30, 123_456),
    ]
    assert [boundary(anchor, "month", 1, n) for n in range(7)] == expected


def test_jan_31_in_a_leap_year_goes_to_feb_29_then_mar_31() -> None:
    anchor = us(2024, 1, 31, 9)
    assert boundary(anchor, "month", 1, 1) == us(2024, 2, 29, 9)
    assert boundary(anchor, "month", 1, 2) == us(2024, 3, 31, 9)
    assert boundary(anchor, "month", 1, 13) == us(2025, 2, 28, 9)


def test_an_anchor_on_the_30th_and_29th() -> None:
    assert boundary(us(2025, 1, 30), "month", 1, 1) == us(2025, 2, 28)
    assert boundary(us(2025, 1, 30), "month", 1, 2) == us(2025, 3, 30)
    assert boundary(us(2024, 1, 29), "month", 1, 1) == us(2024, 2, 29)
    assert boundary(us(2025, 1, 29), "month", 1, 1) == us(2025, 2, 28)
    assert boundary(us(2025, 1, 29), "month", 1, 2) == us(2025, 3, 29)


def test_a_mid_month_anchor_is_never_clamped() -> None:
    anchor = us(2025, 1, 15, 23, 59, 59, 999_999)
    assert boundary(anchor, "month", 1, 1) == us(2025, 2, 15, 23, 59, 59, 999_999)
    assert boundary(anchor, "month", 1, 12) == us(2026, 1, 15, 23, 59, 59, 999_999)


def test_negative_n_walks_back_from_the_anchor() -> None:
    anchor = us(2025, 3, 31, 12)
    assert boundary(anchor, "month", 1, -1) == us(2025, 2, 28, 12)
    assert boundary(anchor, "month", 1, -2) == us(2025, 1, 31, 12)
    assert boundary(anchor, "month", 1, -3) == us(2024, 12, 31, 12)
    assert boundary(anchor, "month", 1, -13) == us(2024, 2, 29, 12)
    assert boundary(us(2025, 1, 10), "week", 1, -1) == us(2025, 1, 3)
    assert boundary(us(2025, 1, 10), "day", 1, -10) == us(2024, 12, 31)


def test_yearly_from_feb_29_clamps_in_common_years_and_returns_in_leap_years() -> None:
    anchor = us(2024, 2, 29, 6)
    assert boundary(anchor, "year", 1, 1) == us(2025, 2, 28, 6)
    assert boundary(anchor, "year", 1, 2) == us(2026, 2, 28, 6)
    assert boundary(anchor, "year", 1, 4) == us(2028, 2, 29, 6)
    assert boundary(anchor, "year", 1, -1) == us(2023, 2, 28, 6)
    assert boundary(anchor, "year", 1, -4) == us(2020, 2, 29, 6)
    # 2100 is not a leap year (divisible by 100, not by 400); 2000 was.
    assert boundary(us(2096, 2, 29), "year", 1, 4) == us(2100, 2, 28)
    assert boundary(us(2096, 2, 29), "year", 2, 2) == us(2100, 2, 28)
    assert boundary(us(2004, 2, 29), "year", 1, -4) == us(2000, 2, 29)


def test_interval_count_three_months() -> None:
    anchor = us(2024, 11, 30)
    assert boundary(anchor, "month", 3, 1) == us(2025, 2, 28)
    assert boundary(anchor, "month", 3, 2) == us(2025, 5, 30)
    assert boundary(anchor, "month", 3, -1) == us(2024, 8, 30)
    jan31 = us(2025, 1, 31)
    assert [boundary(jan31, "month", 3, n) for n in range(1, 5)] == [
        us(2025, 4, 30), us(2025, 7, 31), us(2025, 10, 31), us(2026, 1, 31)
    ]


def test_weekly_and_daily_are_fixed_lengths() -> None:
    anchor = us(2025, 1, 1, 10)
    assert boundary(anchor, "week", 1, 1) == us(2025, 1, 8, 10)
    assert boundary(anchor, "week", 2, 1) == us(2025, 1, 15, 10)
    assert boundary(anchor, "week", 2, -1) == us(2024, 12, 18, 10)
    assert boundary(anchor, "day", 1, 1) == us(2025, 1, 2, 10)
    assert boundary(anchor, "day", 3, 2) == us(2025, 1, 7, 10)
    # Daily across a leap day: 2024 has 366 days.
    assert boundary(us(2024, 1, 1), "day", 1, 365) == us(2024, 12, 31)
    assert boundary(us(2024, 1, 1), "day", 1, 366) == us(2025, 1, 1)
    assert boundary(us(2024, 2, 28), "day", 1, 1) == us(2024, 2, 29)


def test_n_zero_is_the_anchor() -> None:
    anchor = us(2025, 5, 31, 1, 2, 3, 4)
    for interval in ("day", "week", "month", "year"):
        assert boundary(anchor, interval, 2, 0) == anchor  # type: ignore[arg-type]


def test_anchors_before_the_epoch_work() -> None:
    anchor = us(1969, 12, 31, 23, 0, 0)
    assert anchor < 0
    assert boundary(anchor, "month", 1, 2) == us(1970, 2, 28, 23)
    assert period_containing(anchor, "day", 1, us(1970, 1, 1, 5)) == (
        us(1969, 12, 31, 23), us(1970, 1, 1, 23)
    )


# -- period_containing / next_boundary: half-open periods ------------------------------------


def test_period_containing_is_half_open_at_exactly_the_boundary() -> None:
    anchor = us(2025, 1, 31, 12)
    feb28 = us(2025, 2, 28, 12)
    mar31 = us(2025, 3, 31, 12)
    assert period_containing(anchor, "month", 1, feb28) == (feb28, mar31)
    assert period_containing(anchor, "month", 1, feb28 - 1) == (anchor, feb28)
    assert period_containing(anchor, "month", 1, mar31 - 1) == (feb28, mar31)
    assert period_containing(anchor, "month", 1, anchor) == (anchor, feb28)


def test_period_containing_before_the_anchor() -> None:
    anchor = us(2025, 3, 31)
    assert period_containing(anchor, "month", 1, us(2025, 3, 1)) == (us(2025, 2, 28), anchor)
    assert period_containing(anchor, "month", 1, anchor - 1) == (us(2025, 2, 28), anchor)
    assert period_containing(anchor, "year", 1, us(2020, 7, 1)) == (
        us(2020, 3, 31), us(2021, 3, 31)
    )
    assert period_containing(anchor, "week", 1, anchor - 1) == (us(2025, 3, 24), anchor)


def test_period_containing_with_a_count() -> None:
    anchor = us(2025, 1, 31)
    assert period_containing(anchor, "month", 3, us(2025, 5, 1)) == (
        us(2025, 4, 30), us(2025, 7, 31)
    )
    assert period_containing(anchor, "day", 10, us(2025, 2, 10)) == (
        us(2025, 2, 10), us(2025, 2, 20)
    )
    assert period_containing(anchor, "day", 10, us(2025, 2, 10) - 1) == (
        us(2025, 1, 31), us(2025, 2, 10)
    )


def test_next_boundary_is_strictly_after() -> None:
    anchor = us(2024, 1, 31)
    feb29 = us(2024, 2, 29)
    assert next_boundary(anchor, "month", 1, anchor) == feb29
    assert next_boundary(anchor, "month", 1, feb29 - 1) == feb29
    assert next_boundary(anchor, "month", 1, feb29) == us(2024, 3, 31)
    assert next_boundary(anchor, "month", 1, anchor - 1) == anchor
    assert next_boundary(anchor, "week", 1, anchor) == us(2024, 2, 7)


# -- interval limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "count", "valid"),
    [
        ("day", 1, True), ("day", 1095, True), ("day", 1096, False),
        ("week", 156, True), ("week", 157, False),
        ("month", 1, True), ("month", 36, True), ("month", 37, False),
        ("year", 3, True), ("year", 4, False),
        ("month", 0, False), ("month", -1, False), ("year", True, False),
        ("hour", 1, False), ("Month", 1, False), ("", 1, False),
    ],
)
def test_check_interval(interval: str, count: int, valid: bool) -> None:
    message = check_interval(interval, count)
    if valid:
        assert message is None
    else:
        assert isinstance(message, str) and message


def test_the_limit_message_names_the_limit() -> None:
    assert "36" in (check_interval("month", 37) or "")
    assert "three years" in (check_interval("week", 157) or "")


def test_bad_interval_or_count_raises() -> None:
    with pytest.raises(ValueError):
        boundary(0, "hour", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        boundary(0, "month", 0, 1)
    with pytest.raises(ValueError):
        period_containing(0, "day", -2, 5)


# -- properties: 10 years of advancing -------------------------------------------------------

_TEN_YEARS_US = 3653 * 86_400 * 1_000_000
_MAX_COUNT = {"day": 40, "week": 10, "month": 36, "year": 3}


@st.composite
def _schedules(draw: st.DrawFn) -> tuple[int, str, int]:
    anchor = draw(st.integers(us(1990, 1, 1), us(2060, 1, 1)))
    interval = draw(st.sampled_from(["day", "week", "month", "year"]))
    count = draw(st.integers(1, _MAX_COUNT[interval]))
    return anchor, interval, count


@settings(max_examples=40, deadline=None)
@given(_schedules(), st.integers(-3, 0))
def test_ten_years_of_periods_have_no_gap_and_no_overlap(
    schedule: tuple[int, str, int], first: int
) -> None:
    anchor, interval, count = schedule
    n = first
    start = boundary(anchor, interval, count, n)  # type: ignore[arg-type]
    while start < anchor + _TEN_YEARS_US:
        end = boundary(anchor, interval, count, n + 1)  # type: ignore[arg-type]
        assert end > start  # strictly increasing
        # Each period is found from its first and its last microsecond, and only there.
        assert period_containing(anchor, interval, count, start) == (start, end)  # type: ignore[arg-type]
        assert period_containing(anchor, interval, count, end - 1) == (start, end)  # type: ignore[arg-type]
        # The next period starts exactly where this one ends: no gap, no overlap.
        assert period_containing(anchor, interval, count, end)[0] == end  # type: ignore[arg-type]
        assert next_boundary(anchor, interval, count, start) == end  # type: ignore[arg-type]
        assert next_boundary(anchor, interval, count, end - 1) == end  # type: ignore[arg-type]
        start, n = end, n + 1


@settings(max_examples=100, deadline=None)
@given(_schedules(), st.integers(-200, 400))
def test_month_boundaries_keep_the_anchor_day_clamped_and_the_time(
    schedule: tuple[int, str, int], n: int
) -> None:
    anchor, interval, count = schedule
    if interval not in ("month", "year"):
        interval, count = "month", 1
    at = boundary(anchor, interval, count, n)  # type: ignore[arg-type]
    a = datetime.fromtimestamp(anchor // 1_000_000, tz=UTC)
    b = datetime.fromtimestamp(at // 1_000_000, tz=UTC)
    months = n * count * (12 if interval == "year" else 1)
    assert (b.year * 12 + b.month - 1) - (a.year * 12 + a.month - 1) == months
    assert b.day == min(a.day, calendar.monthrange(b.year, b.month)[1])
    assert (b.hour, b.minute, b.second) == (a.hour, a.minute, a.second)
    assert at % 1_000_000 == anchor % 1_000_000


@settings(max_examples=100, deadline=None)
@given(_schedules(), st.integers(0, _TEN_YEARS_US))
def test_any_instant_lies_in_exactly_one_period(schedule: tuple[int, str, int], offset: int) -> None:
    anchor, interval, count = schedule
    at = anchor - _TEN_YEARS_US // 2 + offset
    start, end = period_containing(anchor, interval, count, at)  # type: ignore[arg-type]
    assert start <= at < end
    assert next_boundary(anchor, interval, count, at) == end  # type: ignore[arg-type]
    assert period_containing(anchor, interval, count, start - 1)[1] == start  # type: ignore[arg-type]


def test_boundaries_outside_the_calendar_are_refused() -> None:
    assert boundary(us(9999, 12, 1), "month", 1, 0) == us(9999, 12, 1)
    with pytest.raises(ValueError):
        boundary(us(9999, 12, 1), "month", 1, 1)
    with pytest.raises(ValueError):
        boundary(us(1, 1, 31), "month", 1, -1)
