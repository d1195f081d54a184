"""A card saved by a payment (``setup_future_usage``) is attached to the customer at the gateway
by a job (``attach_payment_method``). A detach that lands while that job's gateway call is in
flight wins: the card ends detached in paymux AND at the gateway, never attached again.

paymux's real services and worker on a real database; the scripted fake provider at the
connector seam plays the gateway, its ``attached`` ledger is what is checked.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from paymux.services.customers import CustomersService
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness

db = migrated_database_fixture("attach")


async def saved_by_a_payment(h: Harness) -> tuple[str, str, str]:
    """A payment that saves its card for the customer: (customer id, pm id, gateway token).
    As Stripe does with setup_future_usage, the provider keeps the card with the customer
    from the payment on."""
    r = await h.post("/v1/customers", {"email": "payer@example.com"})
    assert r.status_code == 200, r.text
    cus = h.body(r)["id"]
    r = await h.post(
        "/v1/payment_intents",
        {
            "amount": 1200,
            "currency": "usd",
            "customer": cus,
            "payment_method": "tok_visa",
            "confirm": True,
            "setup_future_usage": "off_session",
        },
    )
    assert r.status_code == 200, r.text
    pi = h.body(r)
    assert pi["status"] == "succeeded"
    pm = str(pi["payment_method"])
    [(token, customer_id)] = await h.sql(
        "select token, customer_id from payment_methods where id = :p", p=pm
    )
    assert customer_id == cus  # paymux's side came with the payment
    [(refs,)] = await h.sql("select gateway_refs from customers where id = :c", c=cus)
    data = refs if isinstance(refs, dict) else json.loads(refs or "{}")
    if data:
        cus_token = str(next(iter(data.values())))
    else:
        cus_token = await h.gw.create_customer(cus, None, idempotency_key=f"pay:{cus}")
    h.gw.attached[str(token)] = cus_token
    return cus, pm, str(token)


async def attach_jobs(h: Harness) -> list[str]:
    return [r[0] for r in await h.sql("select status from jobs where kind = 'attach_payment_method'")]


def test_a_detach_during_the_attach_jobs_gateway_call_wins(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        _, pm, token = await saved_by_a_payment(h)
        assert await attach_jobs(h) == ["queued"]
        attached_before = (await h.events(pm)).count("payment_method.attached")
        # The job's attach is on its way to the provider when the merchant detaches the card.
        h.gw.script("attach_payment_method", Outcome.slow(5))
        job = asyncio.create_task(h.drain())
        for _ in range(500):
            if h.gw.calls["attach_payment_method"]:
                break
            await asyncio.sleep(0.01)
        assert h.gw.calls["attach_payment_method"] == 1
        r = await h.post(f"/v1/payment_methods/{pm}/detach")
        assert r.status_code == 200, r.text
        assert h.body(r)["customer"] is None
        assert token not in h.gw.attached  # the detach reached the provider
        await job  # the attach lands at the provider after the detach
        assert await attach_jobs(h) == ["done"]
        got = await h.get(f"/v1/payment_methods/{pm}")
        assert got["customer"] is None
        assert token not in h.gw.attached, "the card is attached at the gateway again"
        events = await h.events(pm)
        assert events.count("payment_method.detached") == 1
        assert events.count("payment_method.attached") == attached_before  # none after it

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await test(h)

    asyncio.run(main())


def test_without_a_detach_the_job_attaches_the_card_at_the_gateway(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        cus, pm, token = await saved_by_a_payment(h)
        h.gw.attached.pop(token)  # the provider has not kept it yet
        await h.drain()
        assert await attach_jobs(h) == ["done"]
        assert token in h.gw.attached
        assert (await h.get(f"/v1/payment_methods/{pm}"))["customer"] == cus

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await test(h)

    asyncio.run(main())


def test_a_detach_between_the_jobs_check_and_the_attach_reading_the_card_wins(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window closed by commit 14e61be: the job checked that the customer holds the card,
    then the merchant detaches it, then ``customers.attach`` reads the card again (unowned
    now) and makes the gateway call. The job's own check is what counts: the attach is undone
    at the gateway and the card stays detached in paymux. The detach is run at exactly that
    point: on the call from the job into ``CustomersService.attach``, before the real one."""
    real = CustomersService.attach
    detached: list[int] = []

    async def test(h: Harness) -> None:
        _, pm, token = await saved_by_a_payment(h)
        attached_before = (await h.events(pm)).count("payment_method.attached")

        async def attach(self: CustomersService, *args: Any, **kw: Any) -> dict[str, Any]:
            r = await h.post(f"/v1/payment_methods/{pm}/detach")
            assert r.status_code == 200, r.text
            assert h.body(r)["customer"] is None
            assert token not in h.gw.attached  # the detach reached the provider
            detached.append(h.gw.calls["attach_payment_method"])
            return await real(self, *args, **kw)

        monkeypatch.setattr(CustomersService, "attach", attach)
        await h.drain()
        assert detached == [0]  # the detach ran once, before the job's gateway call
        assert h.gw.calls["attach_payment_method"] == 1  # the job did attach at the gateway
        assert await attach_jobs(h) == ["done"]
        got = await h.get(f"/v1/payment_methods/{pm}")
        assert got["customer"] is None
        assert token not in h.gw.attached, "the card is attached at the gateway again"
        events = await h.events(pm)
        assert events.count("payment_method.detached") == 1
        assert events.count("payment_method.attached") == attached_before  # none after it

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await test(h)

    asyncio.run(main())
