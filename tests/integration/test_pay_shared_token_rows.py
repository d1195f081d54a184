"""A use of a shared test token is stored as the ORM's constructor and INSERT stored it
(issue 10: services/customers.py makes that payment method without the ORM's constructor,
which its caller inserts on the database driver).

On SQLite and PostgreSQL, through the HTTP app with paymux's real services and the scripted
gateway at the connector seam, a shared token whose card details are all given (so that no
column is left NULL by chance) is used twice: by a create with ``confirm=true`` (the create's
transaction records it) and by the confirm of an intent created without one (the start's
transaction records it). Each row's every column is stated here as stored: its text,
``<null>`` for SQL NULL, JSON ``null`` where None was given.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from paymux.gateways.base import CardDetails
from support.databases import migrated_database_fixture
from support.fake_gateway import ScriptedGateway
from support.harness import START_US, Harness

db = migrated_database_fixture("pay_shared_token_rows")

TOKEN = "tok_shared_amex"
# An account's payment methods are unique by token: the confirm's use is of a second one.
TOKEN_2 = "tok_shared_amex_2"
GATEWAY_FINGERPRINT = "gwfp-amex-0005"

_COLUMNS = (
    "account_id",
    "customer_id",
    "gateway",
    "connection_id",
    "token",
    "type",
    "card_brand",
    "card_last4",
    "card_exp_month",
    "card_exp_year",
    "card_fingerprint",
    "card_country",
    "card_funding",
    "card_bin",
    "card_cvc_check",
    "card_address_line1_check",
    "card_address_zip_check",
    "livemode",
    "metadata",
    "billing_details",
    "network_transaction_id",
    "created_us",
)


def _as_text(column: str) -> str:
    return f"coalesce(CAST({column} AS TEXT), '<null>')"


def _card(token: str) -> CardDetails:
    return CardDetails(
        token=token,
        brand="amex",
        last4="0005",
        exp_month=7,
        exp_year=2031,
        fingerprint=GATEWAY_FINGERPRINT,
        country="GB",
        funding="debit",
        bin="378282",
        cvc_check="pass",
        address_line1_check="unchecked",
        address_zip_check="fail",
    )


def test_a_shared_tokens_uses_are_stored_as_the_orm_stored_them(db: str, tmp_path: Path) -> None:
    sqlite = db.startswith("sqlite")

    async def main() -> None:
        gw = ScriptedGateway()
        for token in (TOKEN, TOKEN_2):
            gw.shared_tokens.add(token)
            gw.cards[token] = _card(token)
        async with Harness.open(db, tmp_path, gw=gw) as h:
            r = await h.post(
                "/v1/payment_intents",
                {"amount": 2000, "currency": "usd", "confirm": True, "payment_method": TOKEN},
            )
            assert r.status_code == 200, r.text
            first = h.body(r)
            assert first["status"] == "succeeded"

            h.advance(1)
            r = await h.post("/v1/payment_intents", {"amount": 3000, "currency": "usd"})
            assert r.status_code == 200, r.text
            r = await h.post(
                f"/v1/payment_intents/{h.body(r)['id']}/confirm", {"payment_method": TOKEN_2}
            )
            assert r.status_code == 200, r.text
            second = h.body(r)
            assert second["status"] == "succeeded"

            columns = ", ".join(_as_text(c) for c in _COLUMNS)
            rows = await h.sql(f"select id, {columns} from payment_methods order by created_us, id")
            account = h.account

        # Each use is a payment method of its own, the one its intent names.
        assert [row[0] for row in rows] == [first["payment_method"], second["payment_method"]]
        fingerprint = hashlib.sha256(f"{account}:{GATEWAY_FINGERPRINT}".encode()).hexdigest()
        expected = {
            "account_id": account,
            "customer_id": "<null>",
            "gateway": "fake",
            "connection_id": "conn_env_fake",  # the connection the payment was routed to
            "type": "card",
            "card_brand": "amex",
            "card_last4": "0005",
            "card_exp_month": "7",
            "card_exp_year": "2031",
            "card_fingerprint": fingerprint[:16],
            "card_country": "GB",
            "card_funding": "debit",
            "card_bin": "378282",
            "card_cvc_check": "pass",
            "card_address_line1_check": "unchecked",
            "card_address_zip_check": "fail",
            "livemode": "0" if sqlite else "false",
            "metadata": "{}",
            "billing_details": "null",  # None given: JSON null, as the Core INSERT wrote it
            "network_transaction_id": "<null>",  # not given: SQL NULL
        }
        stored = [dict(zip(_COLUMNS, row[1:], strict=True)) for row in rows]
        assert stored == [
            {**expected, "token": TOKEN, "created_us": str(START_US)},
            {**expected, "token": TOKEN_2, "created_us": str(START_US + 1_000_000)},
        ]

    asyncio.run(main())
