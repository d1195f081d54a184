"""What a fraud decision reads and writes (issue 13's p99), on SQLite and PostgreSQL, with two
Paymux instances on one database ("two API processes": their own engines and rule caches).

A decision whose rules its process has loaded reads its velocity counts, the rules' version,
the payment's values in the lists its rules name and the card's last minute with each key in
ONE statement. On SQLite the attempt is then counted with two upserts, or one when the card
is already counted in this minute. On PostgreSQL the read's statement is the call of a
function (migration 0036) that takes the keys' advisory locks first and counts the attempt
after the read: one statement per allowed decision, and a block's call is followed by the
one that takes the attempt back (every velocity row as it was). A key's rows older than a
day are deleted only when that read found some. A
list item added through the other process decides the next payment (the one statement reads
the items); a rule naming another list, added through the other process, too (the version
shows the change, and the lists are read again for the new rules).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert

from conftest import migrated_database_url
from paymux.storage import driver
from paymux.storage.models import FraudVelocityBucket, FraudVelocityCard
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
IP = "198.51.100.23"
# A confirm's call: migration 0039's, which locks the intent and runs 0036/0037's
# ``paymux_fraud_decision_start`` in the same round trip.
LOCKED_READ = "paymux_fraud_confirm_start"
UNDO = "paymux_fraud_decision_undo"
EMAIL = "payer@example.org"


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fraudr_{next(_names)}")


class FraudStatements:
    """The statements a process sends to the fraud tables (velocity, rules, lists) and the
    advisory locks, but the settle's UPDATEs (on PostgreSQL one call of
    ``paymux_fraud_settle``, migration 0037): what a decision costs."""

    def __init__(self, h: Harness) -> None:
        self.seen: list[str] = []
        self.on = False

        def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            flat = " ".join(sql.split())
            if (
                self.on
                and not flat.startswith("UPDATE")
                and "paymux_fraud_settle" not in flat  # the settle's UPDATEs, one call
                and any(
                    name in flat
                    for name in (
                        "fraud_velocity",
                        "fraud_rules",
                        "radar_value",
                        "pg_advisory",
                        "paymux_fraud",
                    )
                )
            ):
                # Verb, table or first columns; migration 0036's functions by their name.
                named = [name for name in (LOCKED_READ, UNDO) if name in flat]
                words = named[0] if named else " ".join(flat.split()[:3])
                self.seen.append(words)

        event.listen(h.app.ctx.db.writer.sync_engine, "before_cursor_execute", record)
        # The decision's statements run on the driver (storage/driver.py), below SQLAlchemy's
        # events; its observers see them (any app of this process: the other Harness sends
        # no fraud statement while ``on``).
        self.stop = driver.observe(lambda sql, _took: record(None, None, sql))

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        return seen


async def _velocity_rows(h: Harness) -> list[Any]:
    buckets = await h.sql(
        'select "key", minute, attempts, declines, settled, cards from fraud_velocity_buckets'
        ' order by "key", minute'
    )
    cards = await h.sql('select "key", card, minute from fraud_velocity_cards order by 1, 2')
    return [*map(tuple, buckets), "cards", *map(tuple, cards)]


async def _pay(h: Harness, key: str) -> tuple[int, dict[str, Any]]:
    r = await h.http.post(
        "/v1/payment_intents",
        json={"amount": 2000, "currency": "usd", "receipt_email": EMAIL},
        headers={"authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    r = await h.http.post(
        f"/v1/payment_intents/{r.json()['id']}/confirm",
        json={"payment_method": "tok_visa"},
        headers={"authorization": f"Bearer {key}", "Paymux-Payer-Ip": IP},
    )
    body: dict[str, Any] = r.json()
    return r.status_code, body


def test_a_decision_reads_once_and_a_list_or_rule_changed_elsewhere_decides_the_next(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with (
            Harness.open(db, tmp_path / "a") as a,
            Harness.open(db, tmp_path / "b") as b,
        ):
            postgres = not b.app.ctx.db.is_sqlite
            watch = FraudStatements(b)
            # SQLite: the read, then the attempt's upserts after the rules allow it.
            # PostgreSQL: one call (migration 0036) takes the keys' advisory locks, reads,
            # and counts the attempt before the rules decide; a block takes it back.
            read = ["SELECT 'b' AS"]
            status, body = await _pay(b, a.key)  # b loads the rules (defaults only)
            assert (status, body["status"]) == (200, "succeeded")

            watch.on = True
            b.advance(60)  # the next minute: the card moves to it (from the IP and email)
            status, body = await _pay(b, a.key)
            assert (status, body["status"]) == (200, "succeeded")
            # The keys (card, IP, email) are new this minute: no DELETE, as no row is old.
            # Statements per allowed decision: 1 on PostgreSQL (3 before migration 0036: the
            # lock, the read, the write), 3 on SQLite.
            seen = watch.take()
            assert len(seen) == (1 if postgres else 3), seen
            assert seen == (
                [LOCKED_READ]
                if postgres
                else [
                    *read,  # counts, rules' version, lists, card's minutes: one
                    "INSERT INTO fraud_velocity_buckets",  # the attempt counted
                    "INSERT INTO fraud_velocity_cards",  # the card moved
                ]
            )
            # Again in the same minute: the card is counted in this minute already, so
            # nothing moves and the card rows are not written.
            status, body = await _pay(b, a.key)
            assert (status, body["status"]) == (200, "succeeded")
            assert watch.take() == (
                [LOCKED_READ] if postgres else [*read, "INSERT INTO fraud_velocity_buckets"]
            )

            # A day-old row of the payer's IP: the next decision's read finds it, and the
            # attempt's write deletes it (and no other key's rows).
            ip_key = hashlib.sha256(f"ip:{IP}".encode()).hexdigest()
            now_minute = b.clock.now_us() // 60_000_000
            async with a.app.ctx.db.write() as s:  # not b's statements
                for model, extra in (
                    (FraudVelocityBucket, {"attempts": 9, "declines": 9, "settled": 9}),
                    (FraudVelocityCard, {"card": "e" * 64}),
                ):
                    await s.execute(
                        insert(model).values(
                            account_id=a.account,
                            livemode=False,
                            key=ip_key,
                            minute=now_minute - 24 * 60 - 3,
                            **extra,
                        )
                    )
            status, _ = await _pay(b, a.key)
            assert status == 200
            assert watch.take() == [
                *([LOCKED_READ] if postgres else [*read, "INSERT INTO fraud_velocity_buckets"]),
                "DELETE FROM fraud_velocity_buckets",
                "DELETE FROM fraud_velocity_cards",
            ]
            old = await a.sql(  # not b's statements
                "select count(*) from fraud_velocity_buckets where minute < :m",
                m=now_minute - 24 * 60,
            )
            assert old[0][0] == 0

            # A list item added through a: b's next decision (its rules unchanged, cached)
            # finds it in its one statement; the built-in rule blocks.
            r = await a.post(
                "/v1/radar/value_lists",
                {"alias": "blocked_emails", "name": "Blocked", "item_type": "email"},
            )
            assert r.status_code == 200, r.text
            item = await a.post(
                "/v1/radar/value_list_items", {"value_list": r.json()["id"], "value": EMAIL}
            )
            assert item.status_code == 200, item.text
            before = await _velocity_rows(a)
            status, body = await _pay(b, a.key)
            assert (status, body["error"]["decline_code"]) == (402, "fraudulent")
            # A block counts nothing: on PostgreSQL the attempt the call counted is taken
            # back in the transaction; every velocity row is as it was.
            assert watch.take() == ([LOCKED_READ, UNDO] if postgres else read)
            assert await _velocity_rows(a) == before
            r = await a.http.delete(f"/v1/radar/value_list_items/{item.json()['id']}")
            assert r.status_code == 200, r.text
            status, _ = await _pay(b, a.key)
            assert status == 200
            watch.take()

            # A rule naming a list b's cached rules don't name, added through a: b's read
            # shows the new version; b loads the rules and reads the new list.
            r = await a.post(
                "/v1/radar/value_lists",
                {"alias": "watched_ips", "name": "Watched", "item_type": "ip_address"},
            )
            assert r.status_code == 200, r.text
            item = await a.post(
                "/v1/radar/value_list_items", {"value_list": r.json()["id"], "value": IP}
            )
            assert item.status_code == 200, item.text
            r = await a.post("/v1/fraud/rules", {"rule": "block if :ip_address: in @watched_ips"})
            assert r.status_code == 200, r.text
            status, body = await _pay(b, a.key)
            assert (status, body["error"]["decline_code"]) == (402, "fraudulent")
            assert body["error"]["payment_intent"]["last_payment_error"]["code"] == "card_declined"
            seen = watch.take()
            assert seen == [
                LOCKED_READ if postgres else "SELECT 'b' AS",
                "SELECT fraud_rules.id, fraud_rules.account_id,",  # the rules, loaded again
                "SELECT radar_value_lists.alias, radar_value_list_items.match_value",
                *([UNDO] if postgres else []),
            ]
            watch.stop()

    asyncio.run(main())
