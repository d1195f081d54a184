"""The pure attempt rules (paymux.domain.attempts): the provider's word, abandoned calls,
refunds and the consistency check.

Every expectation below is written out by hand from the rules as documented (the provider's
truth wins for an intent we think is open; money landing on a canceled intent is recorded
and flagged; a refused capture or void puts the intent back where the attempt started; an
abandoned authorization goes back for a new payment method), never computed from the code.

Tests named ``test_regression_*`` pin defects the property test at the end (random
sequences of what the services do) found in an earlier version of the rules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from paymux.domain.attempts import (
    ABANDONED_TARGET,
    Change,
    IntentState,
    Operation,
    ProviderStatus,
    Report,
    abandon,
    apply_refund,
    apply_report,
    inconsistencies,
    refundable,
    target_of,
)
from paymux.domain.states import OPERATIONS, PaymentIntentStatus, RefundStatus

S = PaymentIntentStatus
P = ProviderStatus
R = RefundStatus

RPM = S.REQUIRES_PAYMENT_METHOD
RCF = S.REQUIRES_CONFIRMATION
PROC = S.PROCESSING
RA = S.REQUIRES_ACTION
RCAP = S.REQUIRES_CAPTURE
SUCC = S.SUCCEEDED
CANC = S.CANCELED

EV_ACTION = "payment_intent.requires_action"
EV_CAPTURABLE = "payment_intent.amount_capturable_updated"
EV_SUCCEEDED = "payment_intent.succeeded"
EV_PROCESSING = "payment_intent.processing"
EV_FAILED = "payment_intent.payment_failed"
EV_CANCELED = "payment_intent.canceled"
EV_AUTH_AFTER_CANCEL = "payment_intent.authorized_after_cancel"
EV_CAPTURED_AFTER_CANCEL = "payment_intent.captured_after_cancel"

AMOUNT = 1000

# One consistent intent per status (amount 1000): what a row in that status looks like.
BASE: dict[S, IntentState] = {
    RPM: IntentState(RPM, AMOUNT),
    RCF: IntentState(RCF, AMOUNT),
    PROC: IntentState(PROC, AMOUNT),  # a confirm in flight: nothing held yet
    RA: IntentState(RA, AMOUNT),
    RCAP: IntentState(RCAP, AMOUNT, amount_capturable=AMOUNT),
    SUCC: IntentState(SUCC, AMOUNT, amount_received=AMOUNT),
    CANC: IntentState(CANC, AMOUNT),
}

# One report per provider status. The authorization is partial (800) and the capture smaller
# still (500), so where an amount comes from is visible in the expectations.
REPORTS: dict[P, Report] = {
    P.REQUIRES_ACTION: Report(P.REQUIRES_ACTION),
    P.REQUIRES_CAPTURE: Report(P.REQUIRES_CAPTURE, amount_authorized=800),
    P.SUCCEEDED: Report(P.SUCCEEDED, amount_authorized=800, amount_captured=500),
    P.PROCESSING: Report(P.PROCESSING),
    P.FAILED: Report(P.FAILED),
    P.CANCELED: Report(P.CANCELED),
    P.OPEN: Report(P.OPEN),
}


class Expect(NamedTuple):
    status: S
    events: tuple[str, ...] = ()
    capturable: int = 0
    received: int = 0
    declined: bool = False
    late_capture: int = 0
    late_authorization: bool = False


# (current status, provider status) -> what apply_report(operation=None) must do.
EXPECTED: dict[tuple[S, P], Expect] = {
    # -- requires_payment_method: the payer may have confirmed in the browser (Stripe.js).
    (RPM, P.REQUIRES_ACTION): Expect(RA, (EV_ACTION,)),
    (RPM, P.REQUIRES_CAPTURE): Expect(RCAP, (EV_CAPTURABLE,), capturable=800),
    (RPM, P.SUCCEEDED): Expect(SUCC, (EV_SUCCEEDED,), received=500),
    (RPM, P.PROCESSING): Expect(PROC, (EV_PROCESSING,)),
    (RPM, P.FAILED): Expect(RPM, (EV_FAILED,), declined=True),
    (RPM, P.CANCELED): Expect(CANC, (EV_CANCELED,)),
    (RPM, P.OPEN): Expect(RPM),
    # -- requires_confirmation
    (RCF, P.REQUIRES_ACTION): Expect(RA, (EV_ACTION,)),
    (RCF, P.REQUIRES_CAPTURE): Expect(RCAP, (EV_CAPTURABLE,), capturable=800),
    (RCF, P.SUCCEEDED): Expect(SUCC, (EV_SUCCEEDED,), received=500),
    (RCF, P.PROCESSING): Expect(PROC, (EV_PROCESSING,)),
    (RCF, P.FAILED): Expect(RPM, (EV_FAILED,), declined=True),
    (RCF, P.CANCELED): Expect(CANC, (EV_CANCELED,)),
    (RCF, P.OPEN): Expect(RCF),
    # -- processing (a confirm in flight)
    (PROC, P.REQUIRES_ACTION): Expect(RA, (EV_ACTION,)),
    (PROC, P.REQUIRES_CAPTURE): Expect(RCAP, (EV_CAPTURABLE,), capturable=800),
    (PROC, P.SUCCEEDED): Expect(SUCC, (EV_SUCCEEDED,), received=500),
    (PROC, P.PROCESSING): Expect(PROC),
    (PROC, P.FAILED): Expect(RPM, (EV_FAILED,), declined=True),
    (PROC, P.CANCELED): Expect(CANC, (EV_CANCELED,)),
    (PROC, P.OPEN): Expect(PROC),
    # -- requires_action
    (RA, P.REQUIRES_ACTION): Expect(RA),
    (RA, P.REQUIRES_CAPTURE): Expect(RCAP, (EV_CAPTURABLE,), capturable=800),
    (RA, P.SUCCEEDED): Expect(SUCC, (EV_SUCCEEDED,), received=500),
    (RA, P.PROCESSING): Expect(PROC, (EV_PROCESSING,)),
    (RA, P.FAILED): Expect(RPM, (EV_FAILED,), declined=True),
    (RA, P.CANCELED): Expect(CANC, (EV_CANCELED,)),
    (RA, P.OPEN): Expect(RA),
    # -- requires_capture: an authorization is held; only its outcome moves it.
    (RCAP, P.REQUIRES_ACTION): Expect(RCAP, capturable=1000),
    (RCAP, P.REQUIRES_CAPTURE): Expect(RCAP, capturable=1000),
    (RCAP, P.SUCCEEDED): Expect(SUCC, (EV_SUCCEEDED,), received=500),
    (RCAP, P.PROCESSING): Expect(RCAP, capturable=1000),
    (RCAP, P.FAILED): Expect(RCAP, capturable=1000),
    (RCAP, P.CANCELED): Expect(CANC, (EV_CANCELED,)),
    (RCAP, P.OPEN): Expect(RCAP, capturable=1000),
    # -- succeeded: final; nothing the provider says moves it.
    (SUCC, P.REQUIRES_ACTION): Expect(SUCC, received=1000),
    (SUCC, P.REQUIRES_CAPTURE): Expect(SUCC, received=1000),
    (SUCC, P.SUCCEEDED): Expect(SUCC, received=1000),
    (SUCC, P.PROCESSING): Expect(SUCC, received=1000),
    (SUCC, P.FAILED): Expect(SUCC, received=1000),
    (SUCC, P.CANCELED): Expect(SUCC, received=1000),
    (SUCC, P.OPEN): Expect(SUCC, received=1000),
    # -- canceled: stays canceled; money that lands on it is recorded and flagged.
    (CANC, P.REQUIRES_ACTION): Expect(CANC),
    (CANC, P.REQUIRES_CAPTURE): Expect(CANC, (EV_AUTH_AFTER_CANCEL,), late_authorization=True),
    (CANC, P.SUCCEEDED): Expect(CANC, (EV_CAPTURED_AFTER_CANCEL,), received=500, late_capture=500),
    (CANC, P.PROCESSING): Expect(CANC),
    (CANC, P.FAILED): Expect(CANC),
    (CANC, P.CANCELED): Expect(CANC),
    (CANC, P.OPEN): Expect(CANC),
}


def expected_change(base: IntentState, e: Expect) -> Change:
    return Change(
        replace(base, status=e.status, amount_capturable=e.capturable, amount_received=e.received),
        e.events,
        declined=e.declined,
        late_capture=e.late_capture,
        late_authorization=e.late_authorization,
    )


def test_the_table_covers_every_status_and_every_report() -> None:
    assert set(EXPECTED) == {(s, p) for s in S for p in P}
    assert set(BASE) == set(S)
    assert all(inconsistencies(state) == [] for state in BASE.values())


@pytest.mark.parametrize(("status", "provider"), list(EXPECTED))
def test_a_report_that_answers_no_call_of_ours(status: S, provider: P) -> None:
    expected = EXPECTED[(status, provider)]
    change = apply_report(BASE[status], REPORTS[provider])
    assert change == expected_change(BASE[status], expected)
    assert change.moved == bool(expected.events)


@pytest.mark.parametrize(("status", "provider"), list(EXPECTED))
def test_an_authorize_answer_follows_the_same_table(status: S, provider: P) -> None:
    """Our own authorization's answer is the provider's word like any other."""
    change = apply_report(
        BASE[status], REPORTS[provider], operation=Operation.AUTHORIZE, from_status=RPM
    )
    assert change == expected_change(BASE[status], EXPECTED[(status, provider)])


def test_open_changes_nothing_anywhere() -> None:
    for op in (None, Operation.AUTHORIZE, Operation.CAPTURE, Operation.CANCEL):
        for state in [*BASE.values(), IntentState(PROC, AMOUNT, amount_capturable=AMOUNT)]:
            assert apply_report(state, Report(P.OPEN), operation=op, from_status=RCAP) == Change(
                state
            )


# -- amounts ---------------------------------------------------------------------------------


def test_an_authorization_without_an_amount_holds_the_whole_amount() -> None:
    change = apply_report(BASE[RPM], Report(P.REQUIRES_CAPTURE))
    assert change.state == IntentState(RCAP, 1000, amount_capturable=1000)


def test_a_success_without_a_captured_amount_receives_what_was_held() -> None:
    held = IntentState(RCAP, 1000, amount_capturable=700)
    assert apply_report(held, Report(P.SUCCEEDED)).state == IntentState(
        SUCC, 1000, amount_received=700
    )


def test_a_success_with_nothing_held_or_said_receives_the_amount() -> None:
    change = apply_report(BASE[RA], Report(P.SUCCEEDED))
    assert change.state == IntentState(SUCC, 1000, amount_received=1000)
    assert change.events == (EV_SUCCEEDED,)


def test_a_partial_capture_receives_less_than_the_amount() -> None:
    in_flight = IntentState(PROC, 1000, amount_capturable=1000)  # capture of 400 from 1000 held
    change = apply_report(
        in_flight,
        Report(P.SUCCEEDED, amount_authorized=1000, amount_captured=400),
        operation=Operation.CAPTURE,
        from_status=RCAP,
    )
    assert change.state == IntentState(SUCC, 1000, amount_capturable=0, amount_received=400)
    assert change.events == (EV_SUCCEEDED,)


def test_a_late_capture_is_counted_once_and_only_what_is_new() -> None:
    canceled = IntentState(CANC, 1000, amount_received=500)
    assert apply_report(canceled, Report(P.SUCCEEDED, amount_captured=500)) == Change(canceled)
    assert apply_report(canceled, Report(P.SUCCEEDED, amount_captured=300)) == Change(canceled)
    more = apply_report(canceled, Report(P.SUCCEEDED, amount_captured=700))
    assert more == Change(
        IntentState(CANC, 1000, amount_received=700),
        (EV_CAPTURED_AFTER_CANCEL,),
        late_capture=200,
    )


def test_a_late_success_without_an_amount_on_a_canceled_intent_is_not_recorded() -> None:
    # Nothing says how much landed: nothing to give back is invented.
    assert apply_report(BASE[CANC], Report(P.SUCCEEDED)) == Change(BASE[CANC])


# -- our capture or void refused: back where the attempt started ----------------------------

CAPTURE_IN_FLIGHT = IntentState(PROC, 1000, amount_capturable=1000)


@pytest.mark.parametrize("op", [Operation.CAPTURE, Operation.CANCEL])
@pytest.mark.parametrize(
    ("from_status", "back"), [(RCAP, RCAP), (None, RCAP)], ids=["from-rcap", "from-unknown"]
)
def test_a_refused_capture_or_void_keeps_the_authorization(
    op: Operation, from_status: S | None, back: S
) -> None:
    change = apply_report(
        CAPTURE_IN_FLIGHT, Report(P.FAILED), operation=op, from_status=from_status
    )
    assert change == Change(IntentState(back, 1000, amount_capturable=1000))
    assert not change.declined and change.events == ()


@pytest.mark.parametrize("from_status", [RPM, RCF, RA])
def test_a_refused_void_of_an_unpaid_intent_goes_back_where_it_was(from_status: S) -> None:
    change = apply_report(
        BASE[PROC], Report(P.FAILED), operation=Operation.CANCEL, from_status=from_status
    )
    assert change == Change(IntentState(from_status, 1000))


@pytest.mark.parametrize("op", [Operation.CAPTURE, Operation.CANCEL])
@pytest.mark.parametrize("status", [RPM, RCF, RA, RCAP, SUCC, CANC])
def test_a_refused_capture_or_void_after_something_else_moved_the_intent(
    op: Operation, status: S
) -> None:
    """A webhook got there first: the refusal changes nothing."""
    assert apply_report(BASE[status], Report(P.FAILED), operation=op, from_status=RCAP) == (
        Change(BASE[status])
    )


@pytest.mark.parametrize("from_status", [RPM, RCF])
def test_a_declined_authorization_goes_back_for_a_new_payment_method(from_status: S) -> None:
    change = apply_report(
        BASE[PROC], Report(P.FAILED), operation=Operation.AUTHORIZE, from_status=from_status
    )
    assert change == Change(IntentState(RPM, 1000), (EV_FAILED,), declined=True)


def test_regression_a_failed_void_cannot_start_a_second_authorization() -> None:
    """A void of a held authorization is refused: the intent must go back to
    requires_capture (capture or cancel it again), never to requires_payment_method, from
    where a confirm would authorize a second time while the first is still held."""
    cancel_in_flight = IntentState(PROC, 1000, amount_capturable=1000)
    change = apply_report(
        cancel_in_flight, Report(P.FAILED), operation=Operation.CANCEL, from_status=RCAP
    )
    assert change.state == IntentState(RCAP, 1000, amount_capturable=1000)
    assert change.events == ()
    assert not change.declined
    assert change.state.status not in OPERATIONS["confirm"]


# -- abandon -----------------------------------------------------------------------------------


def test_an_abandoned_void_goes_back_to_requires_capture() -> None:
    assert abandon(CAPTURE_IN_FLIGHT, Operation.CANCEL, from_status=RCAP) == Change(
        IntentState(RCAP, 1000, amount_capturable=1000)
    )


def test_an_abandoned_capture_of_unknown_origin_goes_back_to_requires_capture() -> None:
    assert abandon(CAPTURE_IN_FLIGHT, Operation.CAPTURE, None) == Change(
        IntentState(RCAP, 1000, amount_capturable=1000)
    )


@pytest.mark.parametrize("from_status", [RPM, RCF, RA])
def test_an_abandoned_void_of_an_unpaid_intent_goes_back_where_it_was(from_status: S) -> None:
    assert abandon(BASE[PROC], Operation.CANCEL, from_status) == Change(
        IntentState(from_status, 1000)
    )


@pytest.mark.parametrize("from_status", [RPM, RCF, None])
def test_an_abandoned_authorization_goes_back_for_a_new_payment_method(
    from_status: S | None,
) -> None:
    assert abandon(BASE[PROC], Operation.AUTHORIZE, from_status) == Change(
        IntentState(RPM, 1000), (EV_FAILED,), declined=True
    )


@pytest.mark.parametrize("op", [Operation.AUTHORIZE, Operation.CAPTURE, Operation.CANCEL])
@pytest.mark.parametrize("status", [RPM, RCF, RA, RCAP, SUCC, CANC])
def test_abandoning_when_the_intent_already_moved_changes_nothing(op: Operation, status: S) -> None:
    assert abandon(BASE[status], op, RCAP) == Change(BASE[status])


def test_abandoned_targets() -> None:
    assert ABANDONED_TARGET == {
        Operation.AUTHORIZE: RPM,
        Operation.CAPTURE: RCAP,
        Operation.CANCEL: RCAP,
    }


# -- refunds -----------------------------------------------------------------------------------

# Received 1000, refunded 300, 200 reserved; a refund of 100 moves old -> new.
REFUND_BASE = IntentState(
    SUCC, 1000, amount_received=1000, amount_refunded=300, amount_refund_pending=200
)
# (old, new) -> (amount_refund_pending, amount_refunded) after, or None: not a legal move.
REFUND_EXPECTED: dict[tuple[R, R], tuple[int, int] | None] = {
    (R.PENDING, R.PENDING): None,
    (R.PENDING, R.SUCCEEDED): (100, 400),
    (R.PENDING, R.FAILED): (100, 300),
    (R.PENDING, R.CANCELED): (100, 300),
    (R.SUCCEEDED, R.PENDING): None,
    (R.SUCCEEDED, R.SUCCEEDED): None,
    (R.SUCCEEDED, R.FAILED): (200, 200),  # the bank returned it: no longer refunded
    (R.SUCCEEDED, R.CANCELED): None,
    (R.FAILED, R.PENDING): None,
    (R.FAILED, R.SUCCEEDED): None,
    (R.FAILED, R.FAILED): None,
    (R.FAILED, R.CANCELED): None,
    (R.CANCELED, R.PENDING): None,
    (R.CANCELED, R.SUCCEEDED): None,
    (R.CANCELED, R.FAILED): None,
    (R.CANCELED, R.CANCELED): None,
}


def test_the_refund_table_covers_every_pair() -> None:
    assert set(REFUND_EXPECTED) == {(a, b) for a in R for b in R}


@pytest.mark.parametrize(("old", "new"), list(REFUND_EXPECTED))
def test_a_refund_moves(old: R, new: R) -> None:
    expected = REFUND_EXPECTED[(old, new)]
    after = apply_refund(REFUND_BASE, old, new, 100)
    if expected is None:
        assert after is None
    else:
        pending, refunded = expected
        assert after == replace(
            REFUND_BASE, amount_refund_pending=pending, amount_refunded=refunded
        )
        assert inconsistencies(after) == []


def test_a_refund_never_moves_the_status_or_the_received_amount() -> None:
    late = IntentState(CANC, 1000, amount_received=500, amount_refund_pending=500)
    assert apply_refund(late, R.PENDING, R.SUCCEEDED, 500) == IntentState(
        CANC, 1000, amount_received=500, amount_refunded=500
    )


def test_refundable() -> None:
    assert refundable(REFUND_BASE) == 500
    assert refundable(IntentState(SUCC, 1000, amount_received=400)) == 400
    assert refundable(IntentState(SUCC, 1000, amount_received=1000, amount_refunded=1000)) == 0
    assert (
        refundable(IntentState(SUCC, 1000, amount_received=1000, amount_refund_pending=1000)) == 0
    )
    assert refundable(IntentState(CANC, 1000, amount_received=250)) == 250  # a late capture
    assert refundable(BASE[RCAP]) == 0
    assert refundable(BASE[RPM]) == 0


# -- inconsistencies ---------------------------------------------------------------------------

INCONSISTENT: dict[str, tuple[IntentState, list[str]]] = {
    "received more than the amount": (
        IntentState(SUCC, 1000, amount_received=1001),
        ["amount_received > amount"],
    ),
    "refunded and reserved more than received": (
        IntentState(
            SUCC, 1000, amount_received=1000, amount_refunded=600, amount_refund_pending=500
        ),
        ["refunded and pending refunds exceed amount_received"],
    ),
    "a negative refunded amount": (
        IntentState(SUCC, 1000, amount_received=1000, amount_refunded=-1),
        ["a negative amount"],
    ),
    "succeeded with nothing received": (
        IntentState(SUCC, 1000),
        ["succeeded with nothing received"],
    ),
    "requires_capture with nothing held": (
        IntentState(RCAP, 1000),
        ["requires_capture without a held amount, or with money received"],
    ),
    "requires_capture with money received": (
        IntentState(RCAP, 1000, amount_capturable=1000, amount_received=100),
        [
            "requires_capture without a held amount, or with money received",
            "requires_capture with money received",
        ],
    ),
    "an amount held while awaiting a payment method": (
        IntentState(RPM, 1000, amount_capturable=100),
        ["requires_payment_method with an amount capturable"],
    ),
    "an amount held on a canceled intent": (
        IntentState(CANC, 1000, amount_capturable=1000),
        ["canceled with an amount capturable"],
    ),
    "money received while requiring action": (
        IntentState(RA, 1000, amount_received=100),
        ["requires_action with money received"],
    ),
}

CONSISTENT: dict[str, IntentState] = {
    "a fresh intent": IntentState(RPM, 1000),
    "a confirm in flight": IntentState(PROC, 1000),
    "a partial authorization": IntentState(RCAP, 1000, amount_capturable=600),
    "a partial capture": IntentState(SUCC, 1000, amount_received=400),
    "refunded in full": IntentState(SUCC, 1000, amount_received=1000, amount_refunded=1000),
    "refunds reserved up to what was received": IntentState(
        SUCC, 1000, amount_received=1000, amount_refunded=400, amount_refund_pending=600
    ),
    "a canceled intent": IntentState(CANC, 1000),
    "a late capture being given back": IntentState(
        CANC, 1000, amount_received=500, amount_refunded=200, amount_refund_pending=300
    ),
}


@pytest.mark.parametrize("name", list(INCONSISTENT))
def test_an_inconsistent_state_is_named(name: str) -> None:
    state, problems = INCONSISTENT[name]
    assert inconsistencies(state) == problems


@pytest.mark.parametrize("name", list(CONSISTENT))
def test_a_consistent_state_has_no_problems(name: str) -> None:
    assert inconsistencies(CONSISTENT[name]) == []


def test_regression_a_capture_or_void_in_flight_is_consistent() -> None:
    """Was a bug (inconsistencies): a capture or void starts from requires_capture by moving the
    intent to `processing` and keeps `amount_capturable` (services.attempts.start_on_intent
    changes only the status; a refused or abandoned call goes back to requires_capture with
    that amount, which the rules rely on). `inconsistencies` flags every such in-flight intent
    as "processing with an amount capturable". Fix: allow a held amount while processing."""
    assert inconsistencies(IntentState(PROC, 1000, amount_capturable=1000)) == []


def test_regression_a_capture_answered_requires_action_keeps_the_authorization() -> None:
    """Was a bug (apply_report): our capture (or void) of a held authorization is answered with
    `requires_action` (a recovery `retrieve` settles the attempt with whatever status it
    finds other than succeeded/canceled/requires_capture/open). The intent moves to
    requires_action keeping amount_capturable=1000: inconsistent ("requires_action with an
    amount capturable"), and a held authorization is now on an intent the rules treat as
    unpaid (a later `failed` sends it to requires_payment_method, where confirm authorizes
    again). A capture or void can't need payer action: it should stay/go back to
    requires_capture, as the rules do for requires_capture itself."""
    change = apply_report(
        CAPTURE_IN_FLIGHT,
        Report(P.REQUIRES_ACTION),
        operation=Operation.CAPTURE,
        from_status=RCAP,
    )
    assert inconsistencies(change.state) == []
    assert change.state.status in (RCAP, PROC)


def test_regression_a_late_failure_keeps_an_authorization_held_while_processing() -> None:
    """Was a bug (apply_report): an intent is `processing` with an authorization held (our capture
    was answered `processing`, which settles the attempt and leaves the intent there; no call
    in flight, so the webhook inbox's staleness filter lets everything through). A late
    `payment_failed` webhook (e.g. the payer's first, declined card on the same provider
    payment, delivered out of order) moves it to requires_payment_method, zeroes
    amount_capturable and lets confirm authorize a second time while the first
    authorization is still held. The same report on requires_capture is (rightly) ignored."""
    settled_processing = apply_report(
        CAPTURE_IN_FLIGHT, Report(P.PROCESSING), operation=Operation.CAPTURE, from_status=RCAP
    ).state
    assert settled_processing == CAPTURE_IN_FLIGHT  # stays processing, held amount kept
    change = apply_report(settled_processing, Report(P.FAILED))
    assert change.state.status not in OPERATIONS["confirm"]
    assert change.state.amount_capturable == 1000


# -- property: random sequences of what the services do ---------------------------------------


class Flight(NamedTuple):
    """The one payment call in flight: its operation and the status it started from."""

    operation: Operation
    from_status: S
    amount: int = 0  # capture: the amount asked for


class Refund(NamedTuple):
    amount: int
    status: R


# Where a held authorization may go: its outcome, or back to where it is held.
_HELD_MAY_GO = frozenset({RCAP, PROC, SUCC, CANC})


class IntentModel:
    """Drives one intent the way the services do; checks the rules' invariants after each step.

    Left out of the model, each because the service layer prevents it:
    - a second payment call while one is in flight: start_on_intent moves the intent to
      `processing` by a conditional UPDATE from the operation's OPERATIONS states only;
    - a capture of more than amount_capturable (payments.capture refuses it);
    - a refund larger than refundable(), or on an intent that is neither succeeded nor
      canceled with money received (refunds.create: check_operation("refund") or the
      late-payment path; the reservation is one conditional UPDATE);
    - webhooks the inbox marks stale (webhooks.inbound._stale): while a capture is in flight
      anything but `succeeded`; while a void is in flight anything but `canceled` or
      `succeeded`. (Reports about an earlier attempt's provider payment are also dropped
      there; here every report is about the one provider payment, so none is excluded.);
    - the call's own answer after a webhook moved the intent out of `processing`: the inbox
      settles the pending attempt then, and settle_payment ignores a settled attempt;
    - Operation.REFUND in apply_report/abandon: refund attempts go through apply_refund;
    - reports with amounts above the intent's amount (a provider can't authorize or capture
      more than was asked).
    """

    def __init__(self, amount: int) -> None:
        self.state = IntentState(RPM, amount)
        self.flight: Flight | None = None
        self.history: list[Report] = []
        self.refunds: list[Refund] = []
        self.reference = False  # a provider payment exists (some call reached the provider)
        self.log: list[str] = [f"fresh intent of {amount}"]

    def fail(self, why: str) -> str:
        return "\n".join([why, *self.log, f"-> {self.state}"])

    def report(self, kind: str, q: int) -> Report:
        """A provider status (any) with amounts no larger than the intent's (from ``q``), or
        one of the likely answers: the capture as asked, the whole amount authorized."""
        amount, capturable = self.state.amount, self.state.amount_capturable
        if kind == "as_asked":
            asked = self.flight.amount if self.flight else 0
            return Report(P.SUCCEEDED, capturable, asked or q % (amount + 1))
        if kind == "held_in_full":
            return Report(P.REQUIRES_CAPTURE, amount)
        return Report(P(kind), q % (amount + 1), (q // (amount + 1)) % (amount + 1))

    def apply(self, report: Report, op: Operation | None) -> Change:
        before, flight = self.state, self.flight
        change = apply_report(
            before, report, operation=op, from_status=flight.from_status if flight else None
        )
        self.state = change.state
        self.history.append(report)
        if before.amount_capturable > 0:
            # A held authorization ends captured or voided, or stays held: never back to
            # an unpaid status from where confirm could authorize again.
            assert self.state.status in _HELD_MAY_GO, self.fail("a held authorization lost")
        return change

    def webhook(self, report: Report) -> None:
        flight = self.flight
        if flight is not None and flight.operation is Operation.CAPTURE:
            if report.status is not P.SUCCEEDED:
                self.log.pop()
                self.log.append(f"webhook {report} (stale: a capture in flight)")
                return
        if flight is not None and flight.operation is Operation.CANCEL:
            if report.status not in (P.CANCELED, P.SUCCEEDED):
                self.log.pop()
                self.log.append(f"webhook {report} (stale: a void in flight)")
                return
        change = self.apply(report, None)
        if change.moved and self.state.status is not PROC:
            self.flight = None  # the inbox settles the pending attempt
        self.reference = True

    def available(self) -> list[str]:
        """What the services could do next (each step still checks it, as they do)."""
        state, idle = self.state, self.flight is None
        actions = ["webhook"]
        if idle and state.status in OPERATIONS["confirm"]:
            actions.append("confirm")
        if idle and state.status in OPERATIONS["capture"]:
            actions.append("capture")
        if idle and state.status in OPERATIONS["cancel"]:
            actions.append("cancel")
        if not idle:
            actions += ["answer", "abandon"]
        if self.history:
            actions.append("replay")
        if (state.status is SUCC or (state.status is CANC and state.amount_received)) and (
            refundable(state) > 0
        ):
            actions.append("refund")
        if any(r.status in (R.PENDING, R.SUCCEEDED) for r in self.refunds):
            actions.append("refund_outcome")
        return actions

    def step(self, action: str, kind: str, q: int) -> None:
        state, flight = self.state, self.flight
        self.log.append(f"{action} ({kind}, {q})")
        if action == "confirm":
            if flight is not None or state.status not in OPERATIONS["confirm"]:
                self.log[-1] += " (refused)"
                return
            # No authorization starts while one is live.
            assert state.status not in (RCAP, PROC, SUCC, CANC), self.fail("confirm")
            assert state.amount_capturable == 0, self.fail("confirm while holding")
            assert state.amount_received == 0, self.fail("confirm after money was received")
            self.flight = Flight(Operation.AUTHORIZE, state.status)
            self.state = replace(state, status=PROC)
            self.reference = True
        elif action == "capture":
            if flight is not None or state.status not in OPERATIONS["capture"]:
                self.log[-1] += " (refused)"
                return
            amount = 1 + q % state.amount_capturable
            self.log[-1] = f"capture {amount}"
            self.flight = Flight(Operation.CAPTURE, RCAP, amount)
            self.state = replace(state, status=PROC)
        elif action == "cancel":
            if flight is not None or state.status not in OPERATIONS["cancel"]:
                self.log[-1] += " (refused)"
                return
            if not self.reference:  # nothing at any provider: payments.cancel is local
                self.state = replace(state, status=CANC)
                return
            self.flight = Flight(Operation.CANCEL, state.status)
            self.state = replace(state, status=PROC)
        elif action == "answer":  # the call's response, or what recovery's retrieve found
            if flight is None:
                self.log[-1] += " (nothing in flight)"
                return
            report = self.report(kind, q)
            self.log[-1] = f"answer to {flight.operation}: {report}"
            self.apply(report, flight.operation)
            self.flight = None  # settle_payment settles the attempt whatever the answer
        elif action == "abandon":
            if flight is None:
                self.log[-1] += " (nothing in flight)"
                return
            self.log[-1] = f"abandon {flight.operation} from {flight.from_status}"
            self.state = abandon(state, flight.operation, flight.from_status).state
            self.flight = None
        elif action == "webhook":
            report = self.report(kind, q)
            self.log[-1] = f"webhook {report}"
            self.webhook(report)
        elif action == "replay":  # a duplicate, or an older report delivered late
            if not self.history:
                self.log[-1] += " (nothing to replay)"
                return
            report = self.history[q % len(self.history)]
            self.log[-1] = f"webhook (replayed) {report}"
            self.webhook(report)
        elif action == "refund":
            allowed = state.status is SUCC or (state.status is CANC and state.amount_received)
            if not allowed or refundable(state) <= 0:
                self.log[-1] += " (refused)"
                return
            amount = 1 + q % refundable(state)
            self.log[-1] = f"refund {amount} reserved"
            self.state = replace(state, amount_refund_pending=state.amount_refund_pending + amount)
            self.refunds.append(Refund(amount, R.PENDING))
        elif action == "refund_outcome":
            if not self.refunds:
                self.log[-1] += " (no refund)"
                return
            index = q % len(self.refunds)
            refund, new = self.refunds[index], list(R)[(q // len(self.refunds)) % len(R)]
            after = apply_refund(state, refund.status, new, refund.amount)
            self.log[-1] = f"refund #{index} {refund.status} -> {new}" + (
                " (ignored)" if after is None else ""
            )
            if after is not None:
                self.state = after
                self.refunds[index] = Refund(refund.amount, new)
        self.check()

    def check(self) -> None:
        state = self.state
        assert inconsistencies(state) == [], self.fail(f"inconsistent: {inconsistencies(state)}")
        assert state.amount_received <= state.amount, self.fail("received > amount")
        assert state.amount_refunded <= state.amount_received, self.fail("refunded > received")
        assert state.amount_refunded == sum(
            r.amount for r in self.refunds if r.status is R.SUCCEEDED
        ), self.fail("refunded != the succeeded refunds")
        assert state.amount_refund_pending == sum(
            r.amount for r in self.refunds if r.status is R.PENDING
        ), self.fail("pending != the pending refunds")
        assert self.flight is None or state.status is PROC, self.fail("a call in flight")


# A report's kind: a provider status, or a likely answer (see IntentModel.report).
KINDS = (*(p.value for p in P), "as_asked", "held_in_full")


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.generate, Phase.shrink),  # no "explain" phase: it is slow, the log says it
)
@given(amount=st.integers(50, 100_000), data=st.data())
def test_random_sequences_keep_every_intent_consistent(amount: int, data: st.DataObject) -> None:
    model = IntentModel(amount)
    model.check()
    for _ in range(data.draw(st.integers(0, 30), label="steps")):
        model.step(
            data.draw(st.sampled_from(model.available()), label="action"),
            data.draw(st.sampled_from(KINDS), label="kind"),
            data.draw(st.integers(0, 2**20), label="q"),
        )



# -- edges that mutation testing (mutmut) showed untested ----------------------------------
def test_a_hold_of_one_minor_unit_is_a_hold() -> None:
    one = IntentState(PROC, 1000, amount_capturable=1)
    failed = apply_report(one, Report(P.FAILED))
    assert failed.state == one and failed.events == ()
    assert inconsistencies(IntentState(RCAP, 1000, amount_capturable=1)) == []


def test_an_abandoned_authorization_never_keeps_a_hold() -> None:
    held = IntentState(PROC, 1000, amount_capturable=1000)
    change = abandon(held, Operation.AUTHORIZE, RPM)
    assert change.state == IntentState(RPM, 1000, amount_capturable=0)
    assert change.declined and change.events == ("payment_intent.payment_failed",)


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        (IntentState(SUCC, 1000, amount_received=1000, amount_refund_pending=-1),
         "a negative amount"),
        (IntentState(CANC, 1000, amount_received=-5), "a negative amount"),
        (IntentState(SUCC, 1000, amount_received=1000, amount_refunded=-1), "a negative amount"),
    ],
)
def test_each_negative_amount_is_named(state: IntentState, problem: str) -> None:
    assert problem in inconsistencies(state)


def test_what_each_operation_aims_at() -> None:
    assert target_of(Operation.AUTHORIZE) == "succeeded"
    assert target_of(Operation.AUTHORIZE, capture=False) == "requires_capture"
    assert target_of(Operation.CAPTURE) == "succeeded"
    assert target_of(Operation.CAPTURE, capture=False) == "succeeded"
    assert target_of(Operation.CANCEL) == "canceled"
    assert target_of(Operation.REFUND) == "succeeded"  # the refund's own status
