"""The scripted fake gateway (tests/support/fake_gateway.py) behaves as a provider would.

These are tests of the test tool: each shows one behaviour other tests rely on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from paymux.config import Settings
from paymux.domain.clock import FrozenClock
from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    DisputeUpdate,
    Gateway,
    GatewayError,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayStatus,
    GatewayUnavailable,
    InboundEvent,
    PaymentUpdate,
    RefundUpdate,
    WebhookVerificationError,
)
from paymux.money import Money
from paymux.services import Paymux
from paymux.services.payments import CreateParams
from support.dbtemplate import migrated_sqlite_file
from support.fake_gateway import Outcome, ScriptedGateway

T = TypeVar("T")
USD = "USD"
PI = "pi_test_0001"


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def usd(amount: int) -> Money:
    return Money(amount, USD)


def request(
    amount: int = 2000,
    *,
    reference: str = PI,
    capture: bool = True,
    token: str = "tok_visa",
    gateway_reference: str | None = None,
) -> AuthorizeRequest:
    return AuthorizeRequest(
        amount=usd(amount),
        payment_method_token=token,
        capture=capture,
        reference=reference,
        gateway_reference=gateway_reference,
    )


def authorize(gw: ScriptedGateway, key: str = f"{PI}:authorize:1", **kw: Any) -> Any:
    return run(gw.authorize(request(**kw), idempotency_key=key))


def as_gateway(gw: ScriptedGateway) -> Gateway:
    return gw  # mypy checks the fake against the Protocol here


# -- the Protocol --------------------------------------------------------------------------------
def test_it_is_a_gateway_and_registers_as_the_default() -> None:
    gw = ScriptedGateway("fakepay", forget_keys_after=60)
    assert isinstance(as_gateway(gw), Gateway)
    assert gw.idempotency_retention_seconds == 60
    registry = gw.registry()
    assert registry.default == "fakepay" and registry["fakepay"] is gw
    assert gw.supports_currency("usd") and gw.amount_problem(usd(1)) is None
    only_eur = ScriptedGateway(currencies=["eur"])
    assert not only_eur.supports_currency("USD") and only_eur.amount_problem(usd(1))
    assert gw.browser_params(PI)["gateway"] == "fakepay"
    run(gw.aclose())  # the provider outlives a paymux: still usable
    assert authorize(gw).status is GatewayStatus.SUCCEEDED


def test_describe_knows_tok_tokens_and_added_cards_only() -> None:
    gw = ScriptedGateway()
    card = run(gw.describe_payment_method("tok_visa"))
    assert isinstance(card, CardDetails) and card.token == "tok_visa" and card.last4
    assert run(gw.describe_payment_method("pm_unknown")) is None
    gw.add_card(CardDetails(token="pm_card_amex", brand="amex", last4="0005"))
    assert run(gw.describe_payment_method("pm_card_amex")) == CardDetails(
        token="pm_card_amex", brand="amex", last4="0005"
    )
    with pytest.raises(GatewayInvalidRequest):
        authorize(gw, token="pm_unknown")
    assert gw.payments == {}


# -- payments and idempotency ----------------------------------------------------------------------
def test_authorize_makes_one_payment_and_a_remembered_key_replays_it() -> None:
    gw = ScriptedGateway()
    first = authorize(gw)
    again = authorize(gw)
    assert first == again
    assert first.status is GatewayStatus.SUCCEEDED and first.amount_captured == 2000
    [payment] = gw.payments_for(PI)
    assert payment.id == first.reference and payment.amount_captured == 2000
    assert gw.calls["authorize"] == 2 and gw.replays["authorize"] == 1
    assert [c.replay for c in gw.log] == [False, True]
    assert gw.money_captured(PI) == 2000 and gw.total_charged() == 2000
    assert gw.charged_twice() == []


def test_a_key_reused_for_another_request_is_refused() -> None:
    gw = ScriptedGateway()
    authorize(gw)
    with pytest.raises(GatewayInvalidRequest) as refused:
        authorize(gw, amount=999)
    assert refused.value.code == "idempotency_key_reused"
    assert len(gw.payments) == 1


def test_keys_are_forgotten_after_the_set_time_then_a_retry_charges_twice() -> None:
    clock = FrozenClock(1_700_000_000 * 1_000_000)
    gw = ScriptedGateway(clock=clock, forget_keys_after=3600)
    authorize(gw)
    clock.advance(3599)
    authorize(gw)  # still remembered
    assert len(gw.payments_for(PI)) == 1 and gw.remembers(f"{PI}:authorize:1")
    clock.advance(1)
    assert not gw.remembers(f"{PI}:authorize:1")
    authorize(gw)  # the hazard recovery must avoid: a blind re-send after the retention
    assert len(gw.live_payments(PI)) == 2
    assert gw.charged_twice() == [PI] and gw.money_captured(PI) == 4000


def test_a_plain_callable_clock_works_too() -> None:
    now = [100.0]
    gw = ScriptedGateway(clock=lambda: now[0], forget_keys_after=10)
    authorize(gw)
    now[0] += 10
    authorize(gw)
    assert len(gw.payments_for(PI)) == 2


def test_a_decline_fails_that_payment_and_the_next_attempt_makes_a_new_one() -> None:
    gw = ScriptedGateway().script("authorize", Outcome.decline("insufficient_funds"))
    declined = authorize(gw)
    assert declined.status is GatewayStatus.FAILED
    assert declined.decline == Decline("insufficient_funds", "Your card was declined.")
    assert authorize(gw).decline == declined.decline  # a replay of the same key
    ok = authorize(gw, key=f"{PI}:authorize:2")
    assert ok.status is GatewayStatus.SUCCEEDED
    assert [p.status for p in gw.payments_for(PI)] == ["failed", "succeeded"]
    assert len(gw.live_payments(PI)) == 1


def test_lose_response_does_the_operation_and_lookup_finds_it() -> None:
    gw = ScriptedGateway().script("authorize", Outcome.lose_response())
    with pytest.raises(GatewayUnavailable):
        authorize(gw)
    [payment] = gw.payments_for(PI)
    assert payment.status == GatewayStatus.SUCCEEDED  # the charge was made
    found = run(gw.lookup(PI, f"{PI}:authorize:1"))
    assert found is not None and found.reference == payment.id
    assert found.status is GatewayStatus.SUCCEEDED
    assert run(gw.lookup(PI, "another-key")) == found  # by our reference too
    assert run(gw.retrieve(payment.id)) == found
    assert authorize(gw).reference == payment.id  # a retry with the key replays
    assert len(gw.payments_for(PI)) == 1


def test_fail_before_makes_nothing_and_lookup_says_so() -> None:
    gw = ScriptedGateway().script("authorize", Outcome.fail_before())
    with pytest.raises(GatewayUnavailable):
        authorize(gw)
    assert gw.payments == {} and not gw.remembers(f"{PI}:authorize:1")
    assert run(gw.lookup(PI, f"{PI}:authorize:1")) is None
    assert authorize(gw).status is GatewayStatus.SUCCEEDED  # nothing was stored


def test_rate_limited_and_invalid_raise_their_errors_and_change_nothing() -> None:
    gw = ScriptedGateway().script(
        "authorize", Outcome.rate_limited(retry_after=2.5), Outcome.invalid("bad_param", "no")
    )
    with pytest.raises(GatewayRateLimited) as limited:
        authorize(gw)
    assert limited.value.retry_after == 2.5
    with pytest.raises(GatewayInvalidRequest) as invalid:
        authorize(gw)
    assert invalid.value.code == "bad_param"
    assert gw.payments == {} and gw.calls["authorize"] == 2
    assert [c.outcome for c in gw.log] == ["rate_limited", "invalid"]


def test_slow_cancelled_before_the_call_makes_nothing_slow_response_after_does() -> None:
    async def cancel_during(gw: ScriptedGateway, key: str) -> None:
        task = asyncio.create_task(gw.authorize(request(), idempotency_key=key))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = ScriptedGateway().script("authorize", Outcome.slow(5))
    run(cancel_during(before, "k1"))
    assert before.payments == {}
    after = ScriptedGateway().script("authorize", Outcome.slow_response(5))
    run(cancel_during(after, "k1"))
    assert [p.status for p in after.payments_for(PI)] == ["succeeded"]
    assert after.remembers("k1")


def test_3ds_waits_for_the_payer_then_moves_the_provider_payment() -> None:
    gw = ScriptedGateway().script("authorize", Outcome.requires_action(), Outcome.requires_action())
    waiting = authorize(gw, capture=False)
    assert waiting.status is GatewayStatus.REQUIRES_ACTION and waiting.next_action
    payment = gw.complete_action(PI)  # by our reference
    assert payment.status == GatewayStatus.REQUIRES_CAPTURE
    assert run(gw.retrieve(payment.id)).amount_authorized == 2000
    other = authorize(gw, key="k2", reference="pi_other")
    gw.complete_action(str(other.reference), success=False)  # by the provider's id
    failed = run(gw.retrieve(str(other.reference)))
    assert failed.status is GatewayStatus.FAILED and failed.decline is not None
    with pytest.raises(ValueError):
        gw.complete_action(payment.id)


def test_capture_partially_once() -> None:
    gw = ScriptedGateway()
    ref = str(authorize(gw, capture=False).reference)
    assert gw.money_authorized(PI) == 2000
    with pytest.raises(GatewayInvalidRequest):
        run(gw.capture(ref, usd(2001), idempotency_key=f"{PI}:capture"))
    captured = run(gw.capture(ref, usd(1500), idempotency_key=f"{PI}:capture"))
    assert captured.status is GatewayStatus.SUCCEEDED and captured.amount_captured == 1500
    assert run(gw.capture(ref, usd(1500), idempotency_key=f"{PI}:capture")) == captured
    with pytest.raises(GatewayInvalidRequest) as again:
        run(gw.capture(ref, usd(500), idempotency_key=f"{PI}:capture:2"))
    assert again.value.code == "payment_intent_unexpected_state"
    assert gw.money_captured(PI) == 1500 and gw.money_authorized(PI) == 0


def test_void_cancels_an_authorization_and_reports_a_captured_payment_as_succeeded() -> None:
    gw = ScriptedGateway()
    held = str(authorize(gw, capture=False).reference)
    voided = run(gw.void(held, idempotency_key=f"{PI}:cancel"))
    assert voided.status is GatewayStatus.CANCELED and voided.amount_authorized == 0
    assert gw.live_payments(PI) == []
    taken = str(authorize(gw, key="k2", reference="pi_2").reference)
    truth = run(gw.void(taken, idempotency_key="pi_2:cancel"))
    assert truth.status is GatewayStatus.SUCCEEDED and truth.amount_captured == 2000
    assert gw.money_captured("pi_2") == 2000


def test_refunds_are_bounded_by_what_was_captured() -> None:
    gw = ScriptedGateway()
    ref = str(authorize(gw).reference)
    first = run(gw.refund(ref, usd(1200), "requested_by_customer", idempotency_key="re_1:refund"))
    assert first.status == "succeeded" and first.our_id == "re_1"
    assert first.payment_reference == ref and first.amount == 1200
    assert run(gw.refund(ref, usd(1200), "requested_by_customer", idempotency_key="re_1:refund"))
    with pytest.raises(GatewayInvalidRequest) as over:
        run(gw.refund(ref, usd(801), None, idempotency_key="re_2:refund"))
    assert over.value.code == "amount_too_large"
    gw.script("refund", Outcome.decline("expired_or_canceled_card"), Outcome.pending())
    failed = run(gw.refund(ref, usd(800), None, idempotency_key="re_3:refund"))
    assert failed.status == "failed" and failed.failure_reason == "expired_or_canceled_card"
    pending = run(gw.refund(ref, usd(800), None, idempotency_key="re_4:refund"))
    assert pending.status == "pending"  # reserved: nothing is left to refund now
    with pytest.raises(GatewayInvalidRequest):
        run(gw.refund(ref, usd(1), None, idempotency_key="re_5:refund"))
    assert gw.money_refunded(PI) == 1200
    gw.settle_refund("re_4")
    assert gw.money_refunded(PI) == 2000 and gw.total_charged() == 0
    by_ours = run(gw.retrieve_refund(None, our_id="re_4", payment_reference=ref))
    assert by_ours is not None and by_ours.status == "succeeded"
    assert run(gw.retrieve_refund(first.reference, our_id="x", payment_reference=ref)) == first
    assert run(gw.retrieve_refund(None, our_id="re_9", payment_reference=ref)) is None


def test_a_refund_of_an_uncaptured_payment_is_refused() -> None:
    gw = ScriptedGateway()
    ref = str(authorize(gw, capture=False).reference)
    with pytest.raises(GatewayInvalidRequest):
        run(gw.refund(ref, usd(100), None, idempotency_key="re_1:refund"))


def test_opened_payments_like_stripe() -> None:
    gw = ScriptedGateway(open_payments=True)
    opened = run(gw.open_payment(usd(1000), PI, True, idempotency_key=f"{PI}:open"))
    assert opened is not None and opened.client["client_secret"]
    assert run(gw.open_payment(usd(1000), PI, True, idempotency_key=f"{PI}:open")) == opened
    run(gw.update_payment(opened.reference, usd(2000), False, idempotency_key=f"{PI}:update:1"))
    assert run(gw.lookup(PI, f"{PI}:authorize:1")) is None  # never confirmed
    assert run(gw.retrieve(opened.reference)).status is GatewayStatus.OPEN
    gw.script("authorize", Outcome.decline())
    declined = authorize(gw, capture=False, gateway_reference=opened.reference)
    assert declined.status is GatewayStatus.FAILED and declined.reference == opened.reference
    assert run(gw.retrieve(opened.reference)) == declined  # confirmable again, with the decline
    ok = authorize(gw, key=f"{PI}:authorize:2", capture=False,
                   gateway_reference=opened.reference)
    assert ok.status is GatewayStatus.REQUIRES_CAPTURE and ok.reference == opened.reference
    assert len(gw.payments_for(PI)) == 1
    with pytest.raises(GatewayInvalidRequest) as late:
        run(gw.update_payment(opened.reference, usd(5), True, idempotency_key=f"{PI}:update:2"))
    assert late.value.code == "payment_intent_unexpected_state"
    other = run(gw.open_payment(usd(1000), "pi_2", True, idempotency_key="pi_2:open"))
    assert other is not None
    voided = run(gw.void(other.reference, idempotency_key="pi_2:cancel"))
    assert voided.status is GatewayStatus.CANCELED
    fixed = ScriptedGateway(open_payments=True, supports_update=False)
    third = run(fixed.open_payment(usd(1000), PI, True, idempotency_key="k"))
    assert third is not None
    with pytest.raises(GatewayInvalidRequest) as unsupported:
        run(fixed.update_payment(third.reference, usd(5), True, idempotency_key="k2"))
    assert unsupported.value.code == "update_unsupported"
    assert run(ScriptedGateway().open_payment(usd(1), PI, True, idempotency_key="k")) is None


def test_customers_and_saved_cards() -> None:
    gw = ScriptedGateway()
    customer = run(gw.create_customer("cus_ours", None, idempotency_key="cus_ours:create"))
    assert run(gw.create_customer("cus_ours", None, idempotency_key="cus_ours:create")) == customer
    attached = run(gw.attach_payment_method("tok_a", customer, idempotency_key="pm_1:attach"))
    assert isinstance(attached, CardDetails) and gw.attached["tok_a"] == customer
    gw.script("attach_payment_method", Outcome.decline("incorrect_cvc"))
    refused = run(gw.attach_payment_method("tok_b", customer, idempotency_key="pm_2:attach"))
    assert refused == Decline("incorrect_cvc", "Your card was declined.")
    run(gw.detach_payment_method("tok_a", idempotency_key="pm_1:detach"))
    with pytest.raises(GatewayInvalidRequest):
        run(gw.detach_payment_method("tok_a", idempotency_key="pm_1:detach:2"))


# -- scripting -------------------------------------------------------------------------------------
def test_scripts_are_checked_and_consumed_in_order() -> None:
    gw = ScriptedGateway()
    with pytest.raises(ValueError):
        gw.script("authorise", Outcome.succeed())
    with pytest.raises(ValueError):
        gw.script("capture", Outcome.decline())
    gw.script("retrieve", Outcome.fail_before(), Outcome.lose_response())
    ref = str(authorize(gw).reference)
    for _ in range(2):
        with pytest.raises(GatewayUnavailable):
            run(gw.retrieve(ref))
    assert gw.scripted("retrieve") == []
    assert run(gw.retrieve(ref)).status is GatewayStatus.SUCCEEDED
    assert gw.calls["retrieve"] == 3


def test_random_mode_is_reproducible_and_same_key_retries_never_charge_twice() -> None:
    def shop(seed: int) -> tuple[list[str], ScriptedGateway]:
        gw = ScriptedGateway().random_mode(
            random.Random(seed),
            fail_before=0.2,
            lose_response=0.2,
            rate_limited=0.1,
            decline=0.1,
            operations=["authorize"],
        )
        seen = []
        for n in range(40):
            pi = f"pi_{n}"
            for _ in range(20):  # retry with the SAME key until an answer comes back
                try:
                    result = authorize(gw, key=f"{pi}:authorize:1", reference=pi)
                except GatewayError as exc:
                    seen.append(type(exc).__name__)
                    continue
                seen.append(result.status.value)
                break
        return seen, gw

    first, gw = shop(7)
    assert first == shop(7)[0]
    assert {"GatewayUnavailable", "GatewayRateLimited", "failed", "succeeded"} <= set(first)
    assert gw.charged_twice() == []
    assert all(len(gw.payments_for(f"pi_{n}")) == 1 for n in range(40))


# -- webhooks --------------------------------------------------------------------------------------
def test_every_change_is_an_event_that_verifies_and_means_something() -> None:
    gw = ScriptedGateway()
    ref = str(authorize(gw, capture=False).reference)
    run(gw.capture(ref, usd(2000), idempotency_key="c"))
    run(gw.refund(ref, usd(500), None, idempotency_key="re_1:refund"))
    gw.open_dispute(ref)
    events = gw.pending_webhooks()
    assert [e.type for e in events] == [
        "payment.updated", "payment.updated", "refund.updated", "dispute.updated"
    ]
    meanings = []
    for event in events:
        headers, body = gw.webhook_request(event)
        inbound = run(gw.verify_webhook(headers, body))
        assert inbound.event_id == event.id and inbound.gateway == "fake"
        meanings.append(gw.interpret_event(inbound))
    held, captured, refunded, disputed = meanings
    assert isinstance(held, PaymentUpdate) and held.reference == PI
    assert held.result.status is GatewayStatus.REQUIRES_CAPTURE  # the snapshot at the time
    assert isinstance(captured, PaymentUpdate)
    assert captured.result.status is GatewayStatus.SUCCEEDED
    assert isinstance(refunded, RefundUpdate) and refunded.refund.our_id == "re_1"
    assert isinstance(disputed, DisputeUpdate) and disputed.payment_reference == ref
    assert gw.take_webhooks() == events and gw.pending_webhooks() == []


def test_a_wrong_signature_or_a_stale_timestamp_is_refused() -> None:
    clock = FrozenClock(1_700_000_000 * 1_000_000)
    gw = ScriptedGateway(clock=clock)
    authorize(gw)
    [event] = gw.pending_webhooks()
    headers, body = gw.webhook_request(event, secret="whsec_someone_else")
    with pytest.raises(WebhookVerificationError) as wrong:
        run(gw.verify_webhook(headers, body))
    assert wrong.value.reason == "signature_mismatch"
    headers, body = gw.webhook_request(event)
    with pytest.raises(WebhookVerificationError) as tampered:
        run(gw.verify_webhook(headers, body.replace(b"succeeded", b"failed")))
    assert tampered.value.reason == "signature_mismatch"
    clock.advance(3600)  # delivered late: signed at delivery, so still fine
    run(gw.verify_webhook(*gw.webhook_request(event)))
    with pytest.raises(WebhookVerificationError) as stale:  # a signature from an hour ago
        run(gw.verify_webhook(headers, body))
    assert stale.value.reason == "timestamp_outside_tolerance"
    with pytest.raises(WebhookVerificationError):
        run(gw.verify_webhook({}, body))


def test_a_hand_made_change_is_emitted_on_request() -> None:
    gw = ScriptedGateway()
    payment = gw.payment(str(authorize(gw, capture=False).reference))
    gw.take_webhooks()
    payment.status, payment.amount_captured = GatewayStatus.SUCCEEDED, 2000
    event = gw.emit(payment)
    assert gw.pending_webhooks() == [event]
    update = gw.interpret_event(run(gw.verify_webhook(*gw.webhook_request(event))))
    assert isinstance(update, PaymentUpdate) and update.result.amount_captured == 2000


def test_an_opened_payment_is_no_news_until_confirmed() -> None:
    gw = ScriptedGateway(open_payments=True)
    opened = run(gw.open_payment(usd(1000), PI, True, idempotency_key="k"))
    assert opened is not None
    run(gw.update_payment(opened.reference, usd(900), True, idempotency_key="k2"))
    for event in gw.take_webhooks():
        assert gw.interpret_event(run(gw.verify_webhook(*gw.webhook_request(event)))) is None


@dataclass
class _Received:
    inbox_id: str
    duplicate: bool


class _Inbox:
    """Stands in for paymux's InboundWebhooks: receive (verify, store once), apply."""

    def __init__(self, gw: ScriptedGateway) -> None:
        self.gw = gw
        self.stored: dict[str, InboundEvent] = {}
        self.applied: list[Any] = []

    async def receive(self, gateway_name: str, headers: dict[str, str], body: bytes) -> _Received:
        event = await self.gw.verify_webhook(headers, body)
        inbox_id = f"we_{event.event_id}"
        duplicate = inbox_id in self.stored
        self.stored[inbox_id] = event
        return _Received(inbox_id, duplicate)

    async def apply(self, inbox_id: str) -> None:
        self.applied.append(self.gw.interpret_event(self.stored[inbox_id]))


def test_deliver_webhook_receives_then_applies_once_in_any_order() -> None:
    gw = ScriptedGateway().script("authorize", Outcome.requires_action())
    authorize(gw)
    gw.complete_action(PI)
    inbox = _Inbox(gw)
    events = list(reversed(gw.take_webhooks()))
    for event in [*events, events[0]]:  # newest first, then a duplicate
        run(gw.deliver_webhook(inbox, event))
    assert [u.result.status for u in inbox.applied] == [
        GatewayStatus.SUCCEEDED, GatewayStatus.REQUIRES_ACTION
    ]
    assert gw.pending_webhooks() == []


# -- with paymux -----------------------------------------------------------------------------------
def test_paymux_drives_it_and_its_events_flow_through_the_real_inbound_pipeline(
    tmp_path: Path,
) -> None:
    """The seam it is for: a GatewayRegistry holding the fake, paymux's own services, its
    webhooks received and applied by InboundWebhooks, late and duplicated."""
    url = migrated_sqlite_file(tmp_path / "paymux.db")
    gw = ScriptedGateway().script("authorize", Outcome.requires_action())
    settings = Settings(database_url=url, sandbox_db=str(tmp_path / "sandbox.db"))

    async def scenario() -> tuple[str, list[bool]]:
        app = Paymux(settings, gateways=gw.registry())
        try:
            account = (await app.accounts.create_key()).account_id
            pi = await app.payments.create(
                account, CreateParams(amount=2000, currency="usd", capture_method="manual")
            )
            confirmed = await app.payments.confirm(account, pi["id"], payment_method="tok_visa")
            assert confirmed["status"] == "requires_action"
            gw.complete_action(pi["id"])  # the payer passes 3-D Secure
            events = gw.take_webhooks()
            duplicates = [
                (await gw.deliver_webhook(app.webhooks, event)).duplicate
                for event in [*reversed(events), events[-1]]  # newest first, then again
            ]
            return str((await app.payments.retrieve(account, pi["id"]))["status"]), duplicates
        finally:
            await app.close()

    status, duplicates = run(scenario())
    assert status == "requires_capture"  # the late requires_action event changed nothing
    assert duplicates == [False, False, True]
    [payment] = gw.payments.values()
    assert payment.status == GatewayStatus.REQUIRES_CAPTURE and gw.charged_twice() == []
