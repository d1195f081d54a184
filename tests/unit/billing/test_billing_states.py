"""Both state tables, row by row, with the expected status written here (not read from the
code), and every other move refused with its stable error code."""

from __future__ import annotations

import itertools

import pytest

from paymux.billing.rules.states import (
    INVOICE_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    InvoiceStatus,
    SubscriptionStatus,
    SubscriptionTrigger,
    next_invoice_status,
    next_subscription_status,
)
from paymux.domain.errors import ERRORS, PaymuxError

# (status, trigger, expected next status): Stripe's lifecycle, as documented in states.py.
# Not rows (removed: nothing fires them, docs/billing.md "The subscription state table"): a
# paid invoice is ``invoice_paid`` whichever it was (no first_invoice_paid / renewal_paid),
# and an active subscription never becomes paused (Stripe: only a trial without a method).
SUBSCRIPTION_ROWS = [
    ("incomplete", "invoice_paid", "active"),
    ("incomplete", "first_payment_failed", "incomplete"),
    ("incomplete", "first_payment_requires_action", "incomplete"),
    ("incomplete", "incomplete_expired", "incomplete_expired"),
    ("incomplete", "canceled", "canceled"),
    ("active", "trial_started", "trialing"),
    ("trialing", "trial_started", "trialing"),
    ("trialing", "invoice_paid", "trialing"),
    ("trialing", "trial_ended", "active"),
    ("trialing", "paused", "paused"),
    ("trialing", "canceled", "canceled"),
    ("active", "invoice_paid", "active"),
    ("active", "renewal_failed", "past_due"),
    ("active", "renewal_requires_action", "past_due"),
    ("active", "canceled", "canceled"),
    ("past_due", "invoice_paid", "active"),
    ("past_due", "renewal_failed", "past_due"),
    ("past_due", "renewal_requires_action", "past_due"),
    ("past_due", "retries_exhausted_cancel", "canceled"),
    ("past_due", "retries_exhausted_unpaid", "unpaid"),
    ("past_due", "retries_exhausted_past_due", "past_due"),
    ("past_due", "canceled", "canceled"),
    ("unpaid", "invoice_paid", "active"),
    ("unpaid", "canceled", "canceled"),
    ("paused", "resumed", "active"),
    ("paused", "canceled", "canceled"),
    ("canceled", "invoice_paid", "canceled"),
]

ALL_STATUSES = [
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid", "canceled",
    "paused",
]
ALL_TRIGGERS = [
    "first_payment_failed", "first_payment_requires_action", "incomplete_expired",
    "trial_started", "trial_ended", "renewal_failed", "renewal_requires_action", "invoice_paid",
    "retries_exhausted_cancel", "retries_exhausted_unpaid", "retries_exhausted_past_due",
    "canceled", "paused", "resumed",
]


@pytest.mark.parametrize(("status", "trigger", "expected"), SUBSCRIPTION_ROWS)
def test_subscription_transition(status: str, trigger: str, expected: str) -> None:
    result = next_subscription_status(status, trigger)
    assert result == expected
    assert isinstance(result, SubscriptionStatus)


def test_the_subscription_table_is_exactly_these_rows() -> None:
    table = {(str(s), str(t)): str(n) for (s, t), n in SUBSCRIPTION_TRANSITIONS.items()}
    assert table == {(s, t): n for s, t, n in SUBSCRIPTION_ROWS}
    assert len(SUBSCRIPTION_ROWS) == len({(s, t) for s, t, _ in SUBSCRIPTION_ROWS})


def test_the_enums_are_stripes_statuses_and_our_triggers() -> None:
    assert sorted(s.value for s in SubscriptionStatus) == sorted(ALL_STATUSES)
    assert sorted(t.value for t in SubscriptionTrigger) == sorted(ALL_TRIGGERS)


ILLEGAL_SUBSCRIPTION_MOVES = sorted(
    set(itertools.product(ALL_STATUSES, ALL_TRIGGERS)) - {(s, t) for s, t, _ in SUBSCRIPTION_ROWS}
)


@pytest.mark.parametrize(("status", "trigger"), ILLEGAL_SUBSCRIPTION_MOVES)
def test_every_other_subscription_move_is_refused(status: str, trigger: str) -> None:
    with pytest.raises(PaymuxError) as caught:
        next_subscription_status(status, trigger)
    assert caught.value.code == "subscription_unexpected_state"
    assert caught.value.http_status == 400
    assert status in caught.value.message and trigger in caught.value.message


def test_terminal_statuses_take_nothing_but_a_late_payment() -> None:
    for trigger in ALL_TRIGGERS:
        with pytest.raises(PaymuxError):
            next_subscription_status("incomplete_expired", trigger)
        if trigger != "invoice_paid":
            with pytest.raises(PaymuxError):
                next_subscription_status("canceled", trigger)


@pytest.mark.parametrize(
    ("status", "trigger"),
    [("active", "explode"), ("deleted", "canceled"), ("", ""), ("ACTIVE", "canceled")],
)
def test_unknown_statuses_and_triggers_are_refused(status: str, trigger: str) -> None:
    with pytest.raises(PaymuxError) as caught:
        next_subscription_status(status, trigger)
    assert caught.value.code == "subscription_unexpected_state"


# -- invoices --------------------------------------------------------------------------------

INVOICE_ROWS = [
    ("draft", "finalize", "open"),
    ("open", "pay", "paid"),
    ("uncollectible", "pay", "paid"),
    ("open", "void", "void"),
    ("uncollectible", "void", "void"),
    ("open", "mark_uncollectible", "uncollectible"),
]
INVOICE_STATUSES = ["draft", "open", "paid", "void", "uncollectible"]
INVOICE_ACTIONS = ["finalize", "pay", "void", "mark_uncollectible"]


@pytest.mark.parametrize(("status", "action", "expected"), INVOICE_ROWS)
def test_invoice_transition(status: str, action: str, expected: str) -> None:
    result = next_invoice_status(status, action)
    assert result == expected
    assert isinstance(result, InvoiceStatus)


def test_the_invoice_table_is_exactly_these_rows() -> None:
    table = {(str(s), str(a)): str(n) for (s, a), n in INVOICE_TRANSITIONS.items()}
    assert table == {(s, a): n for s, a, n in INVOICE_ROWS}
    assert sorted(s.value for s in InvoiceStatus) == sorted(INVOICE_STATUSES)


@pytest.mark.parametrize(
    ("status", "action"),
    sorted(
        set(itertools.product(INVOICE_STATUSES, [*INVOICE_ACTIONS, "delete", "finalise"]))
        - {(s, a) for s, a, _ in INVOICE_ROWS}
    ),
)
def test_every_other_invoice_move_is_refused(status: str, action: str) -> None:
    with pytest.raises(PaymuxError) as caught:
        next_invoice_status(status, action)
    assert caught.value.code == "invoice_unexpected_state"
    assert caught.value.http_status == 400


def test_the_error_codes_are_in_the_taxonomy() -> None:
    for code in ("subscription_unexpected_state", "invoice_unexpected_state"):
        assert ERRORS[code].http_status == 400
        assert ERRORS[code].type == "invalid_request_error"
