"""A detach the gateway answers with "not attached" (the card was detached there already, by
the merchant at the provider's dashboard or by an earlier detach whose answer was lost) is
the detach's goal, not a 500: paymux's record follows. Any other refusal is a 400 naming the
payment method, and the card stays the customer's.

paymux's real services on a real database; the scripted fake provider at the connector seam
plays the gateway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness

db = migrated_database_fixture("detach")


async def saved_card(h: Harness) -> tuple[str, str]:
    r = await h.post("/v1/customers", {"email": "payer@example.com"})
    assert r.status_code == 200, r.text
    cus = h.body(r)["id"]
    r = await h.post("/v1/payment_methods/tok_visa/attach", {"customer": cus})
    assert r.status_code == 200, r.text
    pm = h.body(r)["id"]
    assert h.body(r)["customer"] == cus
    return cus, pm


@pytest.mark.parametrize("code", ["payment_method_not_attached", "resource_missing"])
def test_a_card_not_attached_at_the_gateway_is_detached_here(
    db: str, tmp_path: Path, code: str
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            _, pm = await saved_card(h)
            h.gw.script("detach_payment_method", Outcome.invalid(code, "not attached"))
            r = await h.post(f"/v1/payment_methods/{pm}/detach")
            assert r.status_code == 200, r.text
            assert h.body(r)["customer"] is None
            assert (await h.get(f"/v1/payment_methods/{pm}"))["customer"] is None
            assert (await h.events(pm)).count("payment_method.detached") == 1

    asyncio.run(main())


def test_another_refusal_is_a_400_and_the_card_stays_attached(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            cus, pm = await saved_card(h)
            h.gw.script(
                "detach_payment_method", Outcome.invalid("gateway_invalid_request", "no")
            )
            r = await h.post(f"/v1/payment_methods/{pm}/detach")
            assert r.status_code == 400, r.text
            err = h.body(r)["error"]
            assert err["code"] == "payment_method_unexpected_state"
            assert err["param"] == "payment_method"
            assert err["gateway_code"] == "gateway_invalid_request"
            assert (await h.get(f"/v1/payment_methods/{pm}"))["customer"] == cus
            assert (await h.events(pm)).count("payment_method.detached") == 0

    asyncio.run(main())
