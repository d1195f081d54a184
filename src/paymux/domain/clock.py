"""Clocks. Services take one, so tests and (later) billing test clocks can move time."""

from __future__ import annotations

import time
from typing import Protocol, overload

__all__ = ["Clock", "FrozenClock", "SystemClock", "seconds"]


class Clock(Protocol):
    def now_us(self) -> int: ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


class FrozenClock:
    """A clock that moves only when told to."""

    def __init__(self, now_us: int) -> None:
        self._now = now_us

    def now_us(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1_000_000)


@overload
def seconds(us: int) -> int: ...
@overload
def seconds(us: None) -> None: ...
def seconds(us: int | None) -> int | None:
    """Microseconds since the epoch (how times are stored) as the unix seconds the API shows."""
    return None if us is None else us // 1_000_000
