"""PayPal transformer mutants that survived round 6's whole-file run (docs/mutation.md):
an authorize-intent order whose only payment is a capture keeps the order's 3-D Secure result
and the capture's network reference; an authentication_result PayPal sent as something else
than an object is no result; the two refusals of ``foreign_order`` say what they say.
Expected values are written out by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paymux.gateways.base import ThreeDSecure
from paymux.gateways.paypal import transformers as pp
from paymux.money import Money

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "three_d_secure"


def captured_order() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "paypal_order_captured.json").read_text())
    return data


def test_an_authorize_order_paid_by_a_capture_keeps_its_3ds_and_network_id() -> None:
    order = captured_order()
    order["purchase_units"][0]["payments"] = {
        "captures": [
            {
                "id": "C3",
                "status": "COMPLETED",
                "amount": {"currency_code": "USD", "value": "10.00"},
                "network_transaction_reference": {"id": "583948475839202"},
            }
        ]
    }
    result = pp.order_result({**order, "intent": "AUTHORIZE"})
    assert result.reference == "C3"
    assert result.three_d_secure == ThreeDSecure(result="authenticated", liability_shift=True)
    assert result.network_transaction_id == "583948475839202"


def test_an_authentication_result_that_is_not_an_object_is_none() -> None:
    order = {"payment_source": {"card": {"authentication_result": "Y"}}}
    assert pp.three_d_secure(order) is None


def test_foreign_order_says_why() -> None:
    usd_10 = Money(1000, "USD")
    other = {
        "purchase_units": [
            {"custom_id": "pi_other", "amount": {"currency_code": "USD", "value": "10.00"}}
        ]
    }
    assert pp.foreign_order(other, "pi_mine", usd_10) == (
        "This PayPal order was opened for another payment."
    )
    dearer = {"purchase_units": [{"amount": {"currency_code": "USD", "value": "12.00"}}]}
    assert pp.foreign_order(dearer, "pi_mine", usd_10) == (
        "This PayPal order is for another amount or currency than the payment."
    )
