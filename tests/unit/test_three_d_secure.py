"""3-D Secure on every gateway (issue 12 section 3), below the API: what each connector asks
its provider for (``payment_method_options[card][request_three_d_secure]``, the
merchant-initiated flags), and the result it records from the provider's answer, read from the
providers' documented JSON (tests/fixtures/three_d_secure), the sandbox processor itself and,
for PayPal, the connector over a mock transport (the refusal to capture).

Expected values are written out here, never computed with the code under test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paymux.domain.errors import card_error
from paymux.gateways.base import (
    AuthorizeRequest,
    Decline,
    GatewayResult,
    GatewayStatus,
    InboundEvent,
    PaymentUpdate,
    ThreeDSecure,
)
from paymux.gateways.connectors import connectors
from paymux.gateways.paypal import PayPalGateway
from paymux.gateways.paypal import transformers as paypal
from paymux.gateways.sandbox import SandboxGateway, SandboxProcessor
from paymux.gateways.sandbox import transformers as sandbox
from paymux.gateways.square import transformers as square
from paymux.gateways.stripe import transformers as stripe
from paymux.money import Money
from paymux.services.three_d_secure import card_options, needs_charge_read, requested_option
from paymux.storage.models import PaymentIntent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "three_d_secure"
NULLS = {
    "authentication_flow": None,
    "electronic_commerce_indicator": None,
    "liability_shift": None,
    "result": None,
    "result_reason": None,
    "transaction_id": None,
    "version": None,
}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def request(**fields: Any) -> AuthorizeRequest:
    values: dict[str, Any] = {
        "amount": Money(1000, "USD"),
        "payment_method_token": "tok",
        "capture": True,
        "reference": "pi_123",
    }
    values.update(fields)
    return AuthorizeRequest(**values)


@pytest.fixture(scope="module", autouse=True)
def _gateway_codes() -> None:
    connectors()  # registers every connector's decline rows (card_error reads them)


# -- the stored result ---------------------------------------------------------------------
def test_the_stored_result_has_stripe_s_fields_and_liability_shift() -> None:
    found = ThreeDSecure(
        result="authenticated",
        authentication_flow="challenge",
        result_reason=None,
        version="2.2.0",
        electronic_commerce_indicator="05",
        transaction_id="f879ea1c",
        liability_shift=True,
    )
    assert found.as_dict() == {
        "authentication_flow": "challenge",
        "electronic_commerce_indicator": "05",
        "liability_shift": True,
        "result": "authenticated",
        "result_reason": None,
        "transaction_id": "f879ea1c",
        "version": "2.2.0",
    }
    assert ThreeDSecure(result=None).as_dict() == NULLS


# -- which option a confirmation asks for (services/three_d_secure.py) ---------------------
def _pi(options: str | None = None, *, off_session: bool = False, **outcome: Any) -> PaymentIntent:
    return PaymentIntent(
        id="pi_1",
        gateway="sandbox",
        off_session=off_session,
        payment_method_options={"card": {"request_three_d_secure": options}} if options else None,
        fraud_outcome={"outcome": outcome} if outcome else None,
    )


ASKED = {"request_3ds": "frr_3ds", "type": "authorized", "rule": None}
# fraud/decisions.py _fail_closed: the request_3ds rule became a review on a gateway that
# can't be asked (the review's rule is the request_3ds rule itself).
REVIEWED = {"request_3ds": "frr_3ds", "type": "manual_review", "rule": {"id": "frr_3ds"}}
OTHER_REVIEW = {"request_3ds": "frr_3ds", "type": "manual_review", "rule": {"id": "frr_other"}}


@pytest.mark.parametrize(
    ("pi", "expected"),
    [
        (_pi(), None),
        (_pi("automatic"), "automatic"),
        (_pi("any"), "any"),
        (_pi("challenge"), "challenge"),
        (_pi("challenge", off_session=True), None),  # nobody there to authenticate
        (_pi(None, **ASKED), "any"),  # the fraud rule's request_3ds
        (_pi("automatic", **ASKED), "any"),
        (_pi("challenge", **ASKED), "challenge"),  # a challenge stays a challenge
        (_pi(None, off_session=True, **ASKED), None),
        (_pi(None, **REVIEWED), None),  # reviewed instead: the gateway isn't asked
        (_pi("automatic", **REVIEWED), "automatic"),
        (_pi(None, **OTHER_REVIEW), "any"),  # a review by another rule: still asked
        (_pi(None, request_3ds=None, type="authorized"), None),
    ],
)
def test_the_option_a_confirmation_asks_for(pi: PaymentIntent, expected: str | None) -> None:
    assert requested_option(pi) == expected


def test_payment_method_options_are_stored_as_given() -> None:
    assert card_options(None) is None
    assert card_options({"card": None}) is None
    assert card_options({"card": {"request_three_d_secure": None}}) is None
    assert card_options({"card": {"request_three_d_secure": "any"}}) == {
        "card": {"request_three_d_secure": "any"}
    }


# -- Stripe ---------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["automatic", "any", "challenge"])
def test_stripe_takes_the_option_as_it_is(option: str) -> None:
    expected = {"card": {"request_three_d_secure": option}}
    assert (
        stripe.confirm_params(request(request_three_d_secure=option))["payment_method_options"]
        == expected
    )
    _, confirm = stripe.update_then_confirm_params(request(request_three_d_secure=option))
    assert confirm["payment_method_options"] == expected
    created = stripe.create_params(request(request_three_d_secure=option), confirm=True)
    assert created["payment_method_options"] == expected


@pytest.mark.parametrize(
    ("unread", "moved", "status", "recorded", "read"),
    [
        (True, True, "succeeded", None, True),  # completed by the webhook: read the charge
        (True, True, "requires_capture", None, True),
        (True, False, "succeeded", None, False),  # a duplicate, or the confirm's answer came first
        (True, True, "succeeded", {"result": "authenticated"}, False),  # recorded already
        (False, True, "succeeded", None, False),  # the event carried the charge
        # A decline: a retrieve's FAILED answer would count as a second decline (a second
        # payment_failed event), so the declined charge is not read on the webhook's word.
        (True, True, "requires_payment_method", None, False),
        (True, True, "processing", None, False),
    ],
)
def test_a_webhook_has_the_charge_read_only_when_it_completed_the_payment(
    unread: bool, moved: bool, status: str, recorded: dict[str, Any] | None, read: bool
) -> None:
    change = PaymentUpdate(
        reference="pi_1",
        result=GatewayResult(status=GatewayStatus.SUCCEEDED, reference="pi_3X"),
        charge_unread=unread,
    )
    pi = PaymentIntent(id="pi_1", gateway="stripe", status=status, three_d_secure=recorded)
    assert needs_charge_read(change, moved, pi) is read


def test_a_stripe_webhook_names_its_charge_by_id_only() -> None:
    paid = fixture("stripe_payment_intent_challenge_authenticated.json")
    paid["latest_charge"] = paid["latest_charge"]["id"]
    paid["metadata"] = {"paymux_id": "pi_ours"}
    event = InboundEvent("stripe", "evt_1", "payment_intent.succeeded",
                         {"type": "payment_intent.succeeded", "data": {"object": paid}})
    update = stripe.interpret_event(event)
    assert isinstance(update, PaymentUpdate) and update.charge_unread is True
    assert update.result.three_d_secure is None  # the id carries none
    failed = fixture("stripe_payment_intent_authentication_failed.json")  # no charge at all
    event = InboundEvent("stripe", "evt_2", "payment_intent.payment_failed",
                         {"type": "payment_intent.payment_failed", "data": {"object": failed}})
    update = stripe.interpret_event(event)
    assert isinstance(update, PaymentUpdate) and update.charge_unread is False


def test_stripe_off_session_is_flagged_and_asks_nothing() -> None:
    params = stripe.confirm_params(request(off_session=True))
    assert params == {"payment_method": "tok", "off_session": True}


def test_stripe_records_the_challenge_from_the_expanded_charge() -> None:
    result = stripe.payment_result(fixture("stripe_payment_intent_challenge_authenticated.json"))
    assert result.status is GatewayStatus.SUCCEEDED
    assert result.three_d_secure == ThreeDSecure(
        result="authenticated",
        authentication_flow="challenge",
        result_reason=None,
        version="2.2.0",
        electronic_commerce_indicator="05",
        transaction_id="f879ea1c-aa2c-4441-806d-e30406466d79",
        liability_shift=True,
    )
    assert result.network_transaction_id == "582110910210415"


def test_stripe_failed_authentication_is_a_decline_recorded_failed() -> None:
    """No charge is made when the challenge fails: Stripe's error code says it, alone."""
    result = stripe.payment_result(fixture("stripe_payment_intent_authentication_failed.json"))
    assert result.status is GatewayStatus.FAILED
    assert result.decline is not None
    assert result.decline.gateway_code == "payment_intent_authentication_failure"
    assert card_error("stripe", result.decline.gateway_code).code == (
        "payment_intent_authentication_failure"
    )
    assert result.three_d_secure == ThreeDSecure(result="failed", liability_shift=False)
    assert result.network_transaction_id is None


def test_stripe_failed_authentication_webhook_records_failed() -> None:
    pi = fixture("stripe_payment_intent_authentication_failed.json")
    event = InboundEvent(
        gateway="stripe",
        event_id="evt_1",
        type="payment_intent.payment_failed",
        payload={"data": {"object": pi}},
    )
    update = stripe.interpret_event(event)
    assert isinstance(update, PaymentUpdate)
    assert update.reference == "pi_ours_3ds_failed"
    assert update.result.three_d_secure == ThreeDSecure(result="failed", liability_shift=False)


def test_stripe_other_declines_record_no_result() -> None:
    pi = fixture("stripe_payment_intent_authentication_failed.json")
    pi["last_payment_error"] = {"code": "card_declined", "decline_code": "insufficient_funds"}
    assert stripe.payment_result(pi).three_d_secure is None
    # An authentication failure left behind on a PaymentIntent that then succeeded with
    # another card: the charge decides (here: none ran).
    later = {**pi, "status": "processing"}
    later["last_payment_error"] = {"code": "payment_intent_authentication_failure"}
    assert stripe.payment_result(later).three_d_secure is None


def test_stripe_charge_not_expanded_or_without_3ds_records_nothing() -> None:
    pi = fixture("stripe_payment_intent_challenge_authenticated.json")
    assert stripe.payment_result({**pi, "latest_charge": "ch_1"}).three_d_secure is None
    card = pi["latest_charge"]["payment_method_details"]["card"]
    assert stripe.three_d_secure({**card, "three_d_secure": None}) is None
    assert stripe.three_d_secure({}) is None


@pytest.mark.parametrize(
    ("result", "shift"),
    [
        ("authenticated", True),
        ("attempt_acknowledged", True),
        ("exempted", False),
        ("failed", False),
        ("not_supported", False),
        ("processing_error", False),
        ("something_new", None),
        (None, None),
    ],
)
def test_stripe_liability_shift_by_result(result: str | None, shift: bool | None) -> None:
    found = stripe.three_d_secure({"three_d_secure": {"result": result, "result_reason": "x"}})
    assert found == ThreeDSecure(result=result, result_reason="x", liability_shift=shift)


# -- PayPal: what is asked ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "method"),
    [
        ("any", "SCA_ALWAYS"),
        ("challenge", "SCA_ALWAYS"),
        ("automatic", "SCA_WHEN_REQUIRED"),
        (None, None),
        ("", None),
        ("sometimes", None),
    ],
)
def test_paypal_verification_method(option: str | None, method: str | None) -> None:
    assert paypal.verification_method(option) == method


def test_paypal_saved_card_on_session_asks_for_the_verification() -> None:
    body = paypal.vault_order_request(request(request_three_d_secure="any"), "card", "v1")
    assert body["payment_source"] == {
        "card": {
            "vault_id": "v1",
            "stored_credential": {
                "payment_initiator": "CUSTOMER",
                "payment_type": "UNSCHEDULED",
                "usage": "SUBSEQUENT",
            },
            "attributes": {"verification": {"method": "SCA_ALWAYS"}},
        }
    }
    plain = paypal.vault_order_request(request(), "card", "v1")
    assert "attributes" not in plain["payment_source"]["card"]


def test_paypal_saved_card_verification_sends_the_payer_back_to_return_url() -> None:
    """PayPal's payer-action page (3-D Secure) returns the payer to the card's
    experience_context: sent with the verification, and only with it."""
    asked = request(request_three_d_secure="challenge", return_url="https://shop.example/back")
    card = paypal.vault_order_request(asked, "card", "v1")["payment_source"]["card"]
    assert card["attributes"] == {"verification": {"method": "SCA_ALWAYS"}}
    assert card["experience_context"] == {
        "return_url": "https://shop.example/back",
        "cancel_url": "https://shop.example/back",
    }
    not_asked = request(return_url="https://shop.example/back")
    assert (
        "experience_context"
        not in paypal.vault_order_request(not_asked, "card", "v1")["payment_source"]["card"]
    )
    off = request(
        off_session=True, request_three_d_secure="any", return_url="https://shop.example/back"
    )
    assert (
        "experience_context"
        not in paypal.vault_order_request(off, "card", "v1")["payment_source"]["card"]
    )


def test_paypal_off_session_is_merchant_initiated_and_references_the_first_payment() -> None:
    off = request(
        off_session=True, network_transaction_id="120242545218431", request_three_d_secure="any"
    )  # never sent off session
    assert paypal.vault_order_request(off, "card", "v1")["payment_source"] == {
        "card": {
            "vault_id": "v1",
            "stored_credential": {
                "payment_initiator": "MERCHANT",
                "payment_type": "UNSCHEDULED",
                "usage": "SUBSEQUENT",
                "previous_network_transaction_reference": {"id": "120242545218431"},
            },
        }
    }


@pytest.mark.parametrize(
    ("network_id", "sent"),
    [("12345678", False), ("123456789", True), ("1" * 36, True), ("1" * 37, False), (None, False)],
)
def test_paypal_sends_only_a_network_id_its_api_takes(network_id: str | None, sent: bool) -> None:
    off = request(off_session=True, network_transaction_id=network_id)
    stored = paypal.vault_order_request(off, "card", "v1")["payment_source"]["card"][
        "stored_credential"
    ]
    assert ("previous_network_transaction_reference" in stored) is sent


def test_paypal_on_session_never_references_an_earlier_payment() -> None:
    on = request(network_transaction_id="120242545218431")
    stored = paypal.vault_order_request(on, "card", "v1")["payment_source"]["card"][
        "stored_credential"
    ]
    assert stored == {
        "payment_initiator": "CUSTOMER",
        "payment_type": "UNSCHEDULED",
        "usage": "SUBSEQUENT",
    }


def test_paypal_wallet_vault_tokens_carry_no_card_fields() -> None:
    body = paypal.vault_order_request(
        request(off_session=True, request_three_d_secure="any", network_transaction_id="1" * 15),
        "paypal",
        "v1",
    )
    assert body["payment_source"] == {"paypal": {"vault_id": "v1"}}


# -- PayPal: the result, read before capture ---------------------------------------------------
def _order_with(enrollment: str | None, status: str | None, shift: str | None) -> dict[str, Any]:
    three_ds: dict[str, Any] = {}
    if enrollment is not None:
        three_ds["enrollment_status"] = enrollment
    if status is not None:
        three_ds["authentication_status"] = status
    found: dict[str, Any] = {"three_d_secure": three_ds}
    if shift is not None:
        found["liability_shift"] = shift
    return {
        "id": "O1",
        "status": "APPROVED",
        "payment_source": {"card": {"authentication_result": found}},
    }


# PayPal's "Recommended action" table (developer.paypal.com/docs/checkout/advanced/
# customize/3d-secure/response-parameters/), row by row: True = continue.
@pytest.mark.parametrize(
    ("enrollment", "status", "shift", "goes_on"),
    [
        ("Y", "Y", "POSSIBLE", True),
        ("Y", "N", "NO", False),
        ("Y", "R", "NO", False),
        ("Y", "A", "POSSIBLE", True),
        ("Y", "U", "UNKNOWN", False),
        ("Y", "U", "NO", False),
        ("Y", "C", "UNKNOWN", False),
        ("Y", None, "NO", False),
        ("N", None, "NO", True),
        ("U", None, "NO", True),
        ("U", None, "UNKNOWN", False),
        ("B", None, "NO", True),
        # Not in the table: its liability_shift column decides.
        ("Y", "D", "YES", True),
        ("Y", "I", "POSSIBLE", True),
        ("Y", "D", "NO", False),
        (None, None, "UNKNOWN", False),
        (None, None, None, False),
    ],
)
def test_paypal_recommended_action(
    enrollment: str | None, status: str | None, shift: str | None, goes_on: bool
) -> None:
    refusal = paypal.authentication_refusal(_order_with(enrollment, status, shift))
    if goes_on:
        assert refusal is None
    else:
        assert refusal == Decline(
            gateway_code="PAYMUX_3DS_NOT_AUTHENTICATED",
            message="PayPal: 3-D Secure did not authenticate the card "
            f"(enrollment {enrollment}, authentication {status}, liability shift {shift}).",
        )


def test_paypal_orders_without_a_card_authentication_go_on() -> None:
    assert paypal.authentication_refusal({"id": "O1"}) is None
    assert paypal.authentication_refusal({"payment_source": {"paypal": {}}}) is None
    assert paypal.authentication_refusal({"payment_source": {"card": {"brand": "VISA"}}}) is None
    assert paypal.authentication_refusal({"payment_source": "x"}) is None
    assert paypal.three_d_secure({"payment_source": {"card": {"brand": "VISA"}}}) is None


@pytest.mark.parametrize("three_ds", [None, "x"])
def test_paypal_liability_shift_alone_still_decides(three_ds: Any) -> None:
    """An authentication_result with no (or a malformed) three_d_secure object."""
    order = {
        "payment_source": {
            "card": {"authentication_result": {"liability_shift": "NO", "three_d_secure": three_ds}}
        }
    }
    assert paypal.authentication_refusal(order) is not None
    assert paypal.three_d_secure(order) == ThreeDSecure(result=None, liability_shift=False)
    order["payment_source"]["card"]["authentication_result"]["liability_shift"] = "POSSIBLE"
    assert paypal.authentication_refusal(order) is None


def test_paypal_s_refusal_is_an_authentication_failure_in_our_taxonomy() -> None:
    error = card_error("paypal", "PAYMUX_3DS_NOT_AUTHENTICATED", "no")
    assert error.code == "payment_intent_authentication_failure"


@pytest.mark.parametrize(
    ("enrollment", "status", "shift", "expected"),
    [
        ("Y", "Y", "POSSIBLE", ThreeDSecure(result="authenticated", liability_shift=True)),
        ("Y", "A", "POSSIBLE", ThreeDSecure(result="attempt_acknowledged", liability_shift=True)),
        ("Y", "N", "NO", ThreeDSecure(result="failed", liability_shift=False)),
        (
            "Y",
            "R",
            "NO",
            ThreeDSecure(result="failed", result_reason="rejected", liability_shift=False),
        ),
        ("Y", "C", "UNKNOWN", ThreeDSecure(result="failed", result_reason="abandoned")),
        ("Y", "U", "NO", ThreeDSecure(result="processing_error", liability_shift=False)),
        ("Y", "D", "NO", ThreeDSecure(result="failed", liability_shift=False)),
        ("Y", "I", "NO", ThreeDSecure(result="exempted", liability_shift=False)),
        (
            "N",
            None,
            "NO",
            ThreeDSecure(
                result="not_supported", result_reason="card_not_enrolled", liability_shift=False
            ),
        ),
        ("U", None, "UNKNOWN", ThreeDSecure(result="processing_error")),
        (
            "B",
            None,
            "NO",
            ThreeDSecure(result="exempted", result_reason="bypassed", liability_shift=False),
        ),
        ("Y", "Y", "YES", ThreeDSecure(result="authenticated", liability_shift=True)),
        (None, None, None, ThreeDSecure(result=None)),
    ],
)
def test_paypal_result_in_stripe_s_words(
    enrollment: str | None, status: str | None, shift: str | None, expected: ThreeDSecure
) -> None:
    assert paypal.three_d_secure(_order_with(enrollment, status, shift)) == expected


def test_paypal_authentication_flow_is_kept_in_lower_case() -> None:
    order = _order_with("Y", "Y", "POSSIBLE")
    order["payment_source"]["card"]["authentication_result"]["authentication_flow"] = "CHALLENGE"
    found = paypal.three_d_secure(order)
    assert found is not None and found.authentication_flow == "challenge"


def test_paypal_captured_order_carries_its_result_and_network_id() -> None:
    result = paypal.order_result(fixture("paypal_order_captured.json"))
    assert (result.status, result.reference, result.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        "3C679366HH908993F",
        1000,
    )
    assert result.three_d_secure == ThreeDSecure(result="authenticated", liability_shift=True)
    assert result.network_transaction_id == "120242545218431"


def test_paypal_authorized_order_carries_its_network_id() -> None:
    order = fixture("paypal_order_captured.json")
    unit = order["purchase_units"][0]
    unit["payments"] = {
        "authorizations": [
            {
                "id": "AUTH1",
                "status": "CREATED",
                "amount": {"currency_code": "USD", "value": "10.00"},
                "network_transaction_reference": {"id": "583948475839201"},
            }
        ]
    }
    result = paypal.order_result({**order, "intent": "AUTHORIZE"})
    assert (result.status, result.reference) == (GatewayStatus.REQUIRES_CAPTURE, "AUTH1")
    assert result.network_transaction_id == "583948475839201"
    assert result.three_d_secure == ThreeDSecure(result="authenticated", liability_shift=True)
    # A capture-intent order whose only payment is an authorization, and one with no network
    # reference at all.
    unit["payments"] = {"captures": [{"id": "C2", "status": "COMPLETED"}]}
    captured = paypal.order_result({**order, "intent": "AUTHORIZE"})
    assert (captured.reference, captured.network_transaction_id) == ("C2", None)


def test_paypal_approved_order_carries_its_result_before_any_payment() -> None:
    result = paypal.order_result(fixture("paypal_order_3ds_failed.json"))
    assert result.status is GatewayStatus.OPEN
    assert result.three_d_secure == ThreeDSecure(result="failed", liability_shift=False)


ORDER = "5O190127TN364715T"


class Seam:
    def __init__(self, routes: dict[str, httpx.Response]) -> None:
        self.routes = routes
        self.calls: list[str] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v1/oauth2/token":
            return httpx.Response(
                200, json={"access_token": "T", "token_type": "Bearer", "expires_in": 32400}
            )
        self.calls.append(f"{req.method} {req.url.path}")
        return self.routes[f"{req.method} {req.url.path}"]


def _paypal_authorize(seam: Seam, req: AuthorizeRequest) -> GatewayResult:
    async def go() -> GatewayResult:
        gateway = PayPalGateway(
            "c", "s", api_base="https://paypal.test", transport=httpx.MockTransport(seam)
        )
        try:
            return await gateway.authorize(req, idempotency_key="pi_123:authorize:1")
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def test_paypal_never_captures_an_order_whose_authentication_failed() -> None:
    seam = Seam(
        {
            f"GET /v2/checkout/orders/{ORDER}": httpx.Response(
                200, json=fixture("paypal_order_3ds_failed.json")
            )
        }
    )
    result = _paypal_authorize(seam, request(payment_method_token=ORDER))
    assert seam.calls == [f"GET /v2/checkout/orders/{ORDER}"]  # no capture sent
    assert (result.status, result.reference) == (GatewayStatus.FAILED, ORDER)
    assert result.decline is not None
    assert result.decline.gateway_code == "PAYMUX_3DS_NOT_AUTHENTICATED"
    assert result.three_d_secure == ThreeDSecure(result="failed", liability_shift=False)


def test_paypal_captures_an_authenticated_order_and_records_it() -> None:
    seam = Seam(
        {
            f"GET /v2/checkout/orders/{ORDER}": httpx.Response(
                200, json=fixture("paypal_order_3ds_authenticated.json")
            ),
            f"POST /v2/checkout/orders/{ORDER}/capture": httpx.Response(
                201, json=fixture("paypal_order_captured.json")
            ),
        }
    )
    result = _paypal_authorize(seam, request(payment_method_token=ORDER))
    assert seam.calls == [
        f"GET /v2/checkout/orders/{ORDER}",
        f"POST /v2/checkout/orders/{ORDER}/capture",
    ]
    assert (result.status, result.amount_captured) == (GatewayStatus.SUCCEEDED, 1000)
    assert result.three_d_secure == ThreeDSecure(result="authenticated", liability_shift=True)
    assert result.network_transaction_id == "120242545218431"


def test_paypal_saved_card_back_from_the_challenge_is_checked_with_the_order_read() -> None:
    """A saved-card order that waited for the payer (SCA_ALWAYS) is read once to resume it;
    that read decides, no second GET."""
    seam = Seam(
        {
            f"GET /v2/checkout/orders/{ORDER}": httpx.Response(
                200, json=fixture("paypal_order_3ds_failed.json")
            )
        }
    )
    result = _paypal_authorize(
        seam, request(payment_method_token="card:8kk8451t", gateway_reference=ORDER)
    )
    assert seam.calls == [f"GET /v2/checkout/orders/{ORDER}"]
    assert result.status is GatewayStatus.FAILED
    assert result.decline is not None
    assert result.decline.gateway_code == "PAYMUX_3DS_NOT_AUTHENTICATED"


# -- Square ------------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["any", "challenge"])
def test_square_refuses_3ds_without_a_verify_buyer_token(option: str) -> None:
    refused = square.verification_missing(request(request_three_d_secure=option))
    assert refused == GatewayResult(
        status=GatewayStatus.FAILED,
        reference=None,
        decline=Decline(
            gateway_code="CARD_DECLINED_VERIFICATION_REQUIRED",
            message="3-D Secure was requested: confirm with a verifyBuyer verification_token.",
        ),
        raw={"id": None, "status": "FAILED"},
    )
    assert card_error("square", "CARD_DECLINED_VERIFICATION_REQUIRED").code == (
        "authentication_required"
    )


@pytest.mark.parametrize(
    ("option", "token"),
    [("any", "verf:1"), ("challenge", "verf:1"), ("automatic", None), (None, None)],
)
def test_square_goes_ahead_with_a_token_or_without_an_explicit_ask(
    option: str | None, token: str | None
) -> None:
    assert (
        square.verification_missing(
            request(request_three_d_secure=option, verification_token=token)
        )
        is None
    )


def _square_result(status: GatewayStatus) -> GatewayResult:
    return GatewayResult(status=status, reference="sq_1")


@pytest.mark.parametrize(
    ("status", "recorded"),
    [
        (GatewayStatus.SUCCEEDED, True),
        (GatewayStatus.REQUIRES_CAPTURE, True),
        (GatewayStatus.FAILED, False),
        (GatewayStatus.PROCESSING, False),
    ],
)
def test_square_records_the_buyer_verification_of_an_approved_payment(
    status: GatewayStatus, recorded: bool
) -> None:
    """A verifyBuyer token says verification ran, not how it went: never ``authenticated``."""
    verified = square.with_buyer_verification(
        request(verification_token="verf:1"), _square_result(status)
    )
    expected = ThreeDSecure(result=None) if recorded else None
    assert verified.three_d_secure == expected
    assert square.with_buyer_verification(request(), _square_result(status)).three_d_secure is None


def test_square_off_session_is_not_customer_initiated() -> None:
    off = square.create_payment_params(
        request(off_session=True, customer_token="C1"), location_id=None, idempotency_key="k"
    )
    assert off["customer_details"] == {"customer_initiated": False}
    on = square.create_payment_params(request(), location_id=None, idempotency_key="k")
    assert "customer_details" not in on


# -- the sandbox ---------------------------------------------------------------------------------
@pytest.fixture
def sandbox_gateway() -> Iterator[SandboxGateway]:
    processor = SandboxProcessor(":memory:")
    yield SandboxGateway(processor, webhook_secrets=["whsec_unit"])
    processor.close()


def _sandbox_authorize(gateway: SandboxGateway, key: str, **fields: Any) -> GatewayResult:
    values: dict[str, Any] = {"payment_method_token": "pm_card_visa", "reference": f"pi_{key}"}
    values.update(fields)
    result: GatewayResult = asyncio.run(
        gateway.authorize(request(**values), idempotency_key=f"pi_{key}:authorize:1")
    )
    return result


@pytest.mark.parametrize(
    ("option", "challenged"),
    [(None, False), ("automatic", False), ("any", True), ("challenge", True)],
)
def test_sandbox_any_or_challenge_forces_its_challenge_page(
    sandbox_gateway: SandboxGateway, option: str | None, challenged: bool
) -> None:
    result = _sandbox_authorize(sandbox_gateway, f"c{option}", request_three_d_secure=option)
    if challenged:
        assert result.status is GatewayStatus.REQUIRES_ACTION
        assert result.next_action is not None
        assert "/sandbox/3ds/" in result.next_action["redirect_to_url"]["url"]
        assert result.three_d_secure is None  # not answered yet
    else:
        assert result.status is GatewayStatus.SUCCEEDED
        assert result.three_d_secure is None  # no 3-D Secure ran


@pytest.mark.parametrize(
    ("success", "status", "expected"),
    [
        (
            True,
            GatewayStatus.SUCCEEDED,
            {
                "authentication_flow": "challenge",
                "result": "authenticated",
                "result_reason": None,
                "version": "2.2.0",
                "liability_shift": True,
            },
        ),
        (
            False,
            GatewayStatus.FAILED,
            {
                "authentication_flow": "challenge",
                "result": "failed",
                "result_reason": "rejected",
                "version": "2.2.0",
                "liability_shift": False,
            },
        ),
    ],
)
def test_sandbox_records_the_challenge_s_answer(
    sandbox_gateway: SandboxGateway, success: bool, status: GatewayStatus, expected: dict[str, Any]
) -> None:
    waiting = _sandbox_authorize(
        sandbox_gateway, f"a{success}", payment_method_token="pm_card_threeDSecure2Required"
    )
    assert waiting.status is GatewayStatus.REQUIRES_ACTION and waiting.reference
    sandbox_gateway.processor.complete_3ds(waiting.reference, success)
    answered = asyncio.run(sandbox_gateway.retrieve(waiting.reference))
    assert answered.status is status
    assert answered.three_d_secure is not None
    assert answered.three_d_secure.as_dict() == {**NULLS, **expected}
    if success:
        assert answered.network_transaction_id == "ntx_" + waiting.reference.removeprefix("ch_")
    else:
        assert answered.decline is not None
        assert answered.decline.gateway_code == "authentication_failed"
        assert answered.network_transaction_id is None


def test_sandbox_off_session_card_that_needs_3ds_ends_authentication_required(
    sandbox_gateway: SandboxGateway,
) -> None:
    result = _sandbox_authorize(
        sandbox_gateway,
        "off",
        off_session=True,
        payment_method_token="pm_card_threeDSecure2Required",
    )
    assert result.status is GatewayStatus.FAILED
    assert result.decline is not None and result.decline.gateway_code == "authentication_required"
    assert card_error("sandbox", "authentication_required").code == "authentication_required"


def test_sandbox_merchant_initiated_charge_keeps_the_reference_it_was_given(
    sandbox_gateway: SandboxGateway,
) -> None:
    result = _sandbox_authorize(
        sandbox_gateway, "mit", off_session=True, network_transaction_id="ntx_first"
    )
    assert result.status is GatewayStatus.SUCCEEDED
    assert result.raw["previous_network_transaction_id"] == "ntx_first"


@pytest.mark.parametrize("found", [None, "x", 3])
def test_sandbox_result_absent_or_not_an_object_is_none(found: Any) -> None:
    assert sandbox.three_d_secure(found) is None


def test_sandbox_result_fields() -> None:
    assert sandbox.three_d_secure(
        {
            "result": "attempt_acknowledged",
            "version": "2.1.0",
            "authentication_flow": "frictionless",
            "result_reason": "r",
        }
    ) == ThreeDSecure(
        result="attempt_acknowledged",
        authentication_flow="frictionless",
        result_reason="r",
        version="2.1.0",
        liability_shift=True,  # read as Stripe's: an acknowledged attempt shifts liability
    )
