"""3-D Secure through the HTTP API (issue 12 section 3), on SQLite and PostgreSQL, with the
real sandbox gateway in process: ``payment_method_options[card][request_three_d_secure]`` on
create and confirm (form and JSON; anything else a 400 naming the parameter), the challenge's
result recorded on the payment and shown on its charge as Stripe shows it, and the
merchant-initiated charge that references the card's first payment (or ends
``authentication_required`` when the issuer still wants the payer).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import free_port, make_settings, migrated_database_url
from paymux.api.app import create_app
from paymux.gateways.sandbox import SandboxGateway
from paymux.services import Paymux
from paymux.storage.models import PaymentIntent
from support.pgcluster import PgCluster

_names = itertools.count()
OPTION = "payment_method_options[card][request_three_d_secure]"
AUTHENTICATED = {
    "authentication_flow": "challenge",
    "electronic_commerce_indicator": None,
    "liability_shift": True,
    "result": "authenticated",
    "result_reason": None,
    "transaction_id": None,
    "version": "2.2.0",
}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"tds_{next(_names)}")


class Api:
    def __init__(self, app: Paymux, http: httpx.AsyncClient) -> None:
        self.app, self.http = app, http

    @property
    def sandbox(self) -> SandboxGateway:
        gateway = self.app.ctx.gateways.sandbox()
        assert gateway is not None
        return gateway

    async def form(self, path: str, data: dict[str, Any]) -> httpx.Response:
        return await self.http.post(path, data=data)

    async def ok(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.http.request(method, path, **kw)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def run(db: str, tmp: Path, work: Callable[[Api], Awaitable[None]]) -> None:
    async def go() -> None:
        async with api(db, tmp) as a:
            await work(a)

    asyncio.run(go())


@asynccontextmanager
async def api(db: str, tmp: Path) -> AsyncIterator[Api]:
    settings = make_settings(db, tmp, free_port(), run_worker=False)
    app = Paymux(settings)
    asgi = create_app(settings, paymux=app)
    key = (await app.accounts.create_key()).key
    try:
        async with asgi.router.lifespan_context(asgi):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=asgi),
                base_url="https://paymux.test",
                headers={"authorization": f"Bearer {key}"},
            ) as http:
                yield Api(app, http)
    finally:
        await app.close()


def test_request_any_challenges_a_frictionless_card_and_the_charge_shows_the_result(
    db: str,
    tmp_path: Path,
) -> None:
    async def work(a: Api) -> None:
        r = await a.form(
            "/v1/payment_intents",
            {
                "amount": "2000",
                "currency": "eur",
                "payment_method": "pm_card_visa",
                "confirm": "true",
                "return_url": "https://shop.example/back",
                OPTION: "any",
            },
        )
        assert r.status_code == 200, r.text
        pi = r.json()
        assert pi["status"] == "requires_action"
        assert pi["payment_method_options"] == {"card": {"request_three_d_secure": "any"}}
        assert pi["next_action"]["type"] == "redirect_to_url"
        charge_ref = pi["gateway_reference"]
        a.sandbox.processor.complete_3ds(charge_ref, True)
        await a.app.engine.refresh_intent(pi["id"])
        after = await a.ok("GET", f"/v1/payment_intents/{pi['id']}")
        assert after["status"] == "succeeded"
        charge = await a.ok("GET", f"/v1/charges/{after['latest_charge']}")
        assert charge["payment_method_details"]["card"]["three_d_secure"] == AUTHENTICATED

    run(db, tmp_path, work)


def test_a_failed_challenge_is_recorded_and_a_plain_payment_has_none(
    db: str,
    tmp_path: Path,
) -> None:
    async def work(a: Api) -> None:
        pi = await a.ok(
            "POST",
            "/v1/payment_intents",
            json={
                "amount": 2000,
                "currency": "eur",
                "payment_method": "pm_card_threeDSecure2Required",
                "confirm": True,
                "return_url": "https://shop.example/back",
                "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            },
        )
        assert pi["status"] == "requires_action"
        a.sandbox.processor.complete_3ds(pi["gateway_reference"], False)
        await a.app.engine.refresh_intent(pi["id"])
        after = await a.ok("GET", f"/v1/payment_intents/{pi['id']}")
        assert after["status"] == "requires_payment_method"
        assert after["last_payment_error"]["code"] == "payment_intent_authentication_failure"
        charge = await a.ok("GET", f"/v1/charges/{after['latest_charge']}")
        assert charge["status"] == "failed"
        failed = {
            **AUTHENTICATED,
            "result": "failed",
            "result_reason": "rejected",
            "liability_shift": False,
        }
        assert await _stored_3ds(a, pi["id"]) == failed
        # The card was taken off the failed intent (as on Stripe), not off its charge: the
        # failed charge shows the card it ran on and the failed authentication, in Stripe's
        # shape (payment_method_details.card.three_d_secure.result "failed").
        assert after["payment_method"] is None
        used = after["last_payment_error"]["payment_method"]
        used = used["id"] if isinstance(used, dict) else used
        assert used and charge["payment_method"] == used
        card = charge["payment_method_details"]["card"]
        assert card["three_d_secure"] == failed
        assert card["last4"] == "3220"  # pm_card_threeDSecure2Required: 4000 0000 0000 3220
        listed = await a.ok("GET", "/v1/charges", params={"payment_intent": pi["id"]})
        assert [c["payment_method_details"]["card"]["three_d_secure"]["result"]
                for c in listed["data"]] == ["failed"]

        plain = await a.ok(
            "POST",
            "/v1/payment_intents",
            json={
                "amount": 1500,
                "currency": "eur",
                "payment_method": "pm_card_visa",
                "confirm": True,
                "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            },
        )
        assert plain["status"] == "succeeded"
        charge = await a.ok("GET", f"/v1/charges/{plain['latest_charge']}")
        assert charge["payment_method_details"]["card"]["three_d_secure"] is None

    run(db, tmp_path, work)


async def _stored_3ds(a: Api, pi_id: str) -> Any:
    async with a.app.ctx.db.read() as s:
        return (
            await s.execute(select(PaymentIntent.three_d_secure).where(PaymentIntent.id == pi_id))
        ).scalar_one()


def test_the_option_on_confirm_overrides_and_a_bad_value_is_a_400_with_its_param(
    db: str,
    tmp_path: Path,
) -> None:
    async def work(a: Api) -> None:
        created = await a.ok(
            "POST", "/v1/payment_intents", json={"amount": 1000, "currency": "usd"}
        )
        for body in (
            {OPTION: "always"},
            {"payment_method_options[card][request_three_d_secure]": "ANY"},
        ):
            r = await a.form(
                f"/v1/payment_intents/{created['id']}/confirm",
                {"payment_method": "pm_card_visa", **body},
            )
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["code"], error["param"]) == ("parameter_invalid", OPTION)
        r = await a.http.post(
            "/v1/payment_intents",
            json={
                "amount": 1000,
                "currency": "usd",
                "payment_method_options": {"card": {"request_three_d_secure": "sometimes"}},
            },
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == OPTION
        r = await a.http.post(
            "/v1/payment_intents",
            json={
                "amount": 1000,
                "currency": "usd",
                "payment_method_options": {"card": {"unknown_option": "x"}},
            },
        )
        assert r.status_code == 400
        # Nothing was half-written: the intent is as created, never confirmed.
        still = await a.ok("GET", f"/v1/payment_intents/{created['id']}")
        assert (still["status"], still["payment_method_options"]) == ("requires_payment_method", {})
        r = await a.form(
            f"/v1/payment_intents/{created['id']}/confirm",
            {
                "payment_method": "pm_card_visa",
                "return_url": "https://shop.example/r",
                OPTION: "challenge",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "requires_action"
        assert r.json()["payment_method_options"] == {
            "card": {"request_three_d_secure": "challenge"}
        }

    run(db, tmp_path, work)


def test_an_empty_form_value_is_not_given(db: str, tmp_path: Path) -> None:
    """As on Stripe, ``...[request_three_d_secure]=`` in a form is the option left out."""

    async def work(a: Api) -> None:
        r = await a.form("/v1/payment_intents", {"amount": "1000", "currency": "usd", OPTION: ""})
        assert r.status_code == 200, r.text
        assert r.json()["payment_method_options"] == {}
        r = await a.form(
            f"/v1/payment_intents/{r.json()['id']}/confirm",
            {"payment_method": "pm_card_visa", OPTION: ""},
        )
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["payment_method_options"]) == ("succeeded", {})

    run(db, tmp_path, work)


def test_merchant_initiated_charges_reference_the_first_payment_or_need_the_payer(
    db: str,
    tmp_path: Path,
) -> None:
    async def work(a: Api) -> None:
        customer = await a.ok("POST", "/v1/customers", json={"email": "a@example.com"})
        token = a.sandbox.processor.tokenize("4242424242424242", 12, 2034, None)
        first = await a.ok(
            "POST",
            "/v1/payment_intents",
            json={
                "amount": 1000,
                "currency": "eur",
                "customer": customer["id"],
                "payment_method": token,
                "setup_future_usage": "off_session",
                "confirm": True,
            },
        )
        assert first["status"] == "succeeded"
        first_charge = a.sandbox.processor._get(first["gateway_reference"])
        first_network_id = first_charge["network_transaction_id"]
        assert first_network_id == "ntx_" + first["gateway_reference"].removeprefix("ch_")

        later = await a.ok(
            "POST",
            "/v1/payment_intents",
            json={
                "amount": 500,
                "currency": "eur",
                "customer": customer["id"],
                "payment_method": first["payment_method"],
                "off_session": True,
                "confirm": True,
                # Never sent off session: nobody is there to authenticate.
                "payment_method_options": {"card": {"request_three_d_secure": "any"}},
            },
        )
        assert later["status"] == "succeeded"
        later_charge = a.sandbox.processor._get(later["gateway_reference"])
        assert later_charge["previous_network_transaction_id"] == first_network_id

        # A card whose issuer insists on authentication: off session it can only fail, as
        # authentication_required, with the payer sent to authenticate on session.
        r = await a.http.post(
            "/v1/payment_intents",
            json={
                "amount": 500,
                "currency": "eur",
                "payment_method": "pm_card_threeDSecure2Required",
                "off_session": True,
                "confirm": True,
            },
        )
        assert r.status_code == 402, r.text
        error = r.json()["error"]
        assert (error["code"], error["decline_code"]) == (
            "authentication_required",
            "authentication_required",
        )

    run(db, tmp_path, work)
