"""Edge cases of paymux.domain.states, .ids and .clock found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
the exact refusal message, staying put, how random bytes become id characters, and the unit
arithmetic of the clocks.
"""

from __future__ import annotations

import importlib

import pytest

from paymux.domain.clock import FrozenClock, SystemClock, seconds
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.domain.states import check_operation, check_transition

ids_module = importlib.import_module("paymux.domain.ids")
clock_module = importlib.import_module("paymux.domain.clock")


# --- states -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "message"),
    [
        (
            "capture",
            "succeeded",
            "You cannot capture this PaymentIntent because it has a status of succeeded. "
            "Capture is allowed from: requires_capture.",
        ),
        (
            "cancel",
            "processing",
            "You cannot cancel this PaymentIntent because it has a status of processing. "
            "Cancel is allowed from: requires_action, requires_capture, "
            "requires_confirmation, requires_payment_method.",
        ),
        (
            "refund",
            "requires_capture",
            "You cannot refund this PaymentIntent because it has a status of "
            "requires_capture. Refund is allowed from: succeeded.",
        ),
    ],
)
def test_a_refused_operation_says_what_it_is_allowed_from(
    operation: str, status: str, message: str
) -> None:
    with pytest.raises(PaymuxError) as info:
        check_operation(operation, status)
    assert info.value.code == "payment_intent_unexpected_state"
    assert info.value.message == message
    assert info.value.to_dict()["status"] == status


def test_an_allowed_operation_returns_nothing() -> None:
    assert check_operation("capture", "requires_capture") is None


@pytest.mark.parametrize(
    "status",
    [
        "requires_payment_method",
        "requires_confirmation",
        "requires_action",
        "processing",
        "requires_capture",
        "succeeded",
        "canceled",
    ],
)
def test_staying_in_any_state_is_always_allowed(status: str) -> None:
    assert check_transition(status, status) is True


def test_a_listed_move_is_allowed_and_an_unlisted_one_is_not() -> None:
    assert check_transition("requires_capture", "succeeded") is True
    assert check_transition("succeeded", "canceled") is False


def test_an_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError):
        check_transition("requires_capture", "bogus")


# --- ids ----------------------------------------------------------------------------


class ScriptedBytes:
    """Stands in for os.urandom: hands out the given bytes and records each request."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.requests.append(n)
        out, self.data = self.data[:n], self.data[n:]
        return out


def test_bytes_map_onto_letters_and_digits_and_bytes_from_248_up_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0 -> "a", 25 -> "z", 26 -> "A", 51 -> "Z", 52 -> "0", 61 -> "9", 62 -> "a" (62 % 62),
    # 247 -> "9" (247 % 62 == 61); 248 and 255 are dropped.
    source = ScriptedBytes(bytes([0, 248, 25, 26, 255, 51, 52, 61, 62, 247, 1, 2, 3, 4]))
    monkeypatch.setattr(ids_module, "random_bytes", source)
    assert new_id("pi", 8) == "pi_azAZ09a9"


def test_one_request_asks_for_eight_bytes_more_than_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = ScriptedBytes(bytes(range(40)))
    monkeypatch.setattr(ids_module, "random_bytes", source)
    assert new_id("cus") == "cus_abcdefghijklmnopqrstuvwx"
    assert source.requests == [32]


def test_when_too_many_bytes_are_dropped_it_asks_again_for_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first 11 bytes (3 needed + 8) hold one usable byte; the rest come in a second call.
    source = ScriptedBytes(bytes([250] * 10 + [0] + [1, 2] + [0] * 20))
    monkeypatch.setattr(ids_module, "random_bytes", source)
    assert new_id("re", 3) == "re_abc"
    assert source.requests == [11, 10]


def test_a_first_draw_that_keeps_exactly_enough_bytes_is_the_only_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 3 needed + 8 asked for: 8 dropped, exactly 3 kept. No second request (the loop stops
    # at the length, not past it).
    source = ScriptedBytes(bytes([0, 250, 250, 1, 250, 250, 250, 2, 250, 250, 250]) + bytes(20))
    monkeypatch.setattr(ids_module, "random_bytes", source)
    assert new_id("re", 3) == "re_abc"
    assert source.requests == [11]


# --- clock ----------------------------------------------------------------------------


def test_the_system_clock_reads_whole_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_module.time, "time_ns", lambda: 1_700_000_000_123_456_789)
    now = SystemClock().now_us()
    assert now == 1_700_000_000_123_456
    assert type(now) is int


def test_a_frozen_clock_moves_by_the_seconds_it_is_told() -> None:
    clock = FrozenClock(5)
    assert clock.now_us() == 5
    clock.advance(1.5)
    assert clock.now_us() == 1_500_005
    clock.advance(2)
    assert clock.now_us() == 3_500_005


def test_seconds_drops_the_microseconds_and_keeps_none() -> None:
    assert seconds(1_999_999) == 1
    assert type(seconds(1_999_999)) is int
    assert seconds(2_000_000) == 2
    assert seconds(None) is None
