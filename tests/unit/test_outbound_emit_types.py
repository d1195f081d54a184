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
import contextlib
import itertools
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from paymux.billing import meters, subscription_views
from paymux.billing.rules.states import SUBSCRIPTION_TRANSITIONS
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
from paymux.storage.models import Meter, Subscription

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


class _Recorder:
    """Stands in for ``emit`` where a module calls it: records the types asked for (the
    session is not touched), so the test sees what the code computes, not what it lists."""

    def __init__(self) -> None:
        self.types: list[str] = []

    async def __call__(
        self, session: Any, account_id: str, type_: str, obj: dict[str, Any], now_us: int
    ) -> None:
        self.types.append(type_)


def test_every_subscription_move_event_is_catalogued(monkeypatch: pytest.MonkeyPatch) -> None:
    """``move`` run on every move of the state table (each starting status, each trigger)."""
    recorder = _Recorder()
    monkeypatch.setattr(subscription_views, "emit", recorder)

    async def view(s: Any, sub: Subscription) -> dict[str, Any]:
        return {"id": sub.id, "status": sub.status}

    monkeypatch.setattr(subscription_views, "view_in", view)

    async def run_all() -> int:
        moved = 0
        for (status, trigger), after in SUBSCRIPTION_TRANSITIONS.items():
            sub = Subscription(id="sub_1", account_id="acct_1", status=status.value)
            changed = await subscription_views.move(cast(Any, None), sub, trigger.value, 1)
            assert changed == (after != status)
            moved += changed
        return moved

    moved = asyncio.run(run_all())
    assert len(recorder.types) == moved > 0  # one event per move that changed the status
    found = set(recorder.types)
    # The run reached every kind of move (stated here, not taken from the module).
    assert found == {
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
    assert sorted(found - EVENT_TYPES) == []


class _Session:
    """What ``set_status`` asks of its session besides ``get_owned`` (nothing)."""


class _Db:
    is_sqlite = True  # the ingest's statements are built for a backend (not used here)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[_Session]:
        yield _Session()


def test_every_meter_status_event_is_catalogued(monkeypatch: pytest.MonkeyPatch) -> None:
    """``MetersService.set_status`` run both ways: deactivate an active meter, reactivate it."""
    recorder = _Recorder()
    monkeypatch.setattr(meters, "emit", recorder)
    meter = Meter(
        id="mtr_1",
        account_id="acct_1",
        livemode=False,
        display_name="m",
        event_name="e",
        aggregation="sum",
        customer_mapping_key="stripe_customer_id",
        value_key="value",
        status="active",
        deactivated_us=None,
        created_us=0,
        updated_us=0,
    )

    async def owned(s: Any, model: type, object_id: str, account_id: str, **kw: Any) -> Meter:
        assert (model, object_id, account_id) == (Meter, "mtr_1", "acct_1")
        return meter

    monkeypatch.setattr(meters, "get_owned", owned)
    ctx = SimpleNamespace(db=_Db(), now_us=lambda: 1)
    service = meters.MetersService(cast(Any, ctx))

    async def both() -> None:
        await service.set_status("acct_1", "mtr_1", False)
        assert meter.status == "inactive"
        await service.set_status("acct_1", "mtr_1", True)
        assert meter.status == "active"

    asyncio.run(both())
    assert recorder.types == ["billing.meter.deactivated", "billing.meter.reactivated"]
    assert sorted(set(recorder.types) - EVENT_TYPES) == []


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
