"""The sandbox connector's recovery and cancel paths over a real (in-memory) sandbox
processor: lookup by key and by our reference, refunds found by id or by our refund id, the
truth reported when a void comes too late, and what the sandbox refuses (updates)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from paymux.gateways.base import (
    AuthorizeRequest,
    GatewayInvalidRequest,
    GatewayStatus,
    GatewayUnavailable,
)
from paymux.gateways.sandbox import SandboxGateway, SandboxProcessor
from paymux.gateways.sandbox.transformers import refund_result
from paymux.money import Money


@pytest.fixture
def gateway() -> Iterator[SandboxGateway]:
    processor = SandboxProcessor(":memory:")
    yield SandboxGateway(processor, webhook_secrets=["whsec_unit"])
    processor.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def authorize(
    gateway: SandboxGateway, pi: str, key: str, token: str = "pm_card_visa", capture: bool = True
) -> Any:
    request = AuthorizeRequest(Money(1000, "USD"), token, capture, pi)
    return run(gateway.authorize(request, idempotency_key=key))


def test_the_sandbox_never_forgets_a_key() -> None:
    assert SandboxGateway.idempotency_retention_seconds == 10 * 365 * 24 * 3600


# -- lookup ------------------------------------------------------------------------------------
def test_lookup_finds_the_charge_a_keyed_authorize_made(gateway: SandboxGateway) -> None:
    made = authorize(gateway, "pi_ours_1", "pi_ours_1:authorize:1", capture=False)
    found = run(gateway.lookup("pi_ours_1", "pi_ours_1:authorize:1"))
    assert found is not None
    assert (found.status, found.reference, found.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE,
        made.reference,
        1000,
    )


def test_lookup_never_takes_another_attempt_s_charge(gateway: SandboxGateway) -> None:
    authorize(gateway, "pi_ours_2", "pi_ours_2:authorize:1", token="pm_card_chargeDeclined")
    assert run(gateway.lookup("pi_ours_2", "pi_ours_2:authorize:2")) is None
    assert run(gateway.lookup("pi_never_seen", "pi_never_seen:authorize:1")) is None


def test_lookup_falls_back_to_our_reference_when_the_key_is_gone(
    gateway: SandboxGateway,
) -> None:
    made = authorize(gateway, "pi_ours_3", "pi_ours_3:authorize:1")
    with gateway.processor._lock:  # a processor that pruned its keys
        gateway.processor._db.execute("delete from idempotency")
    found = run(gateway.lookup("pi_ours_3", "pi_ours_3:authorize:1"))
    assert found is not None
    assert (found.status, found.reference, found.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        made.reference,
        1000,
    )


def test_lookup_of_a_transient_processing_error_finds_nothing(gateway: SandboxGateway) -> None:
    failed = authorize(gateway, "pi_ours_4", "pi_ours_4:authorize:1", token="pm_card_chargeDeclinedProcessingError")
    assert failed.status is GatewayStatus.FAILED
    assert run(gateway.lookup("pi_ours_4", "pi_ours_4:authorize:1")) is None


def test_lookup_through_an_outage_is_unavailable(gateway: SandboxGateway) -> None:
    gateway.processor.add_fault("lookup", "timeout")
    with pytest.raises(GatewayUnavailable):
        run(gateway.lookup("pi_ours_5", "pi_ours_5:authorize:1"))


# -- refunds -------------------------------------------------------------------------------------
def test_a_refund_is_found_by_its_id_or_by_our_refund_id(gateway: SandboxGateway) -> None:
    paid = authorize(gateway, "pi_ours_r", "pi_ours_r:authorize:1")
    first = run(gateway.refund(paid.reference, Money(300, "USD"), None,
                               idempotency_key="re_ours_a:refund"))
    second = run(gateway.refund(paid.reference, Money(200, "USD"), "duplicate",
                                idempotency_key="re_ours_b:refund"))
    assert (first.our_id, first.payment_reference) == ("re_ours_a", paid.reference)
    by_id = run(gateway.retrieve_refund(second.reference, our_id="re_ours_b",
                                        payment_reference=paid.reference))
    assert by_id is not None
    assert (by_id.reference, by_id.amount, by_id.reason) == (second.reference, 200, "duplicate")
    by_ours = run(gateway.retrieve_refund(None, our_id="re_ours_a",
                                          payment_reference=paid.reference))
    assert by_ours is not None and (by_ours.reference, by_ours.amount) == (first.reference, 300)
    unknown_id = run(gateway.retrieve_refund("re_sbx_unknown", our_id="re_ours_b",
                                             payment_reference=paid.reference))
    assert unknown_id is not None and unknown_id.reference == second.reference
    assert run(gateway.retrieve_refund(None, our_id="re_ours_never",
                                       payment_reference=paid.reference)) is None


def test_a_refund_made_before_our_id_was_kept_is_found_by_its_key(
    gateway: SandboxGateway,
) -> None:
    paid = authorize(gateway, "pi_ours_old", "pi_ours_old:authorize:1")
    old = gateway.processor.refund("re_ours_old:refund", str(paid.reference), 400, None)
    assert old["our_id"] is None
    found = run(gateway.retrieve_refund(None, our_id="re_ours_old",
                                        payment_reference=str(paid.reference)))
    assert found is not None and (found.reference, found.amount) == (old["id"], 400)


def test_refund_results_name_the_charge_and_our_refund() -> None:
    result = refund_result({"id": "re_sbx_1", "object": "refund", "amount": 50,
                            "status": "pending", "charge": "ch_sbx_1", "our_id": "re_ours",
                            "reason": "requested_by_customer"})
    assert (result.payment_reference, result.our_id, result.reason) == (
        "ch_sbx_1", "re_ours", "requested_by_customer")


# -- void and update -------------------------------------------------------------------------
def test_voiding_a_captured_charge_reports_the_money(gateway: SandboxGateway) -> None:
    paid = authorize(gateway, "pi_ours_v", "pi_ours_v:authorize:1")
    truth = run(gateway.void(paid.reference, idempotency_key="pi_ours_v:cancel"))
    assert (truth.status, truth.reference, truth.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        paid.reference,
        1000,
    )


def test_voiding_twice_reports_the_cancel(gateway: SandboxGateway) -> None:
    held = authorize(gateway, "pi_ours_w", "pi_ours_w:authorize:1", capture=False)
    voided = run(gateway.void(held.reference, idempotency_key="pi_ours_w:cancel"))
    assert voided.status is GatewayStatus.CANCELED
    again = run(gateway.void(held.reference, idempotency_key="pi_ours_w:cancel:2"))
    assert (again.status, again.reference) == (GatewayStatus.CANCELED, held.reference)


def test_voiding_a_declined_charge_is_still_refused(gateway: SandboxGateway) -> None:
    declined = authorize(gateway, "pi_ours_x", "pi_ours_x:authorize:1",
                         token="pm_card_chargeDeclined")
    with pytest.raises(GatewayInvalidRequest) as info:
        run(gateway.void(declined.reference, idempotency_key="pi_ours_x:cancel"))
    assert info.value.code == "charge_unexpected_state"


def test_the_sandbox_opens_nothing_so_updates_are_refused(gateway: SandboxGateway) -> None:
    with pytest.raises(GatewayInvalidRequest) as info:
        run(gateway.update_payment("ch_sbx_1", Money(100, "USD"), True, idempotency_key="k"))
    assert info.value.code == "update_unsupported"
