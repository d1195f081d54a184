"""paymux.domain.attempts: the consistency check at the edge of "nothing received" (mutation
testing found no test of a succeeded intent that received the smallest amount there is).
Expected values are written out by hand."""

from __future__ import annotations

from paymux.domain.attempts import IntentState, inconsistencies
from paymux.domain.states import PaymentIntentStatus

SUCCEEDED = PaymentIntentStatus.SUCCEEDED


def test_a_succeeded_intent_that_received_one_minor_unit_is_consistent() -> None:
    assert inconsistencies(IntentState(SUCCEEDED, 1, amount_received=1)) == []
    assert inconsistencies(IntentState(SUCCEEDED, 1000, amount_received=1)) == []


def test_a_succeeded_intent_that_received_nothing_or_less_is_not() -> None:
    assert inconsistencies(IntentState(SUCCEEDED, 1)) == ["succeeded with nothing received"]
    assert inconsistencies(IntentState(SUCCEEDED, 1, amount_received=-1)) == [
        "refunded and pending refunds exceed amount_received",  # 0 + 0 > -1
        "a negative amount",
        "succeeded with nothing received",
    ]
