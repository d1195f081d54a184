"""The payment intent state machine: one table, and illegal moves refused with the state."""

from __future__ import annotations

import itertools

import pytest

from paymux.domain.attempts import (
    IntentState,
    Operation,
    ProviderStatus,
    Report,
    abandon,
    apply_report,
)
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
    for operation in ("confirm", "capture", "cancel"):
        for status in OPERATIONS[operation]:
            assert check_transition(status, "processing")


def test_processing_can_go_back_to_where_any_call_started() -> None:
    """A refused or abandoned call puts the intent back where it was."""
    for operation in ("confirm", "capture", "cancel"):
        for status in OPERATIONS[operation]:
            assert check_transition("processing", status)


@pytest.mark.parametrize(
    "status",
    [S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION, S.PROCESSING, S.REQUIRES_ACTION],
)
def test_the_providers_word_moves_any_open_intent_to_any_outcome(status: S) -> None:
    """A payment confirmed in the payer's browser reaches us while the intent still awaits
    a payment method: every open state moves straight to wherever the provider says."""
    for outcome in ("requires_action", "requires_capture", "succeeded", "canceled"):
        assert check_transition(status, outcome)


def test_an_authorization_held_moves_only_to_its_outcome_or_a_call() -> None:
    assert TRANSITIONS[S.REQUIRES_CAPTURE] == {S.PROCESSING, S.SUCCEEDED, S.CANCELED}


def test_a_declined_payment_goes_back_for_a_new_payment_method() -> None:
    for status in (S.REQUIRES_CONFIRMATION, S.PROCESSING, S.REQUIRES_ACTION):
        assert check_transition(status, "requires_payment_method")
    assert not check_transition("requires_capture", "requires_payment_method")


# Intents in each status, as rows look (amount 1000); processing twice: a confirm in flight
# (nothing held) and a capture or void in flight (the authorization held).
_INTENTS = [
    IntentState(S.REQUIRES_PAYMENT_METHOD, 1000),
    IntentState(S.REQUIRES_CONFIRMATION, 1000),
    IntentState(S.PROCESSING, 1000),
    IntentState(S.PROCESSING, 1000, amount_capturable=1000),
    IntentState(S.REQUIRES_ACTION, 1000),
    IntentState(S.REQUIRES_CAPTURE, 1000, amount_capturable=1000),
    IntentState(S.SUCCEEDED, 1000, amount_received=1000),
    IntentState(S.CANCELED, 1000),
    IntentState(S.CANCELED, 1000, amount_received=400),
]
_REPORTS = [
    Report(status, authorized, captured)
    for status in ProviderStatus
    for authorized, captured in ((0, 0), (600, 0), (1000, 400), (1000, 1000))
]
# Each payment operation with the statuses its call may start from (None: not recorded).
_CALLS: list[tuple[Operation | None, S | None]] = [
    (None, None),
    *((Operation.AUTHORIZE, s) for s in (None, *OPERATIONS["confirm"])),
    *((Operation.CAPTURE, s) for s in (None, *OPERATIONS["capture"])),
    *((Operation.CANCEL, s) for s in (None, *OPERATIONS["cancel"])),
]


def test_every_move_the_attempt_rules_make_is_in_the_table() -> None:
    """TRANSITIONS (hand-written) documents the rules: whatever apply_report or abandon does
    to any intent, for any report and any call of ours, stays put or is a listed move."""
    unlisted: set[tuple[str, str, str, Operation | None]] = set()
    for state, report, (operation, from_status) in itertools.product(_INTENTS, _REPORTS, _CALLS):
        new = apply_report(state, report, operation=operation, from_status=from_status)
        if not check_transition(state.status, new.state.status):
            unlisted.add((state.status.value, new.state.status.value, str(report), operation))
        if operation is not None:
            back = abandon(state, operation, from_status)
            if not check_transition(state.status, back.state.status):
                unlisted.add((state.status.value, back.state.status.value, "abandon", operation))
    assert unlisted == set()
