"""PayPal's card fields (the JS SDK's ``CardFields``) at the fake PayPal: what PayPal does
when the page's ``submit()`` sends the card entered in PayPal's own fields for an order the
merchant opened with ``payment_source.card.attributes.verification`` (paymux's card order).

``submit_card`` puts the card on the order, runs "3-D Secure" per test card and leaves the
order APPROVED with ``payment_source.card.authentication_result`` as PayPal sets it (its
"3D Secure response parameters"), for the merchant to read before capturing:

- ``CHALLENGE_CARD`` (PayPal's sandbox 3-D Secure challenge card): the issuer's challenge
  first (``{"challenge": true}``); asked again with ``challenge`` "passed": enrollment Y,
  authentication Y, liability shift POSSIBLE; "failed": Y, N, NO;
- ``DECLINED_CARD``: no authentication asked (SCA_WHEN_REQUIRED), refused at capture
  (INSTRUMENT_DECLINED);
- any other card: frictionless under SCA_ALWAYS (Y, Y, POSSIBLE), none asked under
  SCA_WHEN_REQUIRED (no authentication_result).
"""

from __future__ import annotations

from typing import Any

from support.paypal_fake import FakePayPal

__all__ = ["CHALLENGE_CARD", "DECLINED_CARD", "submit_card"]

CHALLENGE_CARD = "4000000000001091"
DECLINED_CARD = "4000000000000002"
_PASSED = {
    "liability_shift": "POSSIBLE",
    "three_d_secure": {"enrollment_status": "Y", "authentication_status": "Y"},
}
_FAILED = {
    "liability_shift": "NO",
    "three_d_secure": {"enrollment_status": "Y", "authentication_status": "N"},
}


def submit_card(
    paypal: FakePayPal, order_id: str, card: dict[str, str], challenge: str | None = None
) -> dict[str, Any]:
    """The card fields' submit for ``order_id``: ``card`` holds the fields (number, expiry,
    cvv, name). The answer the SDK gets: ``{"challenge": true}`` (show the issuer's page),
    ``{"liability_shift": ...}`` once the order is approved, or ``{"error": ...}``."""
    number = "".join(ch for ch in card.get("number", "") if ch.isdigit())
    if len(number) < 12 or not card.get("expiry") or not card.get("cvv"):
        return {"error": "INVALID_CARD"}
    with paypal.lock:
        order = paypal.orders.get(order_id)
        if order is None or "card" not in (order.get("payment_source") or {}):
            return {"error": "INVALID_RESOURCE_ID"}
        if order["status"] not in ("CREATED", "APPROVED"):
            return {"error": "ORDER_NOT_APPROVABLE"}
        result: dict[str, Any] | None = None
        if number == CHALLENGE_CARD:
            if challenge is None:
                return {"challenge": True}
            result = _PASSED if challenge == "passed" else _FAILED
        elif number != DECLINED_CARD and order.get("_verification") == "SCA_ALWAYS":
            result = _PASSED
        month, _, year = card["expiry"].partition("/")
        source: dict[str, Any] = {
            "name": card.get("name", ""),
            "last_digits": number[-4:],
            "brand": "VISA",
            "type": "CREDIT",
            "expiry": f"20{year.strip()[-2:]}-{month.strip():0>2}",
        }
        if result is not None:
            source["authentication_result"] = dict(result)
        order["payment_source"] = {"card": source}
        order["status"] = "APPROVED"
        order["_decline"] = "INSTRUMENT_DECLINED" if number == DECLINED_CARD else None
    return {"orderID": order_id, "liability_shift": (result or {}).get("liability_shift", "NO")}
