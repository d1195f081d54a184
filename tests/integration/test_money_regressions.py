"""Regressions for the eight findings of "Money never moves without our record showing it".

Each test drives paymux's real services, worker and HTTP app (in process) against the scripted
fake provider at the connector seam, then compares our record with the provider's ledger.
Every one of them failed on the engine this replaced; the finding is named in each test.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.domain.states import PaymentIntentStatus as S
from paymux.gateways.base import (
    AuthorizeRequest,
    GatewayResult,
    GatewayStatus,
    InboundEvent,
    PaymentUpdate,
)
from paymux.money import Money
from support.fake_gateway import REQUIRES_PAYMENT_METHOD, Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    url = migrated_database_url(request.param, tmp_path, pg_cluster, f"money_{next(_names)}")
    yield url


def run(
    db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]], **kw: Any
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp, **kw) as h:
            await test(h)

    asyncio.run(main())


async def until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def create(h: Harness, **params: Any) -> dict[str, Any]:
    r = await h.post("/v1/payment_intents", {"amount": 2000, "currency": "usd", **params})
    assert r.status_code == 200, r.text
    return h.body(r)


async def browser_confirms(h: Harness, pi: dict[str, Any], *, capture: bool = True) -> None:
    """The payer confirms in the provider's own browser component (Stripe.js): the provider
    moves money, and paymux hears of it only by webhook."""
    await h.gw.authorize(
        AuthorizeRequest(
            amount=Money(pi["amount"], pi["currency"]),
            payment_method_token="tok_visa",
            capture=capture,
            reference=pi["id"],
            gateway_reference=pi["gateway_reference"],
        ),
        idempotency_key=f"browser:{pi['id']}",
    )


# -- 1. browser-confirmed payments ---------------------------------------------------------
def test_1_a_payment_confirmed_in_the_browser_is_recorded_from_its_webhook(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        assert pi["status"] == "requires_payment_method" and pi["gateway_reference"]
        await browser_confirms(h, pi)
        await h.deliver_all()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_received"]) == ("succeeded", 2000)
        statuses = await h.inbox_statuses()  # the provider's "created" event is ignored
        assert "applied" in statuses and not {"stale", "dead", "received"} & set(statuses)
        assert "payment_intent.succeeded" in await h.events(pi["id"])

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


def test_1_a_browser_authorization_for_manual_capture_becomes_requires_capture(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h, capture_method="manual")
        await browser_confirms(h, pi, capture=False)
        await h.deliver_all(twice=True)
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_capturable"]) == ("requires_capture", 2000)
        r = await h.post(f"/v1/payment_intents/{pi['id']}/capture")
        assert r.status_code == 200 and h.body(r)["amount_received"] == 2000
        assert h.gw.money_captured(pi["id"]) == 2000

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


# -- 2. cancel at the provider first --------------------------------------------------------
def test_2_cancel_cancels_the_open_provider_payment_before_recording_it(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        r = await h.post(f"/v1/payment_intents/{pi['id']}/cancel")
        assert r.status_code == 200 and h.body(r)["status"] == "canceled"
        assert h.gw.calls["void"] == 1
        assert [p.status for p in h.gw.payments_for(pi["id"])] == [GatewayStatus.CANCELED]

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


def test_2_a_cancel_that_loses_the_race_with_the_payer_shows_the_payment(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        await browser_confirms(h, pi)  # paid, webhook not yet delivered
        r = await h.post(f"/v1/payment_intents/{pi['id']}/cancel")
        assert r.status_code == 400
        error = h.body(r)["error"]
        assert error["code"] == "payment_intent_unexpected_state"
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_received"]) == ("succeeded", 2000)
        assert h.gw.money_captured(pi["id"]) == 2000

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


def test_2_money_that_lands_on_a_canceled_intent_is_recorded_and_refunded(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        r = await h.post(f"/v1/payment_intents/{pi['id']}/cancel")
        assert h.body(r)["status"] == "canceled"
        # A provider that let the payer pay anyway (a PayPal order captured in the popup).
        payment = h.gw.payments_for(pi["id"])[0]
        payment.status, payment.amount_authorized, payment.amount_captured = (
            GatewayStatus.SUCCEEDED, 2000, 2000
        )
        h.gw.emit(payment)
        await h.deliver_all()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_received"]) == ("canceled", 2000)
        assert "payment_intent.captured_after_cancel" in await h.events(pi["id"])
        await h.drain()
        assert h.gw.money_refunded(pi["id"]) == 2000
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_refunded"]) == ("canceled", 2000)

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


def test_2_the_late_refund_can_be_turned_off(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        await h.post(f"/v1/payment_intents/{pi['id']}/cancel")
        payment = h.gw.payments_for(pi["id"])[0]
        payment.status, payment.amount_captured = GatewayStatus.SUCCEEDED, 2000
        h.gw.emit(payment)
        await h.deliver_all()
        await h.drain()
        assert h.gw.money_refunded(pi["id"]) == 0
        assert "payment_intent.captured_after_cancel" in await h.events(pi["id"])

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True), refund_late_payments=False)


# -- 3. a key taken over after its lease --------------------------------------------------
def test_3_a_create_taken_over_after_a_crash_makes_one_intent_and_one_payment(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        h.gw.script("authorize", Outcome.slow(30))
        body = {"amount": 2000, "currency": "usd", "payment_method": "tok_visa", "confirm": True}
        first = asyncio.create_task(h.post("/v1/payment_intents", body, key="order-1"))
        await until(lambda: h.gw.calls["authorize"] > 0)
        first.cancel()  # the process dies while the provider is still thinking
        with pytest.raises(asyncio.CancelledError):
            await first
        h.advance(h.app.settings.idempotency_lease_seconds + 1)
        retry = await h.post("/v1/payment_intents", body, key="order-1")
        assert retry.status_code == 200, retry.text
        assert h.body(retry)["status"] == "succeeded"
        intents = await h.intents()
        assert len(intents) == 1 and intents[0]["received"] == 2000
        assert len(h.gw.payments_for(intents[0]["id"])) == 1
        assert h.gw.charged_twice() == []

    run(db, tmp_path, test)


def test_3_a_refund_taken_over_after_a_crash_makes_one_refund(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h, payment_method="tok_visa", confirm=True)
        h.gw.script("refund", Outcome.slow(30))
        body = {"payment_intent": pi["id"], "amount": 500}
        first = asyncio.create_task(h.post("/v1/refunds", body, key="refund-1"))
        await until(lambda: h.gw.calls["refund"] > 0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        retry = await h.post("/v1/refunds", body, key="refund-1")
        assert retry.status_code == 200, retry.text
        assert h.body(retry)["status"] == "succeeded"
        assert len(h.gw.refunds_for(pi["id"])) == 1 and h.gw.money_refunded(pi["id"]) == 500
        rows = await h.sql("select count(*) from refunds where payment_intent_id = :p", p=pi["id"])
        assert rows[0][0] == 1
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["amount_refunded"], got.get("amount_refund_pending", 0)) == (500, 0)

    run(db, tmp_path, test)


def test_3_an_outage_is_not_stored_the_retry_runs_again(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        # A gateway 5xx while describing a new payment method, on every inline try.
        h.gw.script("describe_payment_method", *[Outcome.fail_before()] * 4)
        body = {"amount": 2000, "currency": "usd", "payment_method": "tok_visa", "confirm": True}
        first = await h.post("/v1/payment_intents", body, key="order-2")
        assert first.status_code == 503
        error = h.body(first)["error"]
        assert (error["code"], error["retryable"]) == ("gateway_unavailable", True)
        assert first.headers.get("request-id", "").startswith("req_")
        retry = await h.post("/v1/payment_intents", body, key="order-2")
        assert retry.status_code == 200, retry.text
        assert retry.headers.get("idempotent-replayed") is None
        assert h.body(retry)["status"] == "succeeded"
        again = await h.post("/v1/payment_intents", body, key="order-2")
        assert again.headers.get("idempotent-replayed") == "true"
        assert h.body(again)["id"] == h.body(retry)["id"]

    run(db, tmp_path, test)


# -- 4. a retry after the crash answers with the true state ---------------------------------
def test_4_a_retry_of_a_paid_confirm_answers_200_succeeded(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        h.gw.script("authorize", *[Outcome.lose_response()] * 4)  # paid; every answer lost
        path = f"/v1/payment_intents/{pi['id']}/confirm"
        first = await h.post(path, {"payment_method": "tok_visa"}, key="confirm-1")
        assert first.status_code == 200 and h.body(first)["status"] == "processing"
        retry = await h.post(path, {"payment_method": "tok_visa"}, key="confirm-1")
        assert retry.status_code == 200, retry.text
        assert h.body(retry)["status"] == "succeeded"
        assert h.body(retry)["amount_received"] == 2000
        assert len(h.gw.payments_for(pi["id"])) == 1

    run(db, tmp_path, test)


# -- 5. recovery is the same engine ---------------------------------------------------------
def test_5_a_refund_refused_on_recovery_releases_its_reservation(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h, payment_method="tok_visa", confirm=True)
        h.gw.script("refund", *[Outcome.fail_before()] * 4)
        r = await h.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 700})
        refund = h.body(r)
        assert refund["status"] == "pending"
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert got["amount_refunded"] == 0
        h.gw.script("refund", Outcome.invalid("charge_disputed"))
        h.advance(h.app.settings.attempt_settle_after_seconds + 1)
        await h.drain()
        done = await h.get(f"/v1/refunds/{refund['id']}")
        assert done["status"] == "failed"
        pending = await h.sql(
            "select amount_refund_pending from payment_intents where id = :p", p=pi["id"]
        )
        assert pending[0][0] == 0
        assert h.gw.money_refunded(pi["id"]) == 0

    run(db, tmp_path, test)


def test_5_the_sweep_requeues_an_attempt_whose_job_died(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        h.gw.script("authorize", *[Outcome.lose_response()] * 4)
        await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        async with h.app.ctx.db.write() as s:
            await s.execute(text("update jobs set status = 'dead' where kind = 'settle_attempt'"))
        h.advance(h.app.settings.attempt_settle_after_seconds + 1)
        await h.drain()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert got["status"] == "succeeded"

    run(db, tmp_path, test)


# -- 6. recovery asks the provider ----------------------------------------------------------
def test_6_recovery_past_key_retention_asks_and_never_charges_twice(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        h.gw.script("authorize", *[Outcome.lose_response()] * 4)
        await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        h.advance(25 * 3600)  # the worker was down for a day: the provider forgot the key
        await h.drain()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_received"]) == ("succeeded", 2000)
        assert len(h.gw.payments_for(pi["id"])) == 1
        assert h.gw.calls["authorize"] == 4  # the inline tries only: never re-sent
        assert h.gw.calls["lookup"] >= 1

    run(db, tmp_path, test)


def test_6_an_intent_left_in_requires_action_by_a_lost_webhook_is_settled(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        h.gw.script("authorize", Outcome.requires_action())
        r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        assert h.body(r)["status"] == "requires_action"
        h.gw.complete_action(pi["id"])
        h.gw.take_webhooks()  # lost
        h.advance(h.app.settings.reconcile_after_seconds + 1)
        await h.drain()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_received"]) == ("succeeded", 2000)

    run(db, tmp_path, test)


def test_6_a_stale_webhook_is_marked_stale_not_applied(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        h.gw.script("authorize", Outcome.decline("card_declined"))
        r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        assert r.status_code == 402
        declined = h.gw.take_webhooks()
        r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        assert h.body(r).get("status") == "succeeded", r.text
        h.gw.take_webhooks()
        for event in declined:  # the first attempt's decline arrives last
            await h.gw.deliver_webhook(h.app.webhooks, event)
        assert set(await h.inbox_statuses()) == {"stale"}
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert got["status"] == "succeeded"

    run(db, tmp_path, test)


# -- 7. a failed void keeps the authorization ----------------------------------------------
class VoidRefusedGateway(ScriptedGateway):
    """A provider that answers a void with a failure (the authorization stays held)."""

    async def void(self, reference: str, *, idempotency_key: str) -> GatewayResult:
        self.calls["void"] += 1
        payment = self.payments[reference]
        return GatewayResult(GatewayStatus.FAILED, payment.id)


def test_7_a_failed_void_leaves_requires_capture_and_no_second_authorization(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h, capture_method="manual", payment_method="tok_visa", confirm=True)
        assert pi["status"] == "requires_capture"
        r = await h.post(f"/v1/payment_intents/{pi['id']}/cancel")
        assert r.status_code == 200
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_capturable"]) == ("requires_capture", 2000)
        assert "payment_intent.payment_failed" not in await h.events(pi["id"])
        again = await h.post(
            f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"}
        )
        assert again.status_code == 400
        assert h.body(again)["error"]["code"] == "payment_intent_unexpected_state"
        assert h.gw.calls["authorize"] == 1

    run(db, tmp_path, test, gw=VoidRefusedGateway())


def test_7_a_cancel_whose_response_is_lost_is_settled_by_asking(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h, capture_method="manual", payment_method="tok_visa", confirm=True)
        h.gw.script("void", *[Outcome.lose_response()] * 4)  # voided; every answer lost
        r = await h.post(f"/v1/payment_intents/{pi['id']}/cancel")
        assert r.status_code == 200, r.text
        assert (h.body(r)["status"], h.body(r)["amount_capturable"]) == ("canceled", 0)
        assert [p.status for p in h.gw.payments_for(pi["id"])] == [GatewayStatus.CANCELED]
        assert h.gw.calls["void"] == 4 and h.gw.calls["retrieve"] >= 1  # asked, not re-sent

    run(db, tmp_path, test)


def test_7_a_cancel_left_unknown_by_an_outage_is_settled_by_the_job(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h, capture_method="manual", payment_method="tok_visa", confirm=True)
        h.gw.script("void", *[Outcome.lose_response()] * 4)
        h.gw.script("retrieve", *[Outcome.fail_before()] * 4)  # can't even ask, yet
        r = await h.post(f"/v1/payment_intents/{pi['id']}/cancel")
        assert h.body(r)["status"] == "processing"
        h.advance(h.app.settings.attempt_settle_after_seconds + 1)
        await h.drain()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_capturable"]) == ("canceled", 0)
        assert h.gw.calls["void"] == 4

    run(db, tmp_path, test)


# -- 8. updates reach the provider ----------------------------------------------------------
def test_8_an_amount_update_is_sent_to_the_open_provider_payment(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        r = await h.post(f"/v1/payment_intents/{pi['id']}", {"amount": 5000})
        assert r.status_code == 200 and h.body(r)["amount"] == 5000
        assert h.gw.payments_for(pi["id"])[0].amount == 5000
        await browser_confirms(h, {**pi, "amount": 5000})
        await h.deliver_all()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["amount"], got["amount_received"]) == (5000, 5000)

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


def test_8_an_update_the_provider_cannot_make_is_refused_and_nothing_changes(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        r = await h.post(f"/v1/payment_intents/{pi['id']}", {"amount": 5000})
        assert r.status_code == 400
        error = h.body(r)["error"]
        assert (error["code"], error["param"]) == ("payment_intent_update_unsupported", "amount")
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert got["amount"] == 2000
        assert h.gw.payments_for(pi["id"])[0].amount == 2000

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True, supports_update=False))


def test_8_a_currency_change_runs_the_currency_checks(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        r = await h.post(f"/v1/payment_intents/{pi['id']}", {"currency": "jpy", "amount": 500})
        assert r.status_code == 400
        error = h.body(r)["error"]
        assert (error["code"], error["param"]) == ("currency_not_supported", "currency")
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["currency"], got["amount"], got["status"]) == ("usd", 2000, S.REQUIRES_PAYMENT_METHOD)

    run(db, tmp_path, test, gw=ScriptedGateway(currencies=["USD", "EUR"]))


# -- item 6 of the issue: a payer action the provider waits on is completed ---------------------
def test_a_payment_approved_by_the_payer_is_completed_by_paymux(db: str, tmp_path: Path) -> None:
    """PayPal's PAYER_ACTION_REQUIRED: the provider waits for the payer, then (the order
    APPROVED, read as ``open``) for the merchant to charge it. paymux charges that same
    payment (never a new one) when the reconciler finds it approved."""

    async def test(h: Harness) -> None:
        pi = await create(h)
        h.gw.script("authorize", Outcome.requires_action())
        r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        assert h.body(r)["status"] == "requires_action"
        [waiting] = h.gw.payments_for(pi["id"])
        # The payer approved: the provider's payment waits for the merchant to charge it.
        waiting.status, waiting.next_action = REQUIRES_PAYMENT_METHOD, None
        h.advance(h.app.settings.reconcile_after_seconds + 1)
        await h.drain()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_received"]) == ("succeeded", 2000)
        assert [p.id for p in h.gw.payments_for(pi["id"])] == [waiting.id]
        assert h.gw.money_captured(pi["id"]) == 2000
        rows = await h.sql(
            "select operation, status from gateway_attempts where object_id = :o "
            "order by created_us, id", o=pi["id"])
        assert [tuple(r) for r in rows] == [("authorize", "settled"), ("authorize", "settled")]

    run(db, tmp_path, test)


class ApprovalGateway(ScriptedGateway):
    """Like PayPal: a payment waiting for the merchant after the payer's approval is
    announced by a webhook (CHECKOUT.ORDER.APPROVED), read as ``open``."""

    def interpret_event(self, event: InboundEvent) -> Any:
        obj = (event.payload.get("data") or {}).get("object") or {}
        if obj.get("object") == "payment" and obj.get("status") == REQUIRES_PAYMENT_METHOD:
            return PaymentUpdate(obj.get("reference"), GatewayResult(GatewayStatus.OPEN, obj["id"]))
        return super().interpret_event(event)


def test_the_approval_webhook_completes_the_payment_at_once(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await create(h)
        h.gw.script("authorize", Outcome.requires_action())
        await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        h.gw.take_webhooks()
        [waiting] = h.gw.payments_for(pi["id"])
        waiting.status, waiting.next_action = REQUIRES_PAYMENT_METHOD, None
        h.gw.emit(waiting)
        await h.deliver_all()
        await h.drain()  # no time passes: the webhook queued the completion
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert (got["status"], got["amount_received"]) == ("succeeded", 2000)
        assert [p.id for p in h.gw.payments_for(pi["id"])] == [waiting.id]

    run(db, tmp_path, test, gw=ApprovalGateway())


def test_a_lost_charge_on_a_provider_without_search_is_left_for_a_person(
    db: str, tmp_path: Path
) -> None:
    """PayPal can't be searched for the payment a lost response made. Past the key's
    retention, "not found" proves nothing: the intent stays processing (never declared
    failed, which would invite a second charge) and the attempt says a person must look."""

    async def test(h: Harness) -> None:
        h.gw.lookup_finds_all = False
        pi = await create(h)
        h.gw.script("authorize", *[Outcome.lose_response()] * 4)  # charged; answers lost
        original = h.gw.lookup

        async def cannot_search(our_reference: str, idempotency_key: str) -> None:
            await original(our_reference, idempotency_key)  # counted, but finds nothing
            return None

        h.gw.lookup = cannot_search  # type: ignore[method-assign]
        await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        h.advance(25 * 3600)
        await h.drain()
        got = await h.get(f"/v1/payment_intents/{pi['id']}")
        assert got["status"] == "processing" and got["last_payment_error"] is None
        [(status, error)] = await h.sql(
            "select status, error from gateway_attempts where object_id = :o", o=pi["id"])
        assert status == "pending" and error.startswith("needs attention")
        assert h.gw.calls["authorize"] == 4 and h.gw.money_captured(pi["id"]) == 2000
        again = await h.post(
            f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
        assert again.status_code == 400  # no second authorization while it is unknown

    run(db, tmp_path, test)
