"""Fraud behaviour an audit found unshown, in process against the scripted provider (the
connector seam) on SQLite and PostgreSQL, with a frozen clock the tests move: the dry run's
``limit``, deleting a rule and rule priority through the API, the built-in known-bad lists
and the value checks of list items, turning built-in rules off, velocity by email and by
customer over hourly and daily windows, and card testing across many cards or on one card.

Every expected value is stated by hand from docs/fraud.md (thresholds, windows, rule ids)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import migrated_database_url
from support.fake_gateway import Outcome
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fraud_audit_{next(_names)}")


async def ok(h: Harness, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await h.post(path, body or {})
    assert r.status_code == 200, r.text
    return h.body(r)


async def new_pi(h: Harness, amount: int = 2000, **params: Any) -> dict[str, Any]:
    return await ok(h, "/v1/payment_intents", {"amount": amount, "currency": "usd", **params})


async def confirm(
    h: Harness, pi_id: str, token: str = "tok_visa", ip: str | None = None
) -> httpx.Response:
    headers = {"Paymux-Payer-Ip": ip} if ip else {}
    return await h.http.post(
        f"/v1/payment_intents/{pi_id}/confirm", json={"payment_method": token}, headers=headers
    )


async def pay(h: Harness, token: str = "tok_visa", ip: str | None = None, **params: Any) -> str:
    """A new payment of 20.00 confirmed with ``token``: ``succeeded``, ``declined`` (the
    issuer's) or ``blocked`` (paymux's fraud block, before the gateway)."""
    pi = await new_pi(h, **params)
    r = await confirm(h, pi["id"], token, ip)
    if r.status_code == 200:
        assert h.body(r)["status"] == "succeeded", r.text
        return "succeeded"
    assert r.status_code == 402, r.text
    return "blocked" if r.json()["error"]["decline_code"] == "fraudulent" else "declined"


async def rule_of_charge(h: Harness, pi_id: str) -> Any:
    charge = await h.get(f"/v1/charges/ch_{pi_id.removeprefix('pi_')}")
    return charge["outcome"]["rule"]


# -- 1. the dry run's limit ---------------------------------------------------------------------
def test_a_dry_run_with_limit_1_evaluates_only_the_latest_payment(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = []
            for amount in (6000, 7000, 8000):  # all three would match the rule
                pi = await new_pi(h, amount)
                assert (await confirm(h, pi["id"])).status_code == 200
                made.append(pi["id"])
                h.advance(1)  # each made a second after the one before
            out = await ok(
                h, "/v1/fraud/rules/test", {"rule": "block if :amount: > 5000", "limit": 1}
            )
            assert (out["evaluated"], out["matched_count"]) == (1, 1)
            assert [(m["payment_intent"], m["amount"]) for m in out["matched"]] == [(made[2], 8000)]
            every = await ok(h, "/v1/fraud/rules/test", {"rule": "block if :amount: > 5000"})
            assert every["evaluated"] == 3
            assert [m["payment_intent"] for m in every["matched"]] == made[::-1]

    asyncio.run(main())


# -- 2. delete and priority through the API -----------------------------------------------------
def test_a_deleted_block_rule_lets_the_next_confirm_succeed(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = await ok(h, "/v1/fraud/rules", {"rule": "block if :amount: >= 1000"})
            pi = await new_pi(h, 1500)
            r = await confirm(h, pi["id"])
            assert (r.status_code, r.json()["error"]["decline_code"]) == (402, "fraudulent")
            gone = await h.http.delete(f"/v1/fraud/rules/{made['id']}")
            assert gone.status_code == 200, gone.text
            done = await confirm(h, pi["id"])
            assert done.status_code == 200, done.text
            assert h.body(done)["status"] == "succeeded"
            assert h.gw.calls["authorize"] == 1

    asyncio.run(main())


def test_of_two_matching_block_rules_the_lower_priority_number_is_reported(
    db: str, tmp_path: Path
) -> None:
    """rules.py: lower ``priority`` runs first among rules of one action."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            five = await ok(
                h, "/v1/fraud/rules", {"rule": "block if :amount: > 100", "priority": 5}
            )
            one = await ok(
                h, "/v1/fraud/rules", {"rule": "block if :currency: = 'usd'", "priority": 1}
            )
            pi = await new_pi(h, 2000)
            assert (await confirm(h, pi["id"])).status_code == 402
            assert (await rule_of_charge(h, pi["id"]))["id"] == one["id"]
            # swap the priorities: the other rule is reported
            await ok(h, f"/v1/fraud/rules/{one['id']}", {"priority": 9})
            again = await new_pi(h, 2000)
            assert (await confirm(h, again["id"])).status_code == 402
            assert (await rule_of_charge(h, again["id"]))["id"] == five["id"]
            assert h.gw.calls["authorize"] == 0

    asyncio.run(main())


# -- 3. the built-in known-bad lists ------------------------------------------------------------
async def value_list(h: Harness, alias: str, item_type: str, *values: str) -> dict[str, Any]:
    made = await ok(
        h, "/v1/radar/value_lists", {"alias": alias, "name": alias, "item_type": item_type}
    )
    for value in values:
        await ok(h, "/v1/radar/value_list_items", {"value_list": made["id"], "value": value})
    return made


def test_the_built_in_blocked_emails_and_blocked_ips_lists_block_with_no_rule_of_ours(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await value_list(h, "blocked_emails", "email", "Fraud@Example.com")
            await value_list(h, "blocked_ips", "ip_address", "203.0.113.77")
            rules: list[Any] = (await h.get("/v1/fraud/rules"))["data"]
            assert rules == []  # no account rule: the built-in ones decide
            by_email = await new_pi(h, receipt_email="fraud@example.com")
            r = await confirm(h, by_email["id"], ip="192.0.2.10")
            assert (r.status_code, r.json()["error"]["decline_code"]) == (402, "fraudulent")
            assert (await rule_of_charge(h, by_email["id"]))["id"] == "default:blocked_emails"
            by_ip = await new_pi(h, receipt_email="someone@example.com")
            r = await confirm(h, by_ip["id"], ip="203.0.113.77")
            assert (r.status_code, r.json()["error"]["decline_code"]) == (402, "fraudulent")
            assert (await rule_of_charge(h, by_ip["id"]))["id"] == "default:blocked_ips"
            assert h.gw.calls["authorize"] == 0
            # neither on a list: paid
            assert await pay(h, ip="192.0.2.10", receipt_email="someone@example.com") == (
                "succeeded"
            )
            assert h.gw.calls["authorize"] == 1

    asyncio.run(main())


# (item type, a value of it, values that are not), one list of each type
_ITEM_CHECKS: list[tuple[str, str, list[str]]] = [
    ("email", "a@example.com", ["not-an-email"]),
    ("ip_address", "2001:db8::1", ["203.0.113.256", "example.com"]),
    ("card_bin", "424242", ["42424", "424242424", "4242ab"]),
    ("string", "anything at all", ["   "]),
]


def test_a_list_item_that_is_not_of_the_list_s_type_is_a_400_and_nothing_is_added(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            for item_type, good, bad in _ITEM_CHECKS:
                made = await value_list(h, f"a_{item_type}", item_type)
                for value in bad:
                    r = await h.post(
                        "/v1/radar/value_list_items", {"value_list": made["id"], "value": value}
                    )
                    assert r.status_code == 400, (item_type, value, r.text)
                    error = r.json()["error"]
                    assert (error["code"], error["param"]) == ("parameter_invalid", "value")
                item = await ok(
                    h, "/v1/radar/value_list_items", {"value_list": made["id"], "value": good}
                )
                assert item["value"] == good
                listed = await h.get(f"/v1/radar/value_list_items?value_list={made['id']}")
                assert [i["value"] for i in listed["data"]] == [good], item_type

    asyncio.run(main())


# -- 5. built-in rules turned off ---------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [{"fraud_defaults": False}, {"fraud_disabled_defaults": "card_testing_ip"}],
    ids=["defaults_off", "card_testing_ip_off"],
)
def test_with_the_card_testing_default_off_declines_from_one_ip_keep_reaching_the_gateway(
    db: str, tmp_path: Path, overrides: dict[str, Any]
) -> None:
    """With it on, the 6th attempt after 5 declines from one IP is blocked
    (test_fraud_decisions.py); off, every attempt reaches the gateway."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, **overrides) as h:
            for _ in range(6):
                h.gw.script("authorize", Outcome.decline("card_declined"))
                assert await pay(h, "tok_visa", ip="198.51.100.40") == "declined"
            assert await pay(h, "tok_visa", ip="198.51.100.40") == "succeeded"
            assert h.gw.calls["authorize"] == 7

    asyncio.run(main())


# -- 6. velocity by email and by customer -------------------------------------------------------
def test_payments_per_email_hourly_counts_the_hour_and_then_forgets(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await ok(h, "/v1/fraud/rules", {"rule": "block if :payments_per_email_hourly: >= 2"})
            email = {"receipt_email": "buyer@example.com"}
            assert await pay(h, "tok_a", **email) == "succeeded"
            assert await pay(h, "tok_b", **email) == "succeeded"
            assert await pay(h, "tok_c", **email) == "blocked"  # 2 in the hour already
            assert await pay(h, "tok_c", receipt_email="other@example.com") == "succeeded"
            h.advance(61 * 60)
            assert await pay(h, "tok_d", **email) == "succeeded"  # the hour has passed
            assert h.gw.calls["authorize"] == 4

    asyncio.run(main())


def test_payments_per_customer_daily_holds_past_an_hour_and_ends_after_a_day(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await ok(h, "/v1/fraud/rules", {"rule": "block if :payments_per_customer_daily: >= 2"})
            cus = await ok(h, "/v1/customers", {"email": "c@example.com"})
            other = await ok(h, "/v1/customers", {"email": "d@example.com"})
            assert await pay(h, "tok_a", customer=cus["id"]) == "succeeded"
            assert await pay(h, "tok_b", customer=cus["id"]) == "succeeded"
            assert await pay(h, "tok_c", customer=cus["id"]) == "blocked"
            h.advance(61 * 60)
            assert await pay(h, "tok_c", customer=cus["id"]) == "blocked"  # still that day
            assert await pay(h, "tok_c", customer=other["id"]) == "succeeded"
            h.advance((1441 - 61) * 60)  # 1441 minutes after the two payments
            assert await pay(h, "tok_d", customer=cus["id"]) == "succeeded"
            assert h.gw.calls["authorize"] == 4

    asyncio.run(main())


# -- 7. card testing through payments -----------------------------------------------------------
def test_card_testing_across_many_cards_from_one_ip_is_blocked_for_the_hour(
    db: str, tmp_path: Path
) -> None:
    """card_testing_cards: 3 declines and 5 distinct cards from one IP in the hour block it,
    with fewer declines than card_testing_ip's 5 in 10 minutes."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            ip = "198.51.100.60"
            for n in range(3):
                h.gw.script("authorize", Outcome.decline("card_declined"))
                assert await pay(h, f"tok_card{n}", ip=ip) == "declined"
            assert await pay(h, "tok_card3", ip=ip) == "succeeded"  # 4 cards: not yet
            h.advance(11 * 60)  # past card_testing_ip's 10 minutes: only the hour counts
            assert await pay(h, "tok_card4", ip=ip) == "succeeded"  # the 5th card
            assert await pay(h, "tok_card5", ip=ip) == "blocked"
            assert await pay(h, "tok_card0", ip=ip) == "blocked"  # a known card too
            assert await pay(h, "tok_card5", ip="192.0.2.60") == "succeeded"  # another IP
            assert h.gw.calls["authorize"] == 6
            h.advance(50 * 60)  # 61 minutes after the declines
            assert await pay(h, "tok_card6", ip=ip) == "succeeded"

    asyncio.run(main())


def test_one_card_declined_10_times_in_a_day_is_blocked_and_other_cards_are_not(
    db: str, tmp_path: Path
) -> None:
    """card_testing_card: 10 declines on one card in the day; no IP is sent, so the
    address rules can't be what blocks."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            for _ in range(10):
                h.gw.script("authorize", Outcome.decline("card_declined"))
                assert await pay(h, "tok_hammered") == "declined"
                h.advance(60)
            assert await pay(h, "tok_hammered") == "blocked"
            assert await pay(h, "tok_fresh") == "succeeded"
            assert h.gw.calls["authorize"] == 11
            h.advance(1441 * 60)  # a day after the last decline
            assert await pay(h, "tok_hammered") == "succeeded"

    asyncio.run(main())


# -- 4. the built-in @disposable_email_domains --------------------------------------------------
def test_the_issue_s_disposable_email_rule_saves_and_reviews_a_mailinator_payer(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            text = "review if :email_domain: in @disposable_email_domains"
            made = await ok(h, "/v1/fraud/rules", {"rule": text})  # no list made: built in
            held = await new_pi(h, 3000, receipt_email="x@mailinator.com")
            r = await confirm(h, held["id"])
            assert r.status_code == 200, r.text
            assert (h.body(r)["status"], h.body(r)["amount_capturable"]) == (
                "requires_capture",
                3000,
            )
            reviews: list[Any] = (await h.get("/v1/reviews?open=true"))["data"]
            assert [(rv["payment_intent"], rv["rule"]) for rv in reviews] == [
                (held["id"], made["id"])
            ]
            assert await pay(h, receipt_email="x@example.com") == "succeeded"
            dry = await ok(h, "/v1/fraud/rules/test", {"rule": text})
            assert (dry["evaluated"], [m["payment_intent"] for m in dry["matched"]]) == (
                2,
                [held["id"]],
            )
            # read-only: no account list takes its alias
            r = await h.post(
                "/v1/radar/value_lists",
                {"alias": "disposable_email_domains", "name": "mine", "item_type": "string"},
            )
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "alias"

    asyncio.run(main())
