"""Each fraud signal reaches the rules from a real request: over HTTP (the ASGI app in process,
on SQLite and PostgreSQL) against the scripted provider at the connector seam, a ``block``
rule on one signal blocks the confirm that carries the signal's value (402 ``fraudulent``, no
authorize call) and lets the one that doesn't through (``succeeded``).

Every expected value is worked out here by hand: the rate table's dollars (EUR 91.00 at
1.10 = 100.10; EUR 90.91 = 100.001, 100.00 to the cent), the country of an address in the
MaxMind database this test builds, whole days of a customer's age, the BIN and the checks
the provider gave for a card (docs/fraud.md, "Attributes")."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from conftest import migrated_database_url
from paymux.gateways.base import CardDetails
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
NZ_IP, BR_IP = "203.0.113.7", "198.51.100.1"  # NZ and BR in the database built below


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fraud_wire_{next(_names)}")


def _countries(tmp_path: Path) -> str:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "NZ"}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "BR"}})
    path = tmp_path / "countries.mmdb"
    writer.to_db_file(str(path))
    return str(path)


class Payer:
    """One account's requests: a payment made and confirmed, and what became of it."""

    def __init__(self, h: Harness, publishable: str) -> None:
        self.h = h
        self.publishable = publishable
        self.tokens = itertools.count()

    async def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.h.post(path, body)
        assert r.status_code == 200, r.text
        return self.h.body(r)

    async def pay(
        self,
        *,
        amount: int = 2000,
        currency: str = "usd",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        browser: bool = False,
        **params: Any,
    ) -> str:
        """``blocked`` (paymux's fraud block: no authorize call) or ``succeeded``."""
        pi = await self.ok(
            "/v1/payment_intents", {"amount": amount, "currency": currency, **params}
        )
        method = token or f"tok_wire_{next(self.tokens)}"
        body: dict[str, Any] = {"payment_method": method}
        sent = dict(headers or {})
        if browser:  # the payer's browser: publishable key and client secret
            body["client_secret"] = pi["client_secret"]
            sent["authorization"] = f"Bearer {self.publishable}"
        calls = self.h.gw.calls["authorize"]
        r = await self.h.http.post(
            f"/v1/payment_intents/{pi['id']}/confirm", json=body, headers=sent
        )
        if r.status_code == 402 and r.json()["error"].get("decline_code") == "fraudulent":
            assert self.h.gw.calls["authorize"] == calls  # never reached the gateway
            return "blocked"
        assert r.status_code == 200, r.text
        assert self.h.body(r)["status"] == "succeeded", r.text
        return "succeeded"

    def card(self, token: str, **details: Any) -> str:
        """A card the provider describes with ``details`` (its BIN, its checks)."""
        self.h.gw.add_card(
            CardDetails(
                token=token,
                brand="visa",
                last4="0005",
                exp_month=12,
                exp_year=2034,
                fingerprint=f"fp_{token}",
                country="US",
                funding="credit",
                **details,
            )
        )
        return token


Scenario = Callable[[Payer], Awaitable[list[str]]]


async def _amount_in_usd(p: Payer) -> list[str]:
    return [
        await p.pay(amount=9100, currency="eur"),  # 91.00 x 1.10 = 100.10 dollars
        await p.pay(amount=9091, currency="eur"),  # 100.001 -> 100.00: not > 100
        await p.pay(amount=900_000, currency="gbp"),  # no GBP rate: missing, never > 100
    ]


async def _ip_country_from_proxy(p: Payer) -> list[str]:
    return [
        await p.pay(browser=True, headers={"cf-ipcountry": "NZ"}),
        await p.pay(browser=True, headers={"cf-ipcountry": "AU"}),
        # a merchant's server call: its proxy header is not the payer's country
        await p.pay(headers={"cf-ipcountry": "NZ", "paymux-payer-ip": "192.0.2.9"}),
    ]


async def _ip_country_from_database(p: Payer) -> list[str]:
    return [
        await p.pay(headers={"paymux-payer-ip": NZ_IP}),
        await p.pay(headers={"paymux-payer-ip": BR_IP}),
        await p.pay(headers={"paymux-payer-ip": "192.0.2.10"}),  # in no network of the file
    ]


async def _user_agent(p: Payer) -> list[str]:
    return [
        await p.pay(headers={"paymux-payer-ip": "192.0.2.1", "paymux-payer-user-agent": "Bot/1"}),
        await p.pay(headers={"paymux-payer-ip": "192.0.2.1", "paymux-payer-user-agent": "Mo/5"}),
        await p.pay(browser=True, headers={"user-agent": "Bot/1"}),  # the browser's own
    ]


async def _email(p: Payer) -> list[str]:
    return [
        await p.pay(receipt_email="Thief@Example.com"),  # compared case-insensitively
        await p.pay(receipt_email="someone@example.com"),
        await p.pay(),  # no email
    ]


async def _email_domain(p: Payer) -> list[str]:
    return [
        await p.pay(receipt_email="a@fraud.example"),
        await p.pay(receipt_email="a@sub.fraud.example"),  # another domain
    ]


async def _disposable(p: Payer) -> list[str]:
    customer = await p.ok("/v1/customers", {"email": "x@mailinator.com"})
    return [
        await p.pay(customer=customer["id"]),  # the customer's email
        await p.pay(receipt_email="x@example.com"),
    ]


async def _customer_age(p: Payer) -> list[str]:
    customer = await p.ok("/v1/customers", {"name": "New"})
    young = await p.pay(customer=customer["id"])  # 0 days
    p.h.advance(2 * 86_400 - 1)  # 1 day and 23:59:59: 1 whole day
    still = await p.pay(customer=customer["id"])
    p.h.advance(1)  # 2 days
    old = await p.pay(customer=customer["id"])
    return [young, still, old, await p.pay()]  # no customer: missing


async def _with_billing(p: Payer, country: str) -> str:
    token = f"tok_billing_{next(p.tokens)}"
    pm = await p.ok(
        "/v1/payment_methods",
        {
            "type": "card",
            "card": {"token": token},
            "billing_details": {"address": {"country": country}},
        },
    )
    return await p.pay(token=pm["id"])


async def _billing_country(p: Payer) -> list[str]:
    return [await _with_billing(p, "fr"), await _with_billing(p, "DE"), await p.pay()]


async def _shipping_country(p: Payer) -> list[str]:
    def ship(country: str) -> dict[str, Any]:
        return {"name": "Jo", "address": {"line1": "1 Rue", "country": country}}

    return [
        await p.pay(shipping=ship("FR")),
        await p.pay(shipping=ship("DE")),
        await p.pay(),
    ]


async def _card_bin(p: Payer) -> list[str]:
    return [
        await p.pay(token=p.card("tok_bin_a", bin="400005")),
        await p.pay(token=p.card("tok_bin_b", bin="555555")),
        await p.pay(token=p.card("tok_bin_c")),  # the provider didn't say
    ]


async def _cvc_check(p: Payer) -> list[str]:
    return [
        await p.pay(token=p.card("tok_cvc_a", cvc_check="fail")),
        await p.pay(token=p.card("tok_cvc_b", cvc_check="pass")),
        await p.pay(token=p.card("tok_cvc_c")),
    ]


async def _address_zip_check(p: Payer) -> list[str]:
    return [
        await p.pay(token=p.card("tok_zip_a", address_zip_check="fail", cvc_check="pass")),
        await p.pay(token=p.card("tok_zip_b", address_zip_check="pass", cvc_check="fail")),
        await p.pay(token=p.card("tok_zip_c", address_line1_check="fail")),
    ]


async def _address_line1_check(p: Payer) -> list[str]:
    return [
        await p.pay(token=p.card("tok_line1_a", address_line1_check="fail")),
        await p.pay(token=p.card("tok_line1_b", address_line1_check="pass")),
    ]


B, S = "blocked", "succeeded"
CASES: dict[str, tuple[str, Scenario, list[str]]] = {
    "amount_in_usd": ("block if :amount_in_usd: > 100", _amount_in_usd, [B, S, S]),
    "ip_country_proxy": ("block if :ip_country: = 'NZ'", _ip_country_from_proxy, [B, S, S]),
    "ip_country_mmdb": ("block if :ip_country: = 'nz'", _ip_country_from_database, [B, S, S]),
    "user_agent": ("block if :user_agent: = 'Bot/1'", _user_agent, [B, S, B]),
    "email": ("block if :email: = 'thief@example.com'", _email, [B, S, S]),
    "email_domain": ("block if :email_domain: = 'fraud.example'", _email_domain, [B, S]),
    "disposable": (
        "block if :email_domain: in @disposable_email_domains",
        _disposable,
        [B, S],
    ),
    "customer_age_days": ("block if :customer_age_days: < 2", _customer_age, [B, B, S, S]),
    "billing_country": ("block if :billing_address_country: = 'FR'", _billing_country, [B, S, S]),
    "shipping_country": (
        "block if :shipping_address_country: = 'FR'",
        _shipping_country,
        [B, S, S],
    ),
    "card_bin": ("block if :card_bin: = '400005'", _card_bin, [B, S, S]),
    "cvc_check": ("block if :cvc_check: = 'fail'", _cvc_check, [B, S, S]),
    "address_zip_check": ("block if :address_zip_check: = 'fail'", _address_zip_check, [B, S, S]),
    "address_line1_check": (
        "block if :address_line1_check: = 'fail'",
        _address_line1_check,
        [B, S],
    ),
}


@pytest.mark.parametrize("signal", list(CASES))
def test_a_rule_on_the_signal_matches_exactly_the_requests_carrying_it(
    db: str, tmp_path: Path, signal: str
) -> None:
    rule, scenario, expected = CASES[signal]

    async def main() -> None:
        async with Harness.open(
            db,
            tmp_path,
            fraud_usd_rates="EUR=1.10",
            trusted_proxies="127.0.0.1",  # the ASGI client's address: the "proxy"
            fraud_geoip_database=_countries(tmp_path),
        ) as h:
            made, _ = await h.app.accounts.keys.create(h.account, kind="publishable")
            r = await h.post("/v1/fraud/rules", {"rule": rule})
            assert r.status_code == 200, r.text
            assert await scenario(Payer(h, made.key)) == expected

    asyncio.run(main())


def test_a_saved_payment_method_shows_the_gateway_s_checks_in_stripe_s_shape(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            p = Payer(h, "")
            token = p.card("tok_checks", bin="400005", cvc_check="fail", address_zip_check="pass")
            pm = await p.ok("/v1/payment_methods", {"type": "card", "card": {"token": token}})
            assert pm["card"]["checks"] == {
                "cvc_check": "fail",
                "address_line1_check": None,
                "address_postal_code_check": "pass",
            }
            rows = await h.sql(
                "select card_bin, card_cvc_check, card_address_zip_check from payment_methods "
                "where id = :id",
                id=pm["id"],
            )
            assert [tuple(row) for row in rows] == [("400005", "fail", "pass")]

    asyncio.run(main())


def test_the_built_in_blocked_bins_list_blocks_a_bin_put_on_it(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            p = Payer(h, "")
            bad = await p.ok(
                "/v1/radar/value_lists",
                {"alias": "blocked_bins", "name": "Bad BINs", "item_type": "card_bin"},
            )
            await p.ok("/v1/radar/value_list_items", {"value_list": bad["id"], "value": "400005"})
            # no rule of the account's: the built-in rule blocked_bins names the list
            assert [
                await p.pay(token=p.card("tok_bb_a", bin="400005")),
                await p.pay(token=p.card("tok_bb_b", bin="400006")),
                await p.pay(token=p.card("tok_bb_c")),  # no BIN: never on a list
            ] == [B, S, S]
            charges = await h.get("/v1/charges")
            rules = {c["outcome"]["rule"]["id"] for c in charges["data"] if c["outcome"]["rule"]}
            assert rules == {"default:blocked_bins"}

    asyncio.run(main())
