"""Pure pieces of issue 16: which requests carry a live-mode key (by prefix alone), and the
bounded labels a gateway call is counted under (a decline code: a catalogued one or
``other``)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from paymux.api.middleware import _live_key_sent
from paymux.gateways.base import Decline, GatewayResult, GatewayStatus
from paymux.gateways.connectors import connectors
from paymux.observability.metrics import (
    FRAUD_DECISIONS,
    PAYMENTS,
    count_fraud_decision,
    decline_label,
    describe_call,
    observe_gateway_call,
)


def scope(authorization: str | None) -> dict[str, Any]:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return {"type": "http", "headers": headers}


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "live"),
    [
        ("Bearer sk_live_abc", True),
        ("bearer   pk_live_abc", True),
        ("Bearer rk_live_abc", True),
        (basic("sk_live_abc"), True),
        ("Bearer sk_test_abc", False),
        (basic("sk_test_abc"), False),
        ("Bearer whsec_live_abc", False),
        ("Bearer xsk_live_abc", False),  # the prefix, at the start only
        ("Basic !!!notbase64", False),
        ("Token sk_live_abc", False),  # not a scheme paymux reads: 401 later, not 403
        (None, False),
    ],
)
def test_a_live_key_is_told_by_its_prefix(authorization: str | None, live: bool) -> None:
    assert _live_key_sent(scope(authorization)) is live


class _Gateway:
    name = "stripe"

    async def authorize(self) -> None: ...

    async def refund(self) -> None: ...


def test_a_gateway_call_is_labelled_by_gateway_and_operation_only() -> None:
    gateway = _Gateway()
    assert describe_call(lambda: gateway.authorize()) == ("stripe", "authorize")
    assert describe_call(gateway.refund) == ("stripe", "refund")
    # Something that is not a gateway call: bounded defaults, never a value from it.
    secret = "sk_live_" + "x" * 24
    assert describe_call(lambda: len(secret)) == ("unknown", "other")


def test_fraud_outcomes_are_bounded_labels() -> None:
    before = FRAUD_DECISIONS.labels("block")._value.get()
    count_fraud_decision("block")
    count_fraud_decision("card 4242424242424242")  # never a label
    assert FRAUD_DECISIONS.labels("block")._value.get() == before + 1
    assert "card 4242424242424242" not in str(FRAUD_DECISIONS.collect())


class _Square:
    name = "square"

    def __init__(self, code: str) -> None:
        self.code = code

    async def authorize(self) -> GatewayResult:
        return GatewayResult(
            status=GatewayStatus.FAILED, reference=None, decline=Decline(self.code, "declined")
        )


def test_a_decline_code_label_is_a_catalogued_code_or_other() -> None:
    connectors()  # each connector's code table registered, as at start-up
    # The gateway's own code as its table maps it (Square's words onto ours).
    assert decline_label("square", "INSUFFICIENT_FUNDS") == "insufficient_funds"
    assert decline_label("sandbox", "insufficient_funds") == "insufficient_funds"
    # A code the catalogue has, from a gateway whose table does not list it: itself.
    assert decline_label("unlisted", "lost_card") == "lost_card"
    # Anything else (a new code, free text, a card number): other.
    for code in ("brand_new_code", "card 4242424242424242", "", None):
        assert decline_label("square", code) == "other", code


def test_a_payment_declined_with_an_unknown_code_is_counted_as_other() -> None:
    connectors()
    unknown = "issuer_said_no_7731"

    def count(code: str) -> float:
        return PAYMENTS.labels("square", "authorize", "declined", code)._value.get()

    other, insufficient = count("other"), count("insufficient_funds")
    asyncio.run(observe_gateway_call(_Square(unknown).authorize))
    asyncio.run(observe_gateway_call(_Square("INSUFFICIENT_FUNDS").authorize))
    assert (count("other"), count("insufficient_funds")) == (other + 1, insufficient + 1)
    assert unknown not in str(PAYMENTS.collect())
