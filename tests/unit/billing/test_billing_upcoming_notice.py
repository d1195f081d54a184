"""When ``invoice.upcoming`` is due (``subscription_due.upcoming_notice``), and that
``next_due`` wakes the subscription for it: a pure rule over the subscription's row."""

from __future__ import annotations

from typing import Any

from paymux.billing.subscription_due import next_due, upcoming_notice
from paymux.storage.models import Subscription

DAY = 86_400 * 1_000_000
START = 1_800_000_000 * 1_000_000
LEAD = 7 * DAY


def sub(**changes: Any) -> Subscription:
    values: dict[str, Any] = {
        "status": "active",
        "collection_method": "charge_automatically",
        "current_period_start_us": START,
        "current_period_end_us": START + 30 * DAY,
        "trial_start_us": None,
        "trial_end_us": None,
        "cancel_at_us": None,
        "pause_collection": None,
        "upcoming_notice_for_us": None,
        "created_us": START,
    }
    values.update(changes)
    return Subscription(**values)


def test_due_the_lead_before_the_period_end() -> None:
    assert upcoming_notice(sub(), LEAD) == (START + 23 * DAY, START + 30 * DAY)
    assert next_due(sub(), START + 1, upcoming_us=LEAD) == START + 23 * DAY


def test_once_per_renewal() -> None:
    sent = sub(upcoming_notice_for_us=START + 30 * DAY)
    assert upcoming_notice(sent, LEAD) is None
    assert next_due(sent, START + 1, upcoming_us=LEAD) == START + 30 * DAY
    # The next period's renewal is another one: due again.
    later = sub(upcoming_notice_for_us=START, current_period_start_us=START + 30 * DAY,
                current_period_end_us=START + 61 * DAY)
    assert upcoming_notice(later, LEAD) == (START + 54 * DAY, START + 61 * DAY)


def test_none_when_off_or_when_nothing_will_be_charged_automatically() -> None:
    assert upcoming_notice(sub(), 0) is None
    assert next_due(sub(), START + 1) == START + 30 * DAY  # the default lead: none
    assert upcoming_notice(sub(collection_method="send_invoice"), LEAD) is None
    for status in ("canceled", "incomplete", "incomplete_expired", "paused"):
        assert upcoming_notice(sub(status=status), LEAD) is None, status


def test_none_when_it_ends_by_the_renewal() -> None:
    assert upcoming_notice(sub(cancel_at_us=START + 30 * DAY), LEAD) is None
    assert upcoming_notice(sub(cancel_at_us=START + 10 * DAY), LEAD) is None
    # Canceling after the renewal leaves it.
    assert upcoming_notice(sub(cancel_at_us=START + 40 * DAY), LEAD) is not None


def test_none_when_the_period_is_no_longer_than_the_lead() -> None:
    assert upcoming_notice(sub(current_period_end_us=START + 7 * DAY), LEAD) is None
    assert upcoming_notice(sub(current_period_end_us=START + 7 * DAY + 1), LEAD) == (
        START + 1, START + 7 * DAY + 1
    )


def test_a_trial_end_is_a_renewal() -> None:
    trial = sub(status="trialing", trial_start_us=START, trial_end_us=START + 14 * DAY,
                current_period_end_us=START + 14 * DAY)
    assert upcoming_notice(trial, LEAD) == (START + 7 * DAY, START + 14 * DAY)
    # The trial_will_end notice (3 days before) and this one both wake it, earliest first.
    assert next_due(trial, START + 1, upcoming_us=LEAD) == START + 7 * DAY
    assert next_due(trial, START + 7 * DAY + 1, upcoming_us=LEAD) == START + 7 * DAY
    sent = sub(status="trialing", trial_start_us=START, trial_end_us=START + 14 * DAY,
               current_period_end_us=START + 14 * DAY, upcoming_notice_for_us=START + 14 * DAY)
    assert next_due(sent, START + 7 * DAY + 1, upcoming_us=LEAD) == START + 11 * DAY
