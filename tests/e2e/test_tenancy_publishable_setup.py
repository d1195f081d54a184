"""A publishable key and SetupIntents (paymux.js saving a card): it reads and confirms only the
one SetupIntent whose client secret it holds, of its own account, and sees neither its customer
nor its metadata; another account's SetupIntent, even with that intent's own secret, is refused
and left as it was. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from conftest import Api, RunningServer
from paymux.services import Paymux


def publishable_key(server: RunningServer, account: str) -> str:
    async def make() -> str:
        app = Paymux(server.settings)
        try:
            new, _ = await app.keys.create(account, kind="publishable")
            return new.key
        finally:
            await app.close()

    return asyncio.run(make())


def call(server: RunningServer, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", headers={"authorization": f"Bearer {key}"}, timeout=30, **kw
    )


def error_of(r: httpx.Response) -> tuple[int, str, str | None]:
    error = r.json()["error"]
    return r.status_code, error["code"], error.get("param")


def test_a_publishable_key_reaches_only_its_own_accounts_setup_intent_with_its_secret(
    api: Api,
) -> None:
    server = api.server
    other = Api(server)
    try:
        cus_a = api.ok("POST", "/v1/customers", {"email": "a@example.com"})["id"]
        seti_a = api.ok(
            "POST", "/v1/setup_intents", {"customer": cus_a, "metadata": {"order": "a-1"}}
        )
        path_a = f"/v1/setup_intents/{seti_a['id']}"
        secret_a = seti_a["client_secret"]
        pk_a = publishable_key(server, api.account_id)
        pk_b = publishable_key(server, other.account_id)

        # B's publishable key, with A's SetupIntent's own secret: refused, nothing shown.
        for r in (
            call(server, pk_b, "GET", path_a, params={"client_secret": secret_a}),
            call(
                server,
                pk_b,
                "POST",
                f"{path_a}/confirm",
                json={"payment_method": "pm_card_visa", "client_secret": secret_a},
            ),
        ):
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "client_secret"
            assert cus_a not in r.text and "a-1" not in r.text

        # A's own publishable key: only with the secret, only the publishable view.
        assert error_of(call(server, pk_a, "GET", path_a)) == (
            400,
            "parameter_missing",
            "client_secret",
        )
        wrong = call(server, pk_a, "GET", path_a, params={"client_secret": secret_a + "x"})
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "client_secret"
        seen = call(server, pk_a, "GET", path_a, params={"client_secret": secret_a})
        assert seen.status_code == 200, seen.text
        assert seen.json()["id"] == seti_a["id"]
        assert cus_a not in seen.text and "a-1" not in seen.text
        # Nothing else: no list, no create, no update, no cancel, no other confirm field.
        for method, path, body in (
            ("GET", "/v1/setup_intents", None),
            ("POST", "/v1/setup_intents", {"customer": cus_a}),
            ("POST", path_a, {"metadata": {"order": "taken"}}),
            ("POST", f"{path_a}/cancel", {}),
        ):
            r = call(server, pk_a, method, path, json=body)
            assert error_of(r)[:2] == (401, "publishable_key_not_allowed"), (method, path)
        extra = call(
            server,
            pk_a,
            "POST",
            f"{path_a}/confirm",
            json={
                "payment_method": "pm_card_visa",
                "client_secret": secret_a,
                "expand": ["customer"],  # would show the customer
            },
        )
        assert error_of(extra) == (400, "parameter_not_allowed", "expand")

        # A's SetupIntent is as A left it: waiting for a card, nothing attached to A's customer.
        still = api.ok("GET", path_a)
        assert (still["status"], still["payment_method"], still["metadata"]) == (
            "requires_payment_method",
            None,
            {"order": "a-1"},
        )
        assert api.ok("GET", f"/v1/customers/{cus_a}/payment_methods")["data"] == []
        assert other.ok("GET", "/v1/setup_intents")["data"] == []
    finally:
        other.close()


def test_a_declined_setup_confirm_shows_a_publishable_key_only_the_publishable_view(
    api: Api,
) -> None:
    """The decline's error carries the SetupIntent (as Stripe's does): with a publishable
    key, only what any publishable read of it shows (no customer, metadata, gateway
    reference or connection)."""
    server = api.server
    cus = api.ok("POST", "/v1/customers", {"email": "declined@example.com"})["id"]
    seti = api.ok("POST", "/v1/setup_intents", {"customer": cus, "metadata": {"order": "d-7"}})
    pk = publishable_key(server, api.account_id)
    r = call(
        server,
        pk,
        "POST",
        f"/v1/setup_intents/{seti['id']}/confirm",
        json={"payment_method": "pm_card_chargeDeclined", "client_secret": seti["client_secret"]},
    )
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert error["code"] == "card_declined"
    shown = error["setup_intent"]
    assert shown["id"] == seti["id"]
    for hidden in ("customer", "metadata", "gateway_reference", "connection"):
        assert shown.get(hidden) in (None, {}), (hidden, shown)
    assert cus not in r.text and "d-7" not in r.text
    # The secret key still sees the whole SetupIntent.
    full = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert (full["customer"], full["metadata"]) == (cus, {"order": "d-7"})
