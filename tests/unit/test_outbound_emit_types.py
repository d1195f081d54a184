"""Every event type paymux computes (not written as a literal at the ``emit`` call) is in the
catalog, found by RUNNING what computes it, not by reading the source. ``emit`` refuses an
unknown type by raising (a programming error: the request is a 500 and its change rolls
back), so a computed type missing from the catalog must be caught here, before it ships.

The computed types (tests/unit/test_event_catalog.py lists their call sites, read by AST):
- services/attempts.py emits each of ``Change.events`` from domain/attempts.py's rules:
  every rule is run on every state, provider report, operation and starting status;
- billing/subscription_views.py emits ``_EVENT_OF[status]`` (or the two literals beside it);
- billing/meters.py emits ``f"billing.meter.{kind}"``, kind "reactivated" or "deactivated".
"""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any, cast

import pytest

from paymux.billing import subscription_views
from paymux.domain.attempts import (
    IntentState,
    Operation,
    ProviderStatus,
    Report,
    abandon,
    apply_report,
)
from paymux.domain.events import EVENT_TYPES
from paymux.domain.states import PaymentIntentStatus
from paymux.services.context import emit

AMOUNT = 1000
# The calls an attempt answers (a refund is not a payment attempt: apply_refund, no events).
CALLS = [Operation.AUTHORIZE, Operation.CAPTURE, Operation.CANCEL]


def _intent_states() -> list[IntentState]:
    return [
        IntentState(status, AMOUNT, amount_capturable=capturable, amount_received=received)
        for status in PaymentIntentStatus
        for capturable, received in itertools.product((0, AMOUNT), (0, AMOUNT))
    ]


def _payment_rule_events() -> set[str]:
    """Every event the payment rules can ask for, over all their inputs."""
    found: set[str] = set()
    operations: list[Operation | None] = [None, *CALLS]
    starts: list[PaymentIntentStatus | None] = [None, *PaymentIntentStatus]
    for state in _intent_states():
        for provider, authorized, captured in itertools.product(
            ProviderStatus, (0, AMOUNT), (0, AMOUNT)
        ):
            report = Report(provider, amount_authorized=authorized, amount_captured=captured)
            for operation, start in itertools.product(operations, starts):
                found |= set(
                    apply_report(state, report, operation=operation, from_status=start).events
                )
        for operation, start in itertools.product(CALLS, starts):
            found |= set(abandon(state, operation, start).events)
    return found


def test_every_event_the_payment_rules_compute_is_catalogued() -> None:
    found = _payment_rule_events()
    # The run reached the rules' outcomes (stated here, not taken from the rules).
    assert {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.processing",
        "payment_intent.requires_action",
        "payment_intent.amount_capturable_updated",
    } <= found
    assert sorted(found - EVENT_TYPES) == []


def test_every_subscription_move_event_is_catalogued() -> None:
    computed = set(subscription_views._EVENT_OF.values())
    assert "customer.subscription.deleted" in computed
    literals = {"customer.subscription.updated", "customer.subscription.resumed"}
    assert sorted((computed | literals) - EVENT_TYPES) == []


@pytest.mark.parametrize("kind", ["reactivated", "deactivated"])
def test_every_meter_status_event_is_catalogued(kind: str) -> None:
    assert f"billing.meter.{kind}" in EVENT_TYPES


def test_emit_raises_on_an_unknown_computed_type_before_writing() -> None:
    """A computed type that slipped through is refused at once: nothing is written (the
    session is never used), the caller's transaction rolls back with the error."""

    class Untouchable:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"emit used the session ({name}) for an unknown type")

    kind = "renamed"  # as a call site would build it
    session = cast(Any, Untouchable())
    with pytest.raises(ValueError, match=re.escape("unknown event type 'billing.meter.renamed'")):
        asyncio.run(emit(session, "acct_1", f"billing.meter.{kind}", {"id": "m_1"}, 0))
