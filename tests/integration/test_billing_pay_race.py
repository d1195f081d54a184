"""The merchant's POST /v1/invoices/{id}/pay racing a dunning retry of the same try (SQLite
and PostgreSQL; paymux in process, the scripted provider at the connector seam).

Both derive the same intent id for one try count (``attempt_intent_id``). Whichever takes
the invoice's payment lease first charges; the other defers to the live lease
(``payment_lease.lease_live``): the merchant's answer is a 400, the job's try waits. Before,
both went on: one made the intent, and the other's insert of the same id failed with a
500. The interleavings are forced with gates, not timing: a gateway call held at the seam
(``ScriptedGateway.hold``), or the try's call into the payment service."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from paymux.services.payments import CreateParams, PaymentsService
from support.billing_harness import declined_invoice
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"payrace_{next(_names)}")


async def settled_once(h: Harness, invoice_id: str) -> None:
    rows = await h.sql(
        "select status, amount_paid, attempt_count from invoices where id = :i", i=invoice_id
    )
    assert rows[0] == ("paid", 2000, 2)
    charged = sorted(p.amount_captured for p in h.gw.payments.values() if p.amount_captured)
    assert charged == [2000]
    pis = await h.sql(
        "select status, amount_received from payment_intents where invoice_id = :i"
        " order by created_us",
        i=invoice_id,
    )
    assert [tuple(p) for p in pis] == [("requires_payment_method", 0), ("succeeded", 2000)]


def test_a_dunning_retry_while_the_merchants_pay_is_in_flight_defers(
    db: str, tmp_path: Path
) -> None:
    """The merchant's /pay has taken the lease and reserved try 2's intent, and is asking the
    gateway about its card (held) before making the intent. The dunning retry of try 2
    arrives then: before, it made the intent and charged, and the merchant's insert of the
    same id was a 500."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice_id = (await declined_invoice(h))[0]["id"]
            gate = h.gw.hold("describe_payment_method")
            merchant = asyncio.create_task(
                h.post(f"/v1/invoices/{invoice_id}/pay", {"payment_method": "tok_mastercard"})
            )
            await gate.wait_reached()
            await h.app.invoices.retry(h.account, invoice_id)  # the job's try: put off
            assert h.gw.calls["authorize"] == 1  # the first try's decline only
            gate.release()
            r = await merchant
            assert r.status_code == 200, r.text
            assert h.body(r)["status"] == "paid"
            await settled_once(h, invoice_id)

    asyncio.run(main())


def test_the_merchants_pay_during_a_dunning_try_is_refused(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way round: the dunning try holds the lease and has reserved try 2's intent;
    the merchant's /pay is run at the try's call into the payment service, before the real
    one. It is refused with a clear 400, and the try charges once."""
    real = PaymentsService.create
    answers: list[Any] = []

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            invoice_id = (await declined_invoice(h))[0]["id"]

            async def create(self: PaymentsService, account_id: str, p: CreateParams) -> Any:
                if p.invoice_id == invoice_id and not answers:
                    answers.append(await h.post(f"/v1/invoices/{invoice_id}/pay", {}))
                return await real(self, account_id, p)

            monkeypatch.setattr(PaymentsService, "create", create)
            await h.app.invoices.retry(h.account, invoice_id)
            [r] = answers
            assert r.status_code == 400, r.text
            assert h.body(r)["error"]["code"] == "invoice_unexpected_state"
            await settled_once(h, invoice_id)

    asyncio.run(main())


def test_a_create_with_a_reserved_id_made_meanwhile_resumes_it(db: str, tmp_path: Path) -> None:
    """``PaymentsService.create(id=...)`` whose id another request made after its first read
    (its card described at the gateway, held): that intent, never the insert's 500."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway("sandbox")) as h:
            pi_id = "pi_reserved_race_0001"
            gate = h.gw.hold("describe_payment_method")
            first = asyncio.create_task(
                h.app.payments.create(
                    h.account,
                    CreateParams(id=pi_id, amount=1500, currency="usd", payment_method="tok_visa"),
                )
            )
            await gate.wait_reached()
            made = await h.app.payments.create(
                h.account, CreateParams(id=pi_id, amount=1500, currency="usd")
            )
            gate.release()
            resumed = await first
            assert (resumed["id"], resumed["status"]) == (pi_id, made["status"])
            assert resumed["status"] == "requires_payment_method"
            rows = await h.sql("select count(*) from payment_intents where id = :i", i=pi_id)
            assert rows[0][0] == 1

    asyncio.run(main())
