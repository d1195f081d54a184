"""``payment_method_data`` with a single-use token and ``confirm=true`` (or a confirm), the
request's process dying at each point between making the payment method and answering, then
the client's retry under the same Idempotency-Key: the retry succeeds with the intent and the
payment method the first run made, and the card is charged once.

Before the payment method's id was derived from the idempotency claim (account, mode, key,
the key's age, the step: services/customers.py ``payment_method_id_of_request``), the retry
was refused with 400 ``payment_method_unexpected_state``: the token had already made one.

paymux's real services and HTTP app in process (tests/support/harness.py) on SQLite and
PostgreSQL, against the scripted provider at the connector seam, where a ``tok_single_use_*``
token is not a shared test token (it makes one payment method, once, as a Stripe.js token
does). The death is forced, never timed: a statement hook raising ``Crash`` (a BaseException
no handler catches, tests/support/renewal_crash.py) at a chosen write, or the provider's
call held at a gate (before it acts, or after it charged) while the request's task is
cancelled; then the dead request's key lease runs out (the test's clock) and the retry comes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from support.fake_gateway import Gate
from support.harness import Harness
from support.pgcluster import PgCluster
from support.renewal_crash import Crash, dying, starts

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"pmd_crash_{next(_names)}")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp) as h:
            await test(h)

    asyncio.run(main())


def data(token: str) -> dict[str, Any]:
    return {
        "type": "card",
        "card": {"token": token},
        "billing_details": {"name": "Jo Payer"},
        "metadata": {"from": "data"},
    }


def create_body(token: str) -> dict[str, Any]:
    return {
        "amount": 2000,
        "currency": "usd",
        "confirm": True,
        "payment_method_data": data(token),
        "metadata": {"order": "77"},
    }


async def made_from(h: Harness, token: str) -> list[str]:
    """The payment methods made from ``token`` (the scripted provider saves a card under
    the token it came as, so a saved one is found by it too)."""
    rows = await h.sql("select id from payment_methods where token = :t", t=token)
    return [r[0] for r in rows]


async def reached(gate: Gate) -> None:
    """The held call is at its gate (60 s at most: a loaded CI machine; the gate's own wait
    gives up after 10)."""
    await asyncio.wait_for(gate.reached.wait(), 60)


def lease_ends(h: Harness) -> None:
    h.advance(h.app.settings.idempotency_lease_seconds + 1)


async def control_answer(h: Harness) -> dict[str, Any]:
    """The answer the same create gives when nothing dies (another key, another token)."""
    r = await h.post("/v1/payment_intents", create_body("tok_single_use_control"), key="ctl")
    assert r.status_code == 200, r.text
    return h.body(r)


async def assert_paid_once(
    h: Harness, retry: dict[str, Any], token: str, control: dict[str, Any]
) -> None:
    """The retry's answer: the first run's intent (the only one made for it), succeeded, with
    the first run's payment method; the card charged once at the provider; the answer shaped
    as an undisturbed request's (the same fields as ``control``)."""
    pms = await made_from(h, token)
    assert len(pms) == 1, pms
    ours = [i for i in await h.intents() if i["id"] != control["id"]]
    assert [i["id"] for i in ours] == [retry["id"]]
    assert (retry["status"], retry["amount_received"], retry["payment_method"]) == (
        "succeeded",
        2000,
        pms[0],
    )
    assert retry["metadata"] == {"order": "77"}
    assert sorted(retry) == sorted(control)
    assert len(h.gw.payments_for(retry["id"])) == 1
    assert h.gw.money_captured(retry["id"]) == 2000
    assert h.gw.charged_twice() == []
    pm = await h.get(f"/v1/payment_methods/{pms[0]}")
    assert (pm["billing_details"]["name"], pm["metadata"]) == ("Jo Payer", {"from": "data"})


# Where the first run dies, by the statement it is about to run (before_commit: that very
# statement raises; after_commit: every statement after the commit of its transaction).
# The last item: how many intents the dead run left (besides the control's).
WRITES = {
    # The payment method committed; the process dies before anything else is written.
    "after_payment_method": (starts("INSERT INTO PAYMENT_METHODS"), True, 0),
    # The payment method committed; the intent's insert dies (rolled back).
    "at_the_intent": (starts("INSERT INTO PAYMENT_INTENTS"), False, 0),
    # Payment method and intent committed; the confirm never starts its attempt.
    "after_the_intent": (starts("INSERT INTO PAYMENT_INTENTS"), True, 1),
}


@pytest.mark.parametrize("point", list(WRITES))
def test_a_confirming_create_that_died_at_a_write_is_paid_once_by_its_retry(
    db: str, tmp_path: Path, point: str
) -> None:
    when, after_commit, intents_left = WRITES[point]

    async def test(h: Harness) -> None:
        control = await control_answer(h)
        token = "tok_single_use_write"
        body = create_body(token)
        async with dying(h.app, when, after_commit=after_commit) as state:
            with pytest.raises(Crash):
                await h.post("/v1/payment_intents", body, key="order-77")
        assert state["dead"]
        assert len(await made_from(h, token)) == 1  # the first run made it ...
        assert h.gw.calls["authorize"] == 1  # ... and never reached the charge (control's)
        assert len(await h.intents()) == 1 + intents_left
        lease_ends(h)

        retry = await h.post("/v1/payment_intents", body, key="order-77")
        assert retry.status_code == 200, retry.text
        await assert_paid_once(h, h.body(retry), token, control)
        again = await h.post("/v1/payment_intents", body, key="order-77")
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
        assert h.body(again) == h.body(retry)

    run(db, tmp_path, test)


@pytest.mark.parametrize("acted", [False, True], ids=["before_the_charge", "after_the_charge"])
def test_a_confirming_create_that_died_in_the_providers_call_is_paid_once_by_its_retry(
    db: str, tmp_path: Path, acted: bool
) -> None:
    """The first run dies while the provider is charging: before it acted, or once it
    charged and its answer is on the way. The retry settles what the provider did (asking
    it, under the attempt's own idempotency key) and never charges a second time."""

    async def test(h: Harness) -> None:
        control = await control_answer(h)
        token = "tok_single_use_call"
        body = create_body(token)
        gate = h.gw.hold("authorize", after=acted)
        first = asyncio.create_task(h.post("/v1/payment_intents", body, key="order-77"))
        await reached(gate)
        first.cancel()  # the process dies here: nothing after this line of ours runs
        with pytest.raises(asyncio.CancelledError):
            await first
        [pm] = await made_from(h, token)
        [dead] = [i for i in await h.intents() if i["id"] != control["id"]]
        assert len(h.gw.payments_for(dead["id"])) == int(acted)  # charged, or not yet
        lease_ends(h)

        retry = await h.post("/v1/payment_intents", body, key="order-77")
        assert retry.status_code == 200, retry.text
        assert h.body(retry)["id"] == dead["id"] and h.body(retry)["payment_method"] == pm
        await assert_paid_once(h, h.body(retry), token, control)

    run(db, tmp_path, test)


def test_a_confirm_that_died_after_the_provider_charged_is_paid_once_by_its_retry(
    db: str, tmp_path: Path
) -> None:
    """``POST /v1/payment_intents/{id}/confirm`` with ``payment_method_data``: the provider
    charged, the answer was in flight when the process died; the retry answers succeeded
    with the payment method the first run made, one charge."""

    async def test(h: Harness) -> None:
        control = await control_answer(h)
        token = "tok_single_use_confirm_call"
        pi = h.body(
            await h.post(
                "/v1/payment_intents",
                {"amount": 2000, "currency": "usd", "metadata": {"order": "77"}},
            )
        )
        path = f"/v1/payment_intents/{pi['id']}/confirm"
        body = {"payment_method_data": data(token)}
        gate = h.gw.hold("authorize", after=True)
        first = asyncio.create_task(h.post(path, body, key="confirm-77"))
        await reached(gate)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        [pm] = await made_from(h, token)
        assert len(h.gw.payments_for(pi["id"])) == 1  # charged, and we never heard
        lease_ends(h)

        retry = await h.post(path, body, key="confirm-77")
        assert retry.status_code == 200, retry.text
        assert (h.body(retry)["id"], h.body(retry)["payment_method"]) == (pi["id"], pm)
        await assert_paid_once(h, h.body(retry), token, control)

    run(db, tmp_path, test)


# -- SetupIntents: the same, saving a card ----------------------------------------------------
def saves(h: Harness) -> int:
    """Times the provider really saved a card (its idempotent replays not counted)."""
    return sum(1 for c in h.gw.log if c.operation == "attach_payment_method" and not c.replay)


async def assert_saved_once(h: Harness, retry: dict[str, Any], token: str, customer: str) -> None:
    pms = await made_from(h, token)
    assert len(pms) == 1, pms
    assert (retry["status"], retry["payment_method"], retry["customer"]) == (
        "succeeded",
        pms[0],
        customer,
    )
    assert [r[0] for r in await h.sql("select id from setup_intents")] == [retry["id"]]
    assert saves(h) == 1
    pm = await h.get(f"/v1/payment_methods/{pms[0]}")
    assert (pm["customer"], pm["billing_details"]["name"]) == (customer, "Jo Payer")


SETUP_WRITES = {
    "after_payment_method": (starts("INSERT INTO PAYMENT_METHODS"), True, 0),
    "at_the_setup_intent": (starts("INSERT INTO SETUP_INTENTS"), False, 0),
    "after_the_setup_intent": (starts("INSERT INTO SETUP_INTENTS"), True, 1),
}


@pytest.mark.parametrize("point", list(SETUP_WRITES))
def test_a_confirming_setup_intent_create_that_died_at_a_write_saves_once_on_retry(
    db: str, tmp_path: Path, point: str
) -> None:
    when, after_commit, left = SETUP_WRITES[point]

    async def test(h: Harness) -> None:
        customer = h.body(await h.post("/v1/customers", {"email": "saver@example.com"}))["id"]
        token = "tok_single_use_seti_write"
        body = {"customer": customer, "confirm": True, "payment_method_data": data(token)}
        async with dying(h.app, when, after_commit=after_commit) as state:
            with pytest.raises(Crash):
                await h.post("/v1/setup_intents", body, key="seti-77")
        assert state["dead"]
        assert len(await made_from(h, token)) == 1 and saves(h) == 0
        assert len(await h.sql("select id from setup_intents")) == left
        lease_ends(h)

        retry = await h.post("/v1/setup_intents", body, key="seti-77")
        assert retry.status_code == 200, retry.text
        await assert_saved_once(h, h.body(retry), token, customer)

    run(db, tmp_path, test)


@pytest.mark.parametrize("acted", [False, True], ids=["before_the_save", "after_the_save"])
def test_a_setup_intent_confirm_that_died_in_the_providers_call_saves_once_on_retry(
    db: str, tmp_path: Path, acted: bool
) -> None:
    async def test(h: Harness) -> None:
        customer = h.body(await h.post("/v1/customers", {"email": "saver@example.com"}))["id"]
        seti = h.body(await h.post("/v1/setup_intents", {"customer": customer}))
        token = "tok_single_use_seti_call"
        path = f"/v1/setup_intents/{seti['id']}/confirm"
        body = {"payment_method_data": data(token)}
        gate = h.gw.hold("attach_payment_method", after=acted)
        first = asyncio.create_task(h.post(path, body, key="seti-confirm-77"))
        await reached(gate)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert len(await made_from(h, token)) == 1 and saves(h) == int(acted)
        lease_ends(h)

        retry = await h.post(path, body, key="seti-confirm-77")
        assert retry.status_code == 200, retry.text
        assert h.body(retry)["id"] == seti["id"]
        await assert_saved_once(h, h.body(retry), token, customer)

    run(db, tmp_path, test)
