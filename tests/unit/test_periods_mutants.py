"""Edge cases of paymux.billing.rules.periods found by mutation testing.

Each test pins which period holds an instant, with the period's ends written out from the
calendar: multi-year and multi-month counts far from the anchor (where the month estimate
matters), instants just before, on and after a clamped boundary, and day and week counts.
Example-based on purpose: one mutant of the old search loop made the hypothesis tests of
tests/unit/billing/test_billing_periods.py run for more than 11 minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from paymux.billing.rules.periods import Interval, next_boundary, period_containing

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us(*parts: int) -> int:
    """Microseconds since the epoch of a UTC wall-clock time, exactly (no float)."""
    return (datetime(*parts, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("anchor", "interval", "count", "at", "start", "end"),
    [
        # monthly from Jan 31 10:00 (2024 is a leap year)
        ((2024, 1, 31, 10), "month", 1, (2024, 3, 31, 10), (2024, 3, 31, 10), (2024, 4, 30, 10)),
        ((2024, 1, 31, 10), "month", 1, (2024, 3, 15), (2024, 2, 29, 10), (2024, 3, 31, 10)),
        ((2024, 1, 31, 10), "month", 1, (2024, 2, 29, 10), (2024, 2, 29, 10), (2024, 3, 31, 10)),
        ((2024, 1, 31, 10), "month", 1, (2024, 2, 29, 9), (2024, 1, 31, 10), (2024, 2, 29, 10)),
        # thirty years after the anchor
        ((2000, 1, 15, 8), "month", 1, (2030, 6, 20), (2030, 6, 15, 8), (2030, 7, 15, 8)),
        ((2000, 1, 15, 8), "month", 1, (2030, 6, 10), (2030, 5, 15, 8), (2030, 6, 15, 8)),
        # quarterly from Nov 30: Feb 29 2024, May 30, Aug 30, Nov 30, Feb 28 2025, May 30
        ((2023, 11, 30), "month", 3, (2025, 2, 28, 12), (2025, 2, 28), (2025, 5, 30)),
        ((2023, 11, 30), "month", 3, (2025, 2, 27), (2024, 11, 30), (2025, 2, 28)),
        # yearly from Feb 29 2020
        ((2020, 2, 29), "year", 1, (2027, 3, 1), (2027, 2, 28), (2028, 2, 29)),
        ((2020, 2, 29), "year", 1, (2023, 1, 10), (2022, 2, 28), (2023, 2, 28)),
        ((2020, 2, 29), "year", 1, (2017, 6, 1), (2017, 2, 28), (2018, 2, 28)),
        # every two years from Jul 15 2021
        ((2021, 7, 15), "year", 2, (2030, 1, 1), (2029, 7, 15), (2031, 7, 15)),
        ((2021, 7, 15), "year", 2, (2029, 7, 15), (2029, 7, 15), (2031, 7, 15)),
        # every three days, every two weeks (2024-01-01 is a Monday)
        ((2024, 1, 1, 6), "day", 3, (2024, 1, 10, 5), (2024, 1, 7, 6), (2024, 1, 10, 6)),
        ((2024, 1, 1, 6), "day", 3, (2024, 1, 10, 6), (2024, 1, 10, 6), (2024, 1, 13, 6)),
        ((2024, 1, 1), "week", 2, (2024, 2, 1), (2024, 1, 29), (2024, 2, 12)),
        ((2024, 1, 1), "week", 1, (2024, 2, 1), (2024, 1, 29), (2024, 2, 5)),
        ((2024, 1, 1), "day", 1, (2023, 12, 30, 12), (2023, 12, 30), (2023, 12, 31)),
    ],
)
def test_the_period_holding_an_instant(
    anchor: tuple[int, ...],
    interval: Interval,
    count: int,
    at: tuple[int, ...],
    start: tuple[int, ...],
    end: tuple[int, ...],
) -> None:
    assert period_containing(us(*anchor), interval, count, us(*at)) == (us(*start), us(*end))


def test_one_microsecond_before_a_clamped_boundary_is_still_the_earlier_period() -> None:
    anchor = us(2023, 1, 31, 10)
    boundary = us(2023, 2, 28, 10)  # Jan 31 clamped in a common year
    assert period_containing(anchor, "month", 1, boundary - 1) == (anchor, boundary)
    assert next_boundary(anchor, "month", 1, boundary - 1) == boundary
    assert next_boundary(anchor, "month", 1, boundary) == us(2023, 3, 31, 10)
