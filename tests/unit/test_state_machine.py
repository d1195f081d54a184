"""The payment intent state machine: one table, and illegal moves refused with the state."""

from __future__ import annotations

import pytest

from paymux.domain.errors import PaymuxError
from paymux.domain.states import (
    OPERATIONS,
    REFUND_TRANSITIONS,
    TRANSITIONS,
    PaymentIntentStatus,
    RefundStatus,
    check_operation,
    check_transition,
)

S = PaymentIntentStatus


def test_every_state_has_a_row_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(S)
    assert set(REFUND_TRANSITIONS) == set(RefundStatus)


def test_terminal_states_go_nowhere() -> None:
    assert TRANSITIONS[S.SUCCEEDED] == frozenset()
    assert TRANSITIONS[S.CANCELED] == frozenset()
    assert not check_transition("succeeded", "processing")
    assert not check_transition("canceled", "succeeded")


def test_a_late_processing_never_moves_a_succeeded_intent_back() -> None:
    assert not check_transition("succeeded", "processing")
    assert not check_transition("requires_capture", "requires_action")


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("status", list(S))
def test_operations_are_allowed_exactly_from_their_listed_states(
    operation: str, status: PaymentIntentStatus
) -> None:
    if status in OPERATIONS[operation]:
        check_operation(operation, status)
    else:
        with pytest.raises(PaymuxError) as info:
            check_operation(operation, status)
        assert info.value.code == "payment_intent_unexpected_state"
        assert info.value.http_status == 400
        assert status.value in info.value.message
        assert info.value.to_dict()["status"] == status.value


def test_every_operation_start_state_can_reach_processing() -> None:
    for operation in ("confirm", "capture"):
        for status in OPERATIONS[operation]:
            assert check_transition(status, "processing")
