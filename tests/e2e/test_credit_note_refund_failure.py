"""A credit note's refund that fails after the note was issued (the sandbox's refund-fail card:
the refund succeeds, then fails by webhook) is never left looking paid: the note stays issued
(a credit note is a document only a void changes), its refunds entry shows nothing refunded,
and the merchant hears of it (``refund.failed`` on the refund, ``credit_note.updated`` on the
note).

The first two tests run against the test server and the sandbox gateway; the sandbox's second
half of the refund (its failure, then the webhook) is held at the gateway seam until the note
is issued, so the failure lands after the issue every time.

The last tests play a failure that lands WHILE the note's request issues it, in paymux
in-process against the scripted fake provider (support/harness.py): the refund-failed webhook's
transaction is held open, after it marked the refund failed and before it commits, while the
request's last transaction runs. The request reads the refund's state under the intent's
lock, the lock the engine holds while it fails the refund, so it waits for that transaction
and then refuses the note (the failure is seen) rather than issuing a note that looks refunded
while the webhook's hook saw it still pending and said nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Api
from paymux.billing.credit_notes import CreditNoteParams
from paymux.domain.errors import PaymuxError
from paymux.gateways.sandbox.connector import SandboxGateway
from paymux.services.refunds import RefundsService
from support.billing import event_types
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness
from support.invoices import paid_invoice


@pytest.fixture
def refund_failure_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The sandbox's second half of a refund (succeeded -> failed, then its webhook) waits
    until the test sets the returned event (a bound of 60 s, not a wait: the test sets it)."""
    release = threading.Event()
    real = SandboxGateway._settle_refund_later

    async def held(self: SandboxGateway, refund_id: str) -> None:
        await asyncio.to_thread(release.wait, 60)
        await real(self, refund_id)

    monkeypatch.setattr(SandboxGateway, "_settle_refund_later", held)
    yield release
    release.set()


def test_a_credit_note_whose_refund_fails_later_shows_it(
    api: Api, refund_failure_held: threading.Event
) -> None:
    invoice = paid_invoice(api, "pm_card_refundFail")
    note = api.ok("POST", "/v1/credit_notes",
                  {"invoice": invoice["id"], "amount": 1000, "refund_amount": 1000})
    assert note["status"] == "issued"
    assert note["refunds"] == [{"amount_refunded": 1000, "refund": note["refund"]}]
    assert api.ok("GET", f"/v1/refunds/{note['refund']}")["status"] == "succeeded"
    refund_failure_held.set()  # the provider fails the refund now, after the issue
    refund = api.wait_for(f"/v1/refunds/{note['refund']}", "status", "failed")
    assert refund["failure_reason"] == "expired_or_canceled_card"
    assert refund["metadata"]["credit_note"] == note["id"]
    after = api.ok("GET", f"/v1/credit_notes/{note['id']}")
    assert after["status"] == "issued"
    assert after["refunds"] == [{"amount_refunded": 0, "refund": note["refund"]}]
    assert event_types(api, note["id"]) == ["credit_note.created", "credit_note.updated"]
    assert "refund.failed" in event_types(api, refund["id"])
    pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
    assert pi["amount_refunded"] == 0


def test_a_credit_note_whose_refund_succeeds_shows_it_refunded(api: Api) -> None:
    invoice = paid_invoice(api, "pm_card_visa")
    note = api.ok("POST", "/v1/credit_notes",
                  {"invoice": invoice["id"], "amount": 1000, "refund_amount": 1000})
    api.wait_for(f"/v1/refunds/{note['refund']}", "status", "succeeded")
    after = api.ok("GET", f"/v1/credit_notes/{note['id']}")
    assert after["refunds"] == [{"amount_refunded": 1000, "refund": note["refund"]}]
    assert event_types(api, note["id"]) == ["credit_note.created"]


# -- a failure landing while the request issues the note (in-process) -----------------------
# The race test is PostgreSQL only: it shows that the note's request waits for the webhook's
# row lock (pg_stat_activity lists it as a lock waiter). On SQLite every writer waits for the
# one writer connection whatever the code locks, so it could not tell a missing lock apart,
# and it only waited out its 10 s bound each time.
pg_db = migrated_database_fixture("cn_race", backends=["postgres"])


async def harness_paid_invoice(h: Harness, amount: int = 3000) -> tuple[str, str]:
    """A paid invoice of ``amount``: (invoice id, payment intent id)."""

    async def ok(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await h.post(path, body)
        assert r.status_code == 200, r.text
        return h.body(r)

    cus = (await ok("/v1/customers", {"email": "payer@example.com"}))["id"]
    pm = (await ok("/v1/payment_methods/tok_visa/attach", {"customer": cus}))["id"]
    invoice = (await ok("/v1/invoices", {"customer": cus, "currency": "usd"}))["id"]
    await ok("/v1/invoiceitems",
             {"customer": cus, "invoice": invoice, "amount": amount, "currency": "usd"})
    await ok(f"/v1/invoices/{invoice}/finalize")
    paid = await ok(f"/v1/invoices/{invoice}/pay", {"payment_method": pm})
    assert paid["status"] == "paid"
    return str(invoice), str(paid["payment_intent"])


async def lock_waiters(h: Harness) -> int:
    """PostgreSQL backends waiting for a row lock (0 on SQLite, where a second writer waits
    for the one writer connection instead)."""
    if h.app.ctx.db.is_sqlite:
        return 0
    [(n,)] = await h.sql(
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
        "and datname = current_database()"
    )
    return int(n)


class Died(BaseException):
    """The request's process died here (as a killed task)."""


@pytest.mark.parametrize("issuer", ["request", "job"])
def test_a_refund_failure_landing_while_the_note_is_issued_is_not_missed(
    pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, issuer: str
) -> None:
    """``request``: the note's own request issues it after its refund call. ``job``: that
    request died after the refund call, and the note's job (``finish_pending``) issues it.

    PostgreSQL only (``pg_db``): the claim is that the issuing transaction waits for the
    webhook's lock on the intent, which PostgreSQL shows (a lock waiter); SQLite serializes
    every writer anyway, so there the test could not fail for a missing lock."""

    async def test(h: Harness) -> None:
        invoice_id, pi_id = await harness_paid_invoice(h)
        h.gw.take_webhooks()  # the payment's events are not this test's
        h.gw.script("refund", Outcome.pending())  # the provider answers: pending
        failing = asyncio.Event()  # the webhook's transaction marked the refund failed
        let_commit = asyncio.Event()
        real_hook = h.app.engine.refund_failed_hook
        assert real_hook is not None

        async def hook(s: Any, refund: Any) -> None:
            await real_hook(s, refund)  # sees the note still pending: nothing to say
            failing.set()
            await let_commit.wait()  # the transaction stays open, the intent locked

        monkeypatch.setattr(h.app.engine, "refund_failed_hook", hook)
        webhook: list[asyncio.Task[Any]] = []

        async def provider_fails_the_refund() -> None:
            """The provider fails the refund; its webhook is applied up to the commit."""
            [refund] = h.gw.refunds_for(pi_id)
            h.gw.settle_refund(refund.id, success=False)
            event = h.gw.take_webhooks()[-1]  # the refund's failure
            assert (event.type, event.object["status"]) == ("refund.updated", "failed")
            webhook.append(asyncio.create_task(h.gw.deliver_webhook(h.app.webhooks, event)))
            await asyncio.wait_for(failing.wait(), 30)

        real_create = RefundsService.create

        async def create(self: RefundsService, *args: Any, **kw: Any) -> dict[str, Any]:
            view = await real_create(self, *args, **kw)
            assert view["status"] == "pending"
            if issuer == "job":
                raise Died
            await provider_fails_the_refund()  # between the refund call and the issue
            return view

        monkeypatch.setattr(RefundsService, "create", create)
        params = CreditNoteParams(invoice=invoice_id, amount=1000, refund_amount=1000)
        if issuer == "request":
            issuing = asyncio.create_task(h.app.credit_notes.create(h.account, params))
        else:
            with pytest.raises(Died):
                await h.app.credit_notes.create(h.account, params)
            [(note_id, note_status)] = await h.sql(
                "select id, status from credit_notes where invoice_id = :i", i=invoice_id
            )
            assert note_status == "pending"
            await provider_fails_the_refund()
            issuing = asyncio.create_task(h.app.credit_notes.finish_pending(h.account, note_id))
        # The issuing transaction waits for the webhook's (the intent's lock); one that did
        # not wait finishes first. Either way, then the webhook commits.
        for _ in range(1000):
            if issuing.done() or await lock_waiters(h) > 0:
                break
            await asyncio.sleep(0.01)
        let_commit.set()
        await webhook[0]
        if issuer == "request":
            with pytest.raises(PaymuxError) as refused:
                await issuing
            assert refused.value.code == "gateway_invalid_request"
            assert refused.value.param == "refund_amount"
        else:
            await issuing  # the job drops the note: its refund was refused
        assert await h.sql("select id from credit_notes where invoice_id = :i", i=invoice_id) == []
        [(refund_id, status)] = await h.sql(
            "select id, status from refunds where payment_intent_id = :p", p=pi_id
        )
        assert status == "failed"
        assert "refund.failed" in await h.events(refund_id)
        [intent] = await h.intents()
        assert (intent["refunded"], intent["pending"]) == (0, 0)
        got = await h.get(f"/v1/invoices/{invoice_id}")
        assert (got["status"], got["amount_paid"]) == ("paid", 3000)

    async def main() -> None:
        async with Harness.open(pg_db, tmp_path) as h:
            await test(h)

    asyncio.run(main())
