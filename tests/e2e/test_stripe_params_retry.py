"""A retry of a request that made a payment method from ``payment_method_data`` with a
single-use gateway token, after the first run crashed or lost its answer between writing the
payment method and answering: the retry (same Idempotency-Key) resumes with the payment
method the first run made, and the payment is made once. Before the fix the retry was refused
with 400 ``payment_method_unexpected_state`` (the token had already made a payment method).

paymux's real services and HTTP app (in process, tests/support/harness.py) on SQLite and
PostgreSQL, against the scripted provider at the connector seam, where ``tok_single_use_*``
tokens are not shared test tokens (each makes one payment method, as a token from Stripe.js
or the sandbox's browser form does). A crash is the request's task cancelled while the
provider is still working, then the key's lease running out, as after a kill -9.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

import paymux.services.payments as payments_service
from conftest import migrated_database_url
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"pmd_retry_{next(_names)}")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp, **kw) as h:
            await test(h)

    asyncio.run(main())


async def until(check: Callable[[], bool]) -> None:
    """Polls (60 s at most: a loaded CI machine) for a state the request reaches on its own."""
    for _ in range(6000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def data(token: str) -> dict[str, Any]:
    return {"type": "card", "card": {"token": token},
            "billing_details": {"name": "Jo Payer"}, "metadata": {"from": "data"}}


async def crash_during(h: Harness, operation: str, path: str, body: dict[str, Any],
                       key: str) -> None:
    """The request runs until the provider is called for ``operation``, then dies there."""
    h.gw.script(operation, Outcome.slow(30))
    first = asyncio.create_task(h.post(path, body, key=key))
    await until(lambda: h.gw.calls[operation] > 0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    h.advance(h.app.settings.idempotency_lease_seconds + 1)  # the dead request's lease ends


async def payment_methods_of(h: Harness, token: str) -> list[tuple[str, str | None]]:
    rows = await h.sql("select id, customer_id from payment_methods where token = :t", t=token)
    return [(r[0], r[1]) for r in rows]


def test_a_create_that_crashed_after_making_the_payment_method_resumes_on_retry(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        token = "tok_single_use_crash"
        body = {"amount": 2000, "currency": "usd", "payment_method_data": data(token)}
        # The payment method is written, then the provider is asked to open the payment
        # (as Stripe is) and the process dies before any answer.
        await crash_during(h, "open_payment", "/v1/payment_intents", body, "order-77")
        made = await payment_methods_of(h, token)
        assert len(made) == 1  # the first run did write it
        assert await h.intents() == []  # ... and died before the intent

        retry = await h.post("/v1/payment_intents", body, key="order-77")
        assert retry.status_code == 200, retry.text
        pi = h.body(retry)
        assert (pi["status"], pi["payment_method"]) == ("requires_confirmation", made[0][0])
        assert await payment_methods_of(h, token) == made  # no second one
        # The same answer again (stored now), and the payment is made once.
        again = await h.post("/v1/payment_intents", body, key="order-77")
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
        assert h.body(again) == pi
        confirmed = await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {}, key="c-77")
        assert confirmed.status_code == 200, confirmed.text
        assert (h.body(confirmed)["status"], h.body(confirmed)["amount_received"]) == (
            "succeeded", 2000)
        assert h.gw.money_captured(pi["id"]) == 2000
        assert len(h.gw.payments_for(pi["id"])) == 1 and h.gw.charged_twice() == []
        pm = await h.get(f"/v1/payment_methods/{made[0][0]}")
        assert (pm["billing_details"]["name"], pm["metadata"]) == ("Jo Payer", {"from": "data"})

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


def test_a_create_whose_answer_was_lost_in_an_outage_gives_the_same_answer_on_retry(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        token = "tok_single_use_outage"
        body = {"amount": 1500, "currency": "eur", "payment_method_data": data(token)}
        h.gw.script("open_payment", *[Outcome.fail_before()] * 4)  # every inline try
        first = await h.post("/v1/payment_intents", body, key="order-78")
        assert first.status_code == 503, first.text
        assert h.body(first)["error"]["code"] == "gateway_unavailable"
        made = await payment_methods_of(h, token)
        assert len(made) == 1

        retry = await h.post("/v1/payment_intents", body, key="order-78")
        assert retry.status_code == 200, retry.text
        pi = h.body(retry)
        assert (pi["amount"], pi["currency"], pi["payment_method"]) == (1500, "eur", made[0][0])
        assert await payment_methods_of(h, token) == made
        assert [i["id"] for i in await h.intents()] == [pi["id"]]

    run(db, tmp_path, test, gw=ScriptedGateway(open_payments=True))


def test_a_confirm_that_crashed_between_the_payment_method_and_the_attempt_resumes(
    db: str, tmp_path: Path
) -> None:
    """The confirm writes the payment method from ``payment_method_data``, then dies before
    it records the attempt (``start_if_unchanged`` raises once, as a kill -9 there would):
    nothing but the payment method is left, so the retry must find it by its derived id, and
    charge once. Before the derived id, the retry was refused for the token's second use."""

    async def test(h: Harness) -> None:
        token = "tok_single_use_confirm"
        pi = h.body(await h.post("/v1/payment_intents", {"amount": 3000, "currency": "usd"}))
        path = f"/v1/payment_intents/{pi['id']}/confirm"
        body = {"payment_method_data": data(token)}
        engine = h.app.payments.engine
        real = engine.start_if_unchanged
        deaths = []

        async def dies_once(*args: Any, **kwargs: Any) -> Any:
            if not deaths:
                deaths.append(1)
                raise RuntimeError("the process died here")
            return await real(*args, **kwargs)

        engine.start_if_unchanged = dies_once  # type: ignore[method-assign]
        first = await h.post(path, body, key="confirm-79")
        assert first.status_code == 503, first.text
        made = await payment_methods_of(h, token)
        assert len(made) == 1  # the first run wrote it ...
        assert h.gw.calls["authorize"] == 0  # ... and never reached the provider
        assert (await h.get(f"/v1/payment_intents/{pi['id']}"))["status"] == (
            "requires_payment_method")

        retry = await h.post(path, body, key="confirm-79")
        assert retry.status_code == 200, retry.text
        answer = h.body(retry)
        assert (answer["status"], answer["amount_received"], answer["payment_method"]) == (
            "succeeded", 3000, made[0][0])
        assert await payment_methods_of(h, token) == made
        assert h.gw.money_captured(pi["id"]) == 3000
        assert len(h.gw.payments_for(pi["id"])) == 1 and h.gw.charged_twice() == []

    run(db, tmp_path, test)


def test_the_same_token_under_another_key_is_still_refused(db: str, tmp_path: Path) -> None:
    """The retry's pass is for its own key only: a token is still one payment method, once."""

    async def test(h: Harness) -> None:
        token = "tok_single_use_twice"
        body = {"amount": 2000, "currency": "usd", "payment_method_data": data(token)}
        first = await h.post("/v1/payment_intents", body, key="order-80")
        assert first.status_code == 200, first.text
        other = await h.post("/v1/payment_intents", body, key="order-81")
        assert other.status_code == 400, other.text
        error = h.body(other)["error"]
        assert (error["code"], error["param"]) == (
            "payment_method_unexpected_state", "payment_method_data[card][token]")
        none = await h.post("/v1/payment_intents", body)  # no key at all
        assert none.status_code == 400, none.text
        assert len(await payment_methods_of(h, token)) == 1

    run(db, tmp_path, test)


def test_a_payment_method_create_that_crashed_gives_the_same_payment_method_on_retry(
    db: str, tmp_path: Path
) -> None:
    """``POST /v1/payment_methods`` with ``card[token]``: a retry of a request whose answer
    never came (an outage after the write) gives the payment method the first run made."""

    async def test(h: Harness) -> None:
        token = "tok_single_use_pm"
        body = {"type": "card", "card": {"token": token}}
        first = await h.post("/v1/payment_methods", body, key="pm-82")
        assert first.status_code == 200, first.text
        # Forget the stored answer, as if the process died before storing it: the key is
        # claimable again, and only the payment method's row is left of the first run.
        async with h.app.ctx.db.write() as s:
            await s.execute(text(
                "update idempotency_keys set status = 'in_flight', response_status = null, "
                "response_body = null, locked_us = 0 where key = 'pm-82'"))
        retry = await h.post("/v1/payment_methods", body, key="pm-82")
        assert retry.status_code == 200, retry.text
        assert h.body(retry)["id"] == h.body(first)["id"]
        assert len(await payment_methods_of(h, token)) == 1

    run(db, tmp_path, test)


def forget_answer(key: str) -> str:
    """SQL that makes a key's stored answer lost, as if the process died before storing it."""
    return ("update idempotency_keys set status = 'in_flight', response_status = null, "
            f"response_body = null, locked_us = 0 where key = '{key}'")


def test_a_key_used_again_after_the_purge_is_a_new_request(db: str, tmp_path: Path) -> None:
    """Stripe: a key reused after its 24 h are up (and it was purged) is a new request. The
    next day the same key comes with a new single-use token: a new payment method, not the
    old one's derived id (which collided, then 503 on every try)."""

    async def test(h: Harness) -> None:
        first = await h.post("/v1/payment_intents", {
            "amount": 100, "currency": "usd",
            "payment_method_data": data("tok_single_use_day1")}, key="order-9")
        assert first.status_code == 200, first.text
        h.advance(25 * 3600)
        assert await h.app.idempotency.purge() >= 1
        again = await h.post("/v1/payment_intents", {
            "amount": 100, "currency": "usd",
            "payment_method_data": data("tok_single_use_day2")}, key="order-9")
        assert again.status_code == 200, again.text
        assert h.body(again)["id"] != h.body(first)["id"]
        day1 = await payment_methods_of(h, "tok_single_use_day1")
        day2 = await payment_methods_of(h, "tok_single_use_day2")
        assert [p[0] for p in day1] == [h.body(first)["payment_method"]]
        assert [p[0] for p in day2] == [h.body(again)["payment_method"]]

        # A declined confirm under ``confirm-<pi>``; the payer comes back the next day.
        pi = h.body(await h.post("/v1/payment_intents", {"amount": 100, "currency": "usd"}))
        path = f"/v1/payment_intents/{pi['id']}/confirm"
        h.gw.script("authorize", Outcome.decline("insufficient_funds"))
        declined = await h.post(path, {"payment_method_data": data("tok_single_use_a")},
                                key=f"confirm-{pi['id']}")
        assert declined.status_code == 402, declined.text
        h.advance(25 * 3600)
        assert await h.app.idempotency.purge() >= 1
        paid = await h.post(path, {"payment_method_data": data("tok_single_use_b")},
                            key=f"confirm-{pi['id']}")
        assert paid.status_code == 200, paid.text
        assert h.body(paid)["status"] == "succeeded"
        [(new_pm, _)] = await payment_methods_of(h, "tok_single_use_b")
        assert h.body(paid)["payment_method"] == new_pm

    run(db, tmp_path, test)


def test_a_derived_id_taken_by_another_account_falls_back_to_a_random_one(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the derived id already be another account's payment method (the id space is
    global), the request makes its own under a random id: never the other account's, never
    a 503 (before: the insert collided, ``scalar_one()`` by token found nothing, and every
    try was a 503)."""
    taken = "pm_" + "0" * 24
    monkeypatch.setattr(payments_service, "payment_method_id_of_request", lambda step: taken)

    async def test(h: Harness) -> None:
        other = await h.app.accounts.create_key()
        first = await h.http.post(
            "/v1/payment_methods", json={"type": "card", "card": {"token": "tok_single_use_x"}},
            headers={"authorization": f"Bearer {other.key}"})
        assert first.status_code == 200, first.text
        async with h.app.ctx.db.write() as s:
            await s.execute(text("update payment_methods set id = :t where id = :i"),
                            {"t": taken, "i": h.body(first)["id"]})
        r = await h.post("/v1/payment_intents", {
            "amount": 100, "currency": "usd",
            "payment_method_data": data("tok_single_use_y")}, key="order-collide")
        assert r.status_code == 200, r.text
        [(made, _)] = await payment_methods_of(h, "tok_single_use_y")
        assert made != taken and made.startswith("pm_") and h.body(r)["payment_method"] == made
        owners = await h.sql("select account_id from payment_methods where id = :t", t=taken)
        assert [o[0] for o in owners] == [other.account_id] != [h.account]

    run(db, tmp_path, test)


def test_a_setup_intent_create_and_confirm_with_payment_method_data_resume_on_retry(
    db: str, tmp_path: Path
) -> None:
    """SetupIntents: a create (with confirm) and a confirm whose answers were lost after the
    payment method was made: the retry gives the same SetupIntent and payment method."""

    async def test(h: Harness) -> None:
        cus = h.body(await h.post("/v1/customers", {"email": "saver@example.com"}))
        body = {"customer": cus["id"], "confirm": True,
                "payment_method_data": data("tok_single_use_seti1")}
        first = await h.post("/v1/setup_intents", body, key="seti-create")
        assert first.status_code == 200, first.text
        assert h.body(first)["status"] == "succeeded"
        async with h.app.ctx.db.write() as s:
            await s.execute(text(forget_answer("seti-create")))
        retry = await h.post("/v1/setup_intents", body, key="seti-create")
        assert retry.status_code == 200, retry.text
        assert (h.body(retry)["id"], h.body(retry)["payment_method"], h.body(retry)["status"]) == (
            h.body(first)["id"], h.body(first)["payment_method"], "succeeded")
        made = await payment_methods_of(h, "tok_single_use_seti1")
        assert made == [(h.body(first)["payment_method"], cus["id"])]
        assert len(await h.sql("select id from setup_intents")) == 1

        later = h.body(await h.post("/v1/setup_intents", {"customer": cus["id"]}))
        path = f"/v1/setup_intents/{later['id']}/confirm"
        confirm = {"payment_method_data": data("tok_single_use_seti2")}
        done = await h.post(path, confirm, key="seti-confirm")
        assert done.status_code == 200, done.text
        async with h.app.ctx.db.write() as s:
            await s.execute(text(forget_answer("seti-confirm")))
        again = await h.post(path, confirm, key="seti-confirm")
        assert again.status_code == 200, again.text
        assert (h.body(again)["status"], h.body(again)["payment_method"]) == (
            "succeeded", h.body(done)["payment_method"])
        assert await payment_methods_of(h, "tok_single_use_seti2") == [
            (h.body(done)["payment_method"], cus["id"])]

    run(db, tmp_path, test)


def test_a_declined_setup_confirm_s_retry_gets_the_same_refusal_without_a_second_try(
    db: str, tmp_path: Path
) -> None:
    """The confirm ran and the card was declined, but its answer was lost: the retry under
    the same key answers that decline again (the intent carried), and does not ask the
    provider a second time (before: it saved the card again, a second setup attempt)."""

    async def test(h: Harness) -> None:
        cus = h.body(await h.post("/v1/customers", {"email": "saver@example.com"}))
        seti = h.body(await h.post("/v1/setup_intents", {"customer": cus["id"]}))
        path = f"/v1/setup_intents/{seti['id']}/confirm"
        body = {"payment_method_data": data("tok_single_use_seti3")}
        h.gw.script("attach_payment_method", Outcome.decline("card_declined"))
        first = await h.post(path, body, key="seti-declined")
        assert first.status_code == 402, first.text
        tries = h.gw.calls["attach_payment_method"]
        async with h.app.ctx.db.write() as s:
            await s.execute(text(forget_answer("seti-declined")))
        retry = await h.post(path, body, key="seti-declined")
        assert retry.status_code == 402, retry.text
        error, again = h.body(first)["error"], h.body(retry)["error"]
        assert (again["type"], again["code"], again["decline_code"]) == (
            "card_error", error["code"], error["decline_code"])
        assert (again["setup_intent"]["id"], again["setup_intent"]["status"]) == (
            seti["id"], "requires_payment_method")
        assert h.gw.calls["attach_payment_method"] == tries
        assert (await h.get(f"/v1/setup_intents/{seti['id']}"))["status"] == (
            "requires_payment_method")

    run(db, tmp_path, test)


def test_bad_input_writes_nothing_and_leaves_the_token_unused(db: str, tmp_path: Path) -> None:
    """An unknown customer on a PaymentIntent create, or a confirming SetupIntent without a
    customer, is refused before the payment method is made: the single-use token is still
    the payer's to use (before: the payment method was written and the token burnt)."""

    async def test(h: Harness) -> None:
        token = "tok_single_use_bc"
        bad = await h.post("/v1/payment_intents", {
            "amount": 100, "currency": "usd", "customer": "cus_nope",
            "payment_method_data": data(token)})
        assert bad.status_code == 404, bad.text
        assert (h.body(bad)["error"]["code"], h.body(bad)["error"]["param"]) == (
            "resource_missing", "customer")
        assert await payment_methods_of(h, token) == []
        cus = h.body(await h.post("/v1/customers", {"email": "a@example.com"}))
        good = await h.post("/v1/payment_intents", {
            "amount": 100, "currency": "usd", "customer": cus["id"],
            "payment_method_data": data(token)})
        assert good.status_code == 200, good.text

        seti = await h.post("/v1/setup_intents", {
            "confirm": True, "payment_method_data": data("tok_single_use_si")})
        assert seti.status_code == 400, seti.text
        assert (h.body(seti)["error"]["code"], h.body(seti)["error"]["param"]) == (
            "parameter_missing", "customer")
        assert await payment_methods_of(h, "tok_single_use_si") == []
        assert await h.sql("select id from setup_intents") == []

    run(db, tmp_path, test)
