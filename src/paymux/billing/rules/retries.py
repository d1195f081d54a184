"""Dunning: when to retry a failed renewal payment, and what happens when retries run out.

The default schedule follows Stripe's recommended Smart Retries default, "8 tries within 2
weeks": the renewal itself is try 1, then 7 retries at days 1, 2, 3, 5, 7, 10 and 14 after that
first failure -- dense at first (most soft declines clear within days: funds arrive, the issuer
comes back), then spread out, the last one exactly two weeks after the first failure. Offsets
are measured from the first failure, not from the previous retry, so a late-running worker
does not push the whole schedule back.

A hard decline is never retried (card networks fine merchants who retry them, and the answer
will not change): the issuer said the card is lost, stolen, closed, fraudulent or not to be
tried again, or the payment needs the customer's own 3-D Secure (which the hosted invoice page
collects; an off-session retry would need it again). These are *our* decline codes
(``paymux.domain.errors.DECLINE_CODES``; each gateway maps its own onto them), every one of
them marked not retryable there. Stripe also stops at its hard declines (incorrect_number,
lost_card, pickup_card, stolen_card, revocation_of_authorization(s), authentication_required,
transaction_not_allowed, ...). ``expired_card`` and ``incorrect_cvc`` are left retryable, as
Stripe does: a new default payment method retries the open invoice at once anyway.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Literal

from paymux.billing.rules.states import SubscriptionStatus, SubscriptionTrigger

__all__ = [
    "DEFAULT_RETRY_DAYS",
    "HARD_DECLINES",
    "EndPolicy",
    "check_schedule",
    "exhausted_trigger",
    "next_retry_us",
    "retry_window_end_us",
    "status_after_exhausted",
]

#: Days after the first failure at which to retry: 7 retries + the renewal = 8 tries in 14 days.
DEFAULT_RETRY_DAYS: tuple[int | float, ...] = (1, 2, 3, 5, 7, 10, 14)

HARD_DECLINES: frozenset[str] = frozenset(
    {
        "lost_card",
        "stolen_card",
        "pickup_card",
        "fraudulent",
        "restricted_card",
        "security_violation",
        "merchant_blacklist",
        "invalid_account",
        "card_not_supported",
        "currency_not_supported",
        "transaction_not_allowed",
        "do_not_try_again",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "stop_payment_order",
        "incorrect_number",
        "authentication_required",
    }
)

EndPolicy = Literal["cancel", "unpaid", "past_due"]

_US_PER_DAY = 86_400 * 1_000_000

_END_STATUS: dict[str, SubscriptionStatus] = {
    "cancel": SubscriptionStatus.CANCELED,
    "unpaid": SubscriptionStatus.UNPAID,
    "past_due": SubscriptionStatus.PAST_DUE,
}
_END_TRIGGER: dict[str, SubscriptionTrigger] = {
    "cancel": SubscriptionTrigger.RETRIES_EXHAUSTED_CANCEL,
    "unpaid": SubscriptionTrigger.RETRIES_EXHAUSTED_UNPAID,
    "past_due": SubscriptionTrigger.RETRIES_EXHAUSTED_PAST_DUE,
}


def _days_us(days: int | float) -> int:
    """Days as whole microseconds (ties to even); a number is read as the decimal it prints
    as, so a float means what it says (0.1 -> 0.1, not the binary fraction nearest it)."""
    return round(Fraction(Decimal(str(days))) * _US_PER_DAY)


def check_schedule(schedule: tuple[int | float, ...]) -> str | None:
    """A message when ``schedule`` is not a usable retry schedule, else None: offsets positive,
    finite, strictly increasing; an empty schedule (never retry) is valid."""
    previous = 0  # microseconds
    for days in schedule:
        if isinstance(days, bool) or not isinstance(days, int | float):
            return "retry offsets must be numbers of days"
        if isinstance(days, float) and not Decimal(str(days)).is_finite():
            return "retry offsets must be finite"
        current = _days_us(days)
        if current <= previous:
            return "retry offsets must be positive and strictly increasing"
        previous = current
    return None


def next_retry_us(
    failures: int,
    first_failure_us: int,
    schedule: tuple[int | float, ...] = DEFAULT_RETRY_DAYS,
    decline_code: str | None = None,
) -> int | None:
    """When to try again after the ``failures``-th failed try (1 = the renewal itself failed).

    ``first_failure_us + schedule[failures - 1]`` days; None when the decline is hard (see
    ``HARD_DECLINES``) or the schedule is used up (``failures > len(schedule)``).
    """
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
        raise ValueError("failures counts failed tries and starts at 1")
    problem = check_schedule(schedule)
    if problem is not None:
        raise ValueError(problem)
    if decline_code is not None and decline_code in HARD_DECLINES:
        return None
    if failures > len(schedule):
        return None
    return first_failure_us + _days_us(schedule[failures - 1])


def retry_window_end_us(
    first_failure_us: int, schedule: tuple[int | float, ...] = DEFAULT_RETRY_DAYS
) -> int:
    """When the retry window closes (the last offset; the first failure for an empty schedule).

    After a hard decline no retry is made, but the subscription stays past_due (the customer
    may still pay on the hosted page or change the card) until this time; then the end policy
    applies, as after the last failed retry.
    """
    problem = check_schedule(schedule)
    if problem is not None:
        raise ValueError(problem)
    return first_failure_us + (_days_us(schedule[-1]) if schedule else 0)


def status_after_exhausted(policy: EndPolicy) -> str:
    """The subscription status once retries are exhausted: cancel -> canceled, unpaid ->
    unpaid, past_due -> past_due (a ``SubscriptionStatus``, which is a str)."""
    try:
        return _END_STATUS[policy]
    except KeyError:
        raise ValueError(f"unknown end policy {policy!r}: cancel, unpaid or past_due") from None


def exhausted_trigger(policy: EndPolicy) -> SubscriptionTrigger:
    """The state-table trigger for ``policy`` (``retries_exhausted_<policy>``)."""
    try:
        return _END_TRIGGER[policy]
    except KeyError:
        raise ValueError(f"unknown end policy {policy!r}: cancel, unpaid or past_due") from None
