"""3-D Secure checks on the way back to a payment that may already have moved money (issue 12
section 3): PayPal's read-before-capture refusal applies only to an order still APPROVED and
unpaid; an order already captured or authorized (an earlier try whose answer was lost, a
capture made before this check existed, or one made outside paymux) is reported as it stands.

PayPal is answered at the HTTP seam (httpx.MockTransport), in the shapes of PayPal's Orders v2
reference (tests/fixtures/three_d_secure). Expected values are written out here.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
from test_three_d_secure import ORDER, Seam, fixture
from test_three_d_secure import _paypal_authorize as authorize
from test_three_d_secure import request as base_request

from paymux.gateways.base import AuthorizeRequest, GatewayStatus, ThreeDSecure
from paymux.gateways.paypal import transformers as paypal

FAILED_3DS = {
    "liability_shift": "NO",
    "three_d_secure": {"enrollment_status": "Y", "authentication_status": "N"},
}


def request(**fields: Any) -> AuthorizeRequest:
    return base_request(**{"payment_method_token": ORDER, **fields})


def captured_with_failed_3ds() -> dict[str, Any]:
    """The captured order (COMPLETED, capture 3C679366HH908993F) whose card's authentication
    failed: captured before paymux read 3-D Secure results, or outside paymux."""
    order = fixture("paypal_order_captured.json")
    order["payment_source"]["card"]["authentication_result"] = copy.deepcopy(FAILED_3DS)
    return order


def already(issue: str) -> httpx.Response:
    return httpx.Response(
        422,
        json={"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": issue}], "debug_id": "d1"},
    )


def test_an_order_already_captured_is_reported_captured_whatever_its_3ds() -> None:
    order = captured_with_failed_3ds()
    seam = Seam(
        {
            f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=order),
            f"POST /v2/checkout/orders/{ORDER}/capture": already("ORDER_ALREADY_CAPTURED"),
        }
    )
    result = authorize(seam, request())
    assert (result.status, result.reference, result.amount_captured) == (
        GatewayStatus.SUCCEEDED,
        "3C679366HH908993F",
        1000,
    )
    assert result.decline is None
    assert result.three_d_secure == ThreeDSecure(result="failed", liability_shift=False)
    assert seam.calls == [
        f"GET /v2/checkout/orders/{ORDER}",
        f"POST /v2/checkout/orders/{ORDER}/capture",
        f"GET /v2/checkout/orders/{ORDER}",
    ]


def test_an_approved_order_holding_an_authorization_is_reported_authorized() -> None:
    """APPROVED still, but an authorization is in it (manual capture, authorized by a try
    whose answer was lost): reported as the authorization, never FAILED."""
    order = fixture("paypal_order_3ds_failed.json")
    order["intent"] = "AUTHORIZE"
    order["purchase_units"][0]["payments"] = {
        "authorizations": [
            {
                "id": "0AW2184448108334S",
                "status": "CREATED",
                "amount": {"currency_code": "USD", "value": "10.00"},
            }
        ]
    }
    assert order["status"] == "APPROVED"
    seam = Seam(
        {
            f"GET /v2/checkout/orders/{ORDER}": httpx.Response(200, json=order),
            f"POST /v2/checkout/orders/{ORDER}/authorize": already("ORDER_ALREADY_AUTHORIZED"),
        }
    )
    result = authorize(seam, request(capture=False))
    assert (result.status, result.reference, result.amount_authorized) == (
        GatewayStatus.REQUIRES_CAPTURE,
        "0AW2184448108334S",
        1000,
    )
    assert result.decline is None


def test_the_refusal_needs_an_approved_order_with_no_payment() -> None:
    approved = fixture("paypal_order_3ds_failed.json")
    assert approved["status"] == "APPROVED"
    refusal = paypal.completion_refusal(approved)
    assert refusal is not None and refusal.gateway_code == "PAYMUX_3DS_NOT_AUTHENTICATED"
    assert paypal.completion_refusal(captured_with_failed_3ds()) is None
    assert paypal.completion_refusal({**approved, "status": "COMPLETED"}) is None
    assert paypal.completion_refusal({**approved, "status": "PAYER_ACTION_REQUIRED"}) is None
    unit = {"payments": {"captures": [{"id": "C1", "status": "PENDING"}]}}
    assert paypal.completion_refusal({**approved, "purchase_units": [unit]}) is None
    empty = {"payments": {"captures": [], "authorizations": []}}
    assert paypal.completion_refusal({**approved, "purchase_units": [empty]}) is not None
