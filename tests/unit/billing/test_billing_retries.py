"""Dunning schedule: 8 tries within 2 weeks, hard declines never retried, the end policy."""

from __future__ import annotations

import pytest

from paymux.billing.rules.retries import (
    DEFAULT_RETRY_DAYS,
    HARD_DECLINES,
    check_schedule,
    exhausted_trigger,
    next_retry_us,
    retry_window_end_us,
    status_after_exhausted,
)
from paymux.billing.rules.states import next_subscription_status
from paymux.domain.errors import DECLINE_CODES

DAY = 86_400 * 1_000_000
T0 = 1_767_225_600 * 1_000_000  # 2026-01-01T00:00:00Z, the renewal that failed


@pytest.mark.parametrize(
    ("failures", "at"),
    [
        (1, T0 + 1 * DAY),
        (2, T0 + 2 * DAY),
        (3, T0 + 3 * DAY),
        (4, T0 + 5 * DAY),
        (5, T0 + 7 * DAY),
        (6, T0 + 10 * DAY),
        (7, T0 + 14 * DAY),
    ],
)
def test_the_default_schedule(failures: int, at: int) -> None:
    assert next_retry_us(failures, T0) == at


def test_eight_tries_within_two_weeks_then_none() -> None:
    assert len(DEFAULT_RETRY_DAYS) + 1 == 8  # the renewal + 7 retries
    assert DEFAULT_RETRY_DAYS[-1] == 14
    assert next_retry_us(8, T0) is None
    assert next_retry_us(9, T0) is None
    assert retry_window_end_us(T0) == T0 + 14 * DAY


@pytest.mark.parametrize(
    "code",
    [
        "lost_card", "stolen_card", "pickup_card", "fraudulent", "restricted_card",
        "merchant_blacklist", "invalid_account", "card_not_supported", "currency_not_supported",
        "security_violation", "transaction_not_allowed", "do_not_try_again",
        "revocation_of_authorization", "revocation_of_all_authorizations", "stop_payment_order",
        "incorrect_number", "authentication_required",
    ],
)
def test_hard_declines_are_never_retried(code: str) -> None:
    assert code in HARD_DECLINES
    assert next_retry_us(1, T0, decline_code=code) is None
    # Ours: each is a decline code of the taxonomy that is marked not retryable.
    assert code in DECLINE_CODES
    assert DECLINE_CODES[code].retryable is False


def test_the_hard_decline_set_is_exactly_the_listed_codes() -> None:
    assert len(HARD_DECLINES) == 17


@pytest.mark.parametrize(
    "code",
    ["insufficient_funds", "generic_decline", "do_not_honor", "try_again_later",
     "processing_error", "expired_card", "card_velocity_exceeded", None, "some_future_code"],
)
def test_soft_declines_are_retried(code: str | None) -> None:
    assert code not in HARD_DECLINES
    assert next_retry_us(1, T0, decline_code=code) == T0 + DAY
    assert next_retry_us(7, T0, decline_code=code) == T0 + 14 * DAY


def test_a_custom_schedule_with_fractions_of_days() -> None:
    schedule = (0.5, 1, 2.25)
    assert next_retry_us(1, T0, schedule) == T0 + DAY // 2
    assert next_retry_us(2, T0, schedule) == T0 + DAY
    assert next_retry_us(3, T0, schedule) == T0 + 2 * DAY + DAY // 4
    assert next_retry_us(4, T0, schedule) is None
    assert next_retry_us(1, T0, (0.1,)) == T0 + 8_640_000_000  # exactly 2.4 hours
    assert retry_window_end_us(T0, schedule) == T0 + 2 * DAY + DAY // 4


def test_an_empty_schedule_never_retries() -> None:
    assert next_retry_us(1, T0, ()) is None
    assert retry_window_end_us(T0, ()) == T0


@pytest.mark.parametrize("failures", [0, -1, True])
def test_failures_start_at_one(failures: int) -> None:
    with pytest.raises(ValueError):
        next_retry_us(failures, T0)


@pytest.mark.parametrize(
    "schedule",
    [(0,), (-1,), (2, 2), (3, 1), (1, float("inf")), (float("nan"),), ("1",), (True,)],
)
def test_bad_schedules_are_refused(schedule: tuple[int | float, ...]) -> None:
    assert check_schedule(schedule)
    with pytest.raises(ValueError):
        next_retry_us(1, T0, schedule)
    with pytest.raises(ValueError):
        retry_window_end_us(T0, schedule)


def test_good_schedules_pass_the_check() -> None:
    assert check_schedule(DEFAULT_RETRY_DAYS) is None
    assert check_schedule(()) is None
    assert check_schedule((0.01, 1, 1.5)) is None


@pytest.mark.parametrize(
    ("policy", "status", "trigger"),
    [
        ("cancel", "canceled", "retries_exhausted_cancel"),
        ("unpaid", "unpaid", "retries_exhausted_unpaid"),
        ("past_due", "past_due", "retries_exhausted_past_due"),
    ],
)
def test_the_end_policy(policy: str, status: str, trigger: str) -> None:
    assert status_after_exhausted(policy) == status  # type: ignore[arg-type]
    assert exhausted_trigger(policy) == trigger  # type: ignore[arg-type]
    # And the state table agrees, from past_due.
    assert next_subscription_status("past_due", trigger) == status


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        status_after_exhausted("delete")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        exhausted_trigger("delete")  # type: ignore[arg-type]
