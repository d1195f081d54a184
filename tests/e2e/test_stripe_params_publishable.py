"""What a publishable key (a checkout page's) is shown of a PaymentIntent, on every path:
a decline's ``error.payment_intent`` is the publishable view too (never the customer, the
metadata or references), and a publishable key can't replay the answer a secret key got
under the same Idempotency-Key (its request is not the secret key's request: a mismatch).

paymux's real services and HTTP app (in process, tests/support/harness.py) on SQLite and
PostgreSQL, against the scripted provider at the connector seam.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from support.fake_gateway import Outcome
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
# What the publishable view keeps of an intent that has these (api/access.py's list is the
# code's; this is Stripe's: docs.stripe.com/api/payment_intents/object, "publishable").
HIDDEN = ("customer", "metadata", "latest_charge", "amount_received", "gateway_reference")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"pk_view_{next(_names)}")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp) as h:
            await test(h)

    asyncio.run(main())


def data(token: str) -> dict[str, Any]:
    return {"type": "card", "card": {"token": token}}


async def an_intent_with_secrets(h: Harness) -> dict[str, Any]:
    cus = h.body(await h.post("/v1/customers", {"email": "payer@example.com"}))
    return h.body(await h.post("/v1/payment_intents", {
        "amount": 1200, "currency": "usd", "customer": cus["id"],
        "metadata": {"internal": "secret-note"}}))


async def publishable(h: Harness) -> dict[str, str]:
    new, _ = await h.app.keys.create(h.account, kind="publishable")
    return {"authorization": f"Bearer {new.key}"}


def test_a_decline_shows_a_publishable_key_only_the_publishable_view(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi = await an_intent_with_secrets(h)
        pk = await publishable(h)
        h.gw.script("authorize", Outcome.decline("insufficient_funds"))
        r = await h.http.post(f"/v1/payment_intents/{pi['id']}/confirm", headers=pk, json={
            "client_secret": pi["client_secret"],
            "payment_method_data": data("tok_single_use_pkd")})
        assert r.status_code == 402, r.text
        error = r.json()["error"]
        assert error["code"] == "card_declined"
        seen = error["payment_intent"]
        assert (seen["id"], seen["status"], seen["amount"], seen["client_secret"]) == (
            pi["id"], "requires_payment_method", 1200, pi["client_secret"])
        assert seen["last_payment_error"]["code"] == "card_declined"
        assert [name for name in HIDDEN if name in seen] == []

        # A secret key's decline still carries the whole intent.
        h.gw.script("authorize", Outcome.decline("insufficient_funds"))
        full = await h.post(f"/v1/payment_intents/{pi['id']}/confirm",
                            {"payment_method_data": data("tok_single_use_skd")})
        assert full.status_code == 402, full.text
        whole = full.json()["error"]["payment_intent"]
        assert (whole["customer"], whole["metadata"]) == (
            pi["customer"], {"internal": "secret-note"})

    run(db, tmp_path, test)


def test_a_publishable_key_cannot_replay_a_secret_key_s_answer(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await an_intent_with_secrets(h)
        body = {"client_secret": pi["client_secret"],
                "payment_method_data": data("tok_single_use_pk")}
        path = f"/v1/payment_intents/{pi['id']}/confirm"
        sk = await h.post(path, body, key="k-pk")
        assert sk.status_code == 200, sk.text
        assert sk.json()["metadata"] == {"internal": "secret-note"}

        pk = await publishable(h)
        replay = await h.http.post(path, json=body, headers={**pk, "idempotency-key": "k-pk"})
        assert replay.status_code == 400, replay.text
        assert replay.json()["error"]["code"] == "idempotency_key_mismatch"
        assert "secret-note" not in replay.text and pi["customer"] not in replay.text
        assert "idempotent-replayed" not in replay.headers

        # ... nor the other way round, and a publishable key's own retry still replays.
        other = await an_intent_with_secrets(h)
        mine = {"client_secret": other["client_secret"],
                "payment_method_data": data("tok_single_use_pk2")}
        path = f"/v1/payment_intents/{other['id']}/confirm"
        first = await h.http.post(path, json=mine, headers={**pk, "idempotency-key": "k-pk2"})
        assert first.status_code == 200, first.text
        assert [name for name in HIDDEN if name in first.json()] == []
        again = await h.http.post(path, json=mine, headers={**pk, "idempotency-key": "k-pk2"})
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
        assert again.json() == first.json()
        secret = await h.post(path, mine, key="k-pk2")
        assert secret.status_code == 400, secret.text
        assert secret.json()["error"]["code"] == "idempotency_key_mismatch"

    run(db, tmp_path, test)
