"""Fraud decisions in process against the scripted provider (the connector seam), on SQLite
and PostgreSQL: a block never calls the gateway; a review opens in the transaction that
applies the authorization, also when the answer was lost and a recovery job applies it; a
capture that fails leaves the review open; the velocity counters live in the database, so
another process (another engine on the same database) counts the same."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from conftest import migrated_database_url
from paymux.fraud import velocity
from paymux.storage.db import Database
from paymux.storage.models import FraudVelocityBucket, FraudVelocityCard
from support.fake_gateway import Outcome
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fraud_{next(_names)}")


async def ok(h: Harness, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await h.post(path, body or {})
    assert r.status_code == 200, r.text
    return h.body(r)


async def rule(h: Harness, text: str) -> dict[str, Any]:
    return await ok(h, "/v1/fraud/rules", {"rule": text})


async def open_reviews(h: Harness) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await h.get("/v1/reviews?open=true"))["data"]
    return data


def test_a_block_calls_no_gateway_and_counts_nothing(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await rule(h, "block if :amount: >= 5000")
            pi = await ok(h, "/v1/payment_intents", {"amount": 5000, "currency": "usd"})
            r = await h.http.post(
                f"/v1/payment_intents/{pi['id']}/confirm",
                json={"payment_method": "tok_visa"},
                headers={"Paymux-Payer-Ip": "203.0.113.50"},
            )
            assert r.status_code == 402
            assert r.json()["error"]["decline_code"] == "fraudulent"
            assert h.gw.calls["authorize"] == 0 and h.gw.payments_for(pi["id"]) == []
            assert (await h.intents())[0]["status"] == "requires_payment_method"
            assert sorted(await h.events(pi["id"])) == [  # one instant: the clock is frozen
                "payment_intent.created",
                "payment_intent.payment_failed",
            ]
            # a block is not a decline and not an attempt: the velocity tables stay empty
            # (an address blocked once is not kept blocked by its own blocked attempts)
            for table in ("fraud_velocity_buckets", "fraud_velocity_cards"):
                rows = await h.sql(
                    f"select count(*) from {table} where account_id = :a", a=h.account
                )
                assert rows[0][0] == 0, table
            attempts = await h.sql(
                "select count(*) from gateway_attempts where object_id = :p", p=pi["id"]
            )
            assert attempts[0][0] == 0

    asyncio.run(main())


def test_one_review_opens_when_the_answer_was_lost_and_webhooks_come_twice(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = await rule(h, "review if :amount: > 1000")
            pi = await ok(h, "/v1/payment_intents", {"amount": 3000, "currency": "usd"})
            h.gw.script("authorize", Outcome.lose_response())
            r = await h.post(
                f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"}
            )
            # the answer was lost: never a 500; the payment is in flight, or already found
            # at the provider by the inline look-up
            assert r.status_code == 200, r.text
            assert h.body(r)["status"] in ("processing", "requires_capture")
            h.advance(120)
            await h.drain()
            await h.deliver_all(twice=True)  # the provider's webhooks, late and duplicated
            await h.drain()
            after = await h.get(f"/v1/payment_intents/{pi['id']}")
            assert after["status"] == "requires_capture"  # held: authorization only
            assert h.gw.money_authorized(pi["id"]) == 3000
            assert h.gw.money_captured(pi["id"]) == 0
            reviews = await open_reviews(h)
            assert [(rv["payment_intent"], rv["rule"]) for rv in reviews] == [
                (pi["id"], made["id"])
            ]
            assert "review.opened" in await h.events(reviews[0]["id"])

    asyncio.run(main())


def test_a_failed_capture_leaves_the_review_open_and_a_retry_closes_it(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await rule(h, "review if :amount: > 1000")
            pi = await ok(h, "/v1/payment_intents", {"amount": 3000, "currency": "usd"})
            held = await ok(
                h, f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"}
            )
            assert held["status"] == "requires_capture"
            (review,) = await open_reviews(h)
            h.gw.script("capture", Outcome.invalid())
            r = await h.post(f"/v1/reviews/{review['id']}/approve")
            assert r.status_code >= 400
            assert [rv["id"] for rv in await open_reviews(h)] == [review["id"]]
            assert h.gw.money_captured(pi["id"]) == 0
            approved = await ok(h, f"/v1/reviews/{review['id']}/approve")
            assert (approved["open"], approved["closed_reason"]) == (False, "approved")
            assert h.gw.money_captured(pi["id"]) == 3000
            assert sorted(await h.events(review["id"])) == ["review.closed", "review.opened"]

    asyncio.run(main())


def test_velocity_counters_are_in_the_database_for_every_process(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            for n in range(3):
                pi = await ok(h, "/v1/payment_intents", {"amount": 100 + n, "currency": "usd"})
                h.gw.script("authorize", Outcome.decline("card_declined"))
                r = await h.http.post(
                    f"/v1/payment_intents/{pi['id']}/confirm",
                    json={"payment_method": f"tok_card{n}"},
                    headers={"Paymux-Payer-Ip": "198.51.100.3"},
                )
                assert r.status_code == 402
            # another process: its own engine and pool on the same database
            other = Database(db)
            try:
                async with other.read() as s:
                    facts = await velocity.counts(
                        s,
                        h.account,
                        False,
                        {"ip": velocity.digest("ip", "198.51.100.3")},
                        h.clock.now_us(),
                    )
            finally:
                await other.dispose()
            assert facts["declines_per_ip_10m"] == 3
            assert facts["payments_per_ip_hourly"] == 3
            assert facts["distinct_cards_per_ip_daily"] == 3
            stored = await h.sql("select key from fraud_velocity_buckets") + await h.sql(
                "select key, card from fraud_velocity_cards"
            )
            # buckets: the ip and each of the 3 cards (one minute); cards: 3 seen from the ip
            assert len(stored) == (1 + 3) + 3
            text = repr(stored)
            assert "198.51.100.3" not in text and "tok_card" not in text

    asyncio.run(main())


def test_a_deployment_rule_from_the_rules_file_decides_for_every_account(
    db: str, tmp_path: Path
) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("# the deployment's rules\nblock if :currency: = 'eur' and :amount: > 900\n")

    async def main() -> None:
        async with Harness.open(db, tmp_path, fraud_rules_file=str(path)) as h:
            pi = await ok(h, "/v1/payment_intents", {"amount": 1000, "currency": "eur"})
            r = await h.post(
                f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"}
            )
            assert r.status_code == 402 and r.json()["error"]["decline_code"] == "fraudulent"
            assert h.gw.calls["authorize"] == 0
            rule = r.json()["error"]["payment_intent"]["id"]
            assert rule == pi["id"]
            usd = await ok(h, "/v1/payment_intents", {"amount": 1000, "currency": "usd"})
            done = await ok(
                h, f"/v1/payment_intents/{usd['id']}/confirm", {"payment_method": "tok_visa"}
            )
            assert done["status"] == "succeeded"

    asyncio.run(main())


def test_blocked_attempts_do_not_extend_an_ip_s_block(db: str, tmp_path: Path) -> None:
    """5 issuer declines from one IP block it for 10 minutes; the blocked attempts that
    follow are not declines, so the block ends 10 minutes after the declines, however
    often the address keeps trying (a shared address is not locked out for ever)."""

    async def confirm(h: Harness, token: str) -> Any:
        pi = await ok(h, "/v1/payment_intents", {"amount": 100, "currency": "usd"})
        return await h.http.post(
            f"/v1/payment_intents/{pi['id']}/confirm",
            json={"payment_method": token},
            headers={"Paymux-Payer-Ip": "198.51.100.8"},
        )

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            for _ in range(5):
                h.gw.script("authorize", Outcome.decline("card_declined"))
                r = await confirm(h, "tok_visa")
                assert r.json()["error"]["decline_code"] != "fraudulent"
            h.advance(360)
            for _ in range(10):  # six minutes on: still blocked, and trying hard
                r = await confirm(h, "tok_visa")
                assert r.json()["error"]["decline_code"] == "fraudulent"
            assert h.gw.calls["authorize"] == 5
            h.advance(300)  # 11 minutes after the declines, 5 after the blocked attempts
            done = await confirm(h, "tok_visa")
            assert done.status_code == 200, done.text
            assert h.body(done)["status"] == "succeeded"

    asyncio.run(main())


def test_velocity_keys_are_stored_hmac_d_with_the_configured_secret(
    db: str, tmp_path: Path
) -> None:
    import hashlib
    import hmac

    async def main() -> None:
        async with Harness.open(db, tmp_path, fraud_velocity_key="k-secret") as h:
            pi = await ok(h, "/v1/payment_intents", {"amount": 100, "currency": "usd"})
            r = await h.http.post(
                f"/v1/payment_intents/{pi['id']}/confirm",
                json={"payment_method": "tok_visa"},
                headers={"Paymux-Payer-Ip": "198.51.100.21"},
            )
            assert r.status_code == 200, r.text
            stored = {row[0] for row in await h.sql("select key from fraud_velocity_buckets")}
            want = hmac.new(b"k-secret", b"ip:198.51.100.21", hashlib.sha256).hexdigest()
            assert want in stored
            assert hashlib.sha256(b"ip:198.51.100.21").hexdigest() not in stored

    asyncio.run(main())


def test_a_keys_first_attempt_of_a_minute_prunes_its_rows_older_than_a_day(
    db: str, tmp_path: Path
) -> None:
    """``velocity.reserve`` counts one attempt per key in one statement, and a key's first
    attempt of a minute deletes that key's bucket and card rows older than a day (the counts
    ignore them); another key's old rows are left for its own next minute."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            now = h.clock.now_us()
            minute = velocity.minute_of(now)
            ip, other = velocity.digest("ip", "198.51.100.9"), velocity.digest("ip", "192.0.2.1")
            old = minute - 24 * 60 - 5  # a day and five minutes ago
            async with h.app.ctx.db.write() as s:
                for key in (ip, other):
                    await s.execute(
                        insert(FraudVelocityBucket).values(
                            account_id=h.account,
                            livemode=False,
                            key=key,
                            minute=old,
                            attempts=7,
                            declines=7,
                            settled=7,
                        )
                    )
                    await s.execute(
                        insert(FraudVelocityCard).values(
                            account_id=h.account,
                            livemode=False,
                            key=key,
                            card="c" * 64,
                            minute=old,
                        )
                    )
            for _ in range(2):  # two attempts in the same minute: one row, counted twice
                async with h.app.ctx.db.write() as s:
                    got = await velocity.reserve(
                        s,
                        h.account,
                        False,
                        {"ip": ip},
                        "d" * 64,
                        now_us=now,
                        is_sqlite=h.app.ctx.db.is_sqlite,
                    )
                assert got == minute
            buckets = await h.sql(
                "select key, minute, attempts from fraud_velocity_buckets order by key, minute"
            )
            assert sorted(tuple(r) for r in buckets) == sorted([(ip, minute, 2), (other, old, 7)])
            cards = await h.sql("select key, card, minute from fraud_velocity_cards")
            assert sorted(tuple(r) for r in cards) == sorted(
                [(ip, "d" * 64, minute), (other, "c" * 64, old)]
            )

    asyncio.run(main())
