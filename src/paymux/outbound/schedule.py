"""When a failed delivery is tried again (Standard Webhooks' example schedule, Stripe's
3 days): pure, so the tests and docs/webhooks.md state it independently."""

from __future__ import annotations

import random

__all__ = ["DEFAULT_SCHEDULE", "parse_schedule", "retry_delay"]

# Seconds before retry n (n = 1..11): 5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h; the
# last retry comes about 67.6 hours (2.8 days) after the first attempt.
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0) + (36000.0,) * 6


def parse_schedule(text: str) -> tuple[float, ...]:
    """PAYMUX_WEBHOOK_RETRY_SCHEDULE: comma-separated non-negative seconds."""
    delays = tuple(float(part) for part in text.split(",") if part.strip())
    if any(d < 0 for d in delays):
        raise ValueError("retry delays must not be negative")
    return delays


def retry_delay(
    attempts: int,
    schedule: tuple[float, ...],
    jitter: float,
    rand: random.Random | None = None,
) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones, or None when the
    schedule is spent (the delivery has failed). Jitter spreads retries of a burst of
    failures by up to +/- ``jitter`` of the delay, so they don't all come back at once."""
    if attempts < 1 or attempts > len(schedule):
        return None
    delay = schedule[attempts - 1]
    spread = (rand or random).uniform(-jitter, jitter) if jitter > 0 else 0.0
    return max(0.0, delay * (1.0 + spread))
