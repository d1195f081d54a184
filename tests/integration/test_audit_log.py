"""The audit log and key rolls, in process (services, HTTP app, a clock the test moves) on
SQLite and PostgreSQL: who did what to which object, per account, append-only in the
database itself; a rolled key's grace period measured on the app's clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from conftest import migrated_database_url
from paymux.security.envelope import generate_key_entry
from support.harness import Harness
from support.pgcluster import PgCluster

ADMIN = "adm_" + "a" * 24
_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    url = migrated_database_url(request.param, tmp_path, pg_cluster, f"audit_{next(_names)}")
    yield url


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp, admin_key=ADMIN) as h:
            await test(h)

    asyncio.run(main())


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def ok(
    h: Harness, method: str, path: str, key: str | None = None, **kw: Any
) -> dict[str, Any]:
    if key:
        kw["headers"] = auth(key)
    r = await h.http.request(method, path, **kw)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def entries(h: Harness, key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    page = await ok(h, "GET", "/v1/audit_log", key, params={"limit": 100, **params})
    return list(page["data"])


async def key_id_of(h: Harness, key: str) -> str:
    found = await h.app.keys.authenticate(key)
    assert found is not None
    return found.key_id


def test_creates_captures_cancels_and_refunds_are_audited_with_the_key_that_did_them(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        new, _ = await h.app.keys.create(
            h.account, kind="restricted", permissions={"refunds": "write"}, actor="cli"
        )
        sk_id, rk_id = await key_id_of(h, h.key), new.key_id
        held = await ok(
            h,
            "POST",
            "/v1/payment_intents",
            json={
                "amount": 2000,
                "currency": "usd",
                "capture_method": "manual",
                "payment_method": "tok_visa",
                "confirm": True,
            },
        )
        r = await h.http.post(f"/v1/payment_intents/{held['id']}/capture", json={})
        assert r.status_code == 200, r.text
        capture_request = r.headers["request-id"]
        opened = await ok(h, "POST", "/v1/payment_intents", json={"amount": 700, "currency": "usd"})
        await ok(h, "POST", f"/v1/payment_intents/{opened['id']}/cancel", json={})
        refund = await ok(
            h, "POST", "/v1/refunds", new.key, json={"payment_intent": held["id"], "amount": 500}
        )
        cus = await ok(h, "POST", "/v1/customers", json={"email": "a@example.com"})
        await ok(h, "DELETE", f"/v1/customers/{cus['id']}")

        log = await entries(h)
        got = {(e["action"], e["object_id"], e["actor"]) for e in log}
        assert {
            ("payment_intent.create", held["id"], sk_id),
            ("payment_intent.capture", held["id"], sk_id),
            ("payment_intent.create", opened["id"], sk_id),
            ("payment_intent.cancel", opened["id"], sk_id),
            ("refund.create", refund["id"], rk_id),
            ("customer.create", cus["id"], sk_id),
            ("customer.delete", cus["id"], sk_id),
            ("key.create", rk_id, "cli"),
        } <= got
        [capture] = [e for e in log if e["action"] == "payment_intent.capture"]
        assert capture["request_id"] == capture_request
        assert capture["object_type"] == "payment_intent" and capture["livemode"] is False
        assert capture["details"]["amount_received"] == 2000
        assert capture["object"] == "audit_entry" and capture["id"].startswith("aud_")
        # Filters, and no entry for reads or refused requests.
        only = await entries(h, object_id=opened["id"])
        assert {e["action"] for e in only} == {"payment_intent.create", "payment_intent.cancel"}
        assert {e["object_id"] for e in await entries(h, action="refund.create")} == {refund["id"]}
        assert {e["actor"] for e in await entries(h, actor=rk_id)} == {rk_id}
        refused = await h.http.post(
            "/v1/refunds", json={"payment_intent": held["id"], "amount": 10**9}
        )
        assert refused.status_code == 400
        assert len(await entries(h)) == len(log)
        # A replayed Idempotency-Key did nothing new: no new entry either.
        for _ in range(2):
            r = await h.post("/v1/customers", {"email": "b@example.com"}, key="same-1")
            assert r.status_code == 200
        assert len(await entries(h, action="customer.create")) == 2

    run(db, tmp_path, test)


def test_key_changes_through_the_admin_api_are_audited_and_never_hold_the_key(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        made = await ok(
            h,
            "POST",
            "/v1/admin/keys",
            ADMIN,
            json={"account": h.account, "type": "publishable", "name": "checkout"},
        )
        rolled = await ok(
            h, "POST", f"/v1/admin/keys/{made['id']}/roll", ADMIN, json={"expires_in": 3600}
        )
        await ok(h, "POST", f"/v1/admin/keys/{rolled['id']}/revoke", ADMIN)
        log = await entries(h)
        got = {(e["action"], e["object_id"], e["actor"]) for e in log}
        assert {
            ("key.create", made["id"], "admin"),
            ("key.roll", made["id"], "admin"),
            ("key.revoke", rolled["id"], "admin"),
        } <= got
        [roll] = [e for e in log if e["action"] == "key.roll"]
        assert roll["details"]["rolled_to"] == rolled["id"]
        assert roll["details"]["expires_in"] == 3600
        dump = repr(await h.sql("select * from audit_log")) + repr(log)
        dump += repr(await h.sql("select * from api_keys"))
        for key in (made["secret"], rolled["secret"]):
            assert key not in dump
        listed = await ok(h, "GET", "/v1/admin/keys", ADMIN, params={"account": h.account})
        assert made["secret"] not in str(listed) and rolled["secret"] not in str(listed)

    run(db, tmp_path, test)


def test_one_account_never_sees_another_s_audit_entries(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        other, _ = await h.app.keys.create(None, actor="cli")
        mine = await ok(h, "POST", "/v1/customers", json={"email": "a@example.com"})
        theirs = await ok(h, "POST", "/v1/customers", other.key, json={"email": "b@x.com"})
        a_log, b_log = await entries(h), await entries(h, other.key)
        assert mine["id"] in {e["object_id"] for e in a_log}
        assert mine["id"] not in {e["object_id"] for e in b_log}
        assert theirs["id"] in {e["object_id"] for e in b_log}
        assert {e["id"] for e in a_log}.isdisjoint({e["id"] for e in b_log})
        assert await entries(h, other.key, object_id=mine["id"]) == []
        r = await h.http.get(
            "/v1/audit_log", headers=auth(other.key), params={"starting_after": a_log[0]["id"]}
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"

    run(db, tmp_path, test)


def test_the_audit_log_pages_like_every_list(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        for i in range(5):
            await ok(h, "POST", "/v1/customers", json={"email": f"{i}@example.com"})
            h.advance(1)
        first = await ok(h, "GET", "/v1/audit_log", params={"limit": 2})
        assert first["object"] == "list" and first["has_more"] is True
        second = await ok(
            h,
            "GET",
            "/v1/audit_log",
            params={"limit": 2, "starting_after": first["data"][-1]["id"]},
        )
        created = [e["created"] for e in first["data"] + second["data"]]
        assert created == sorted(created, reverse=True) and len(set(created)) == 4
        back = await ok(
            h, "GET", "/v1/audit_log", params={"limit": 2, "ending_before": second["data"][0]["id"]}
        )
        assert [e["id"] for e in back["data"]] == [e["id"] for e in first["data"]]

    run(db, tmp_path, test)


def test_the_audit_log_refuses_updates_and_deletes(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        await ok(h, "POST", "/v1/customers", json={"email": "a@example.com"})
        before = await h.sql("select id, action, actor from audit_log order by id")
        assert before
        for statement in ("update audit_log set actor = 'someone_else'", "delete from audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                async with h.app.ctx.db.write() as s:
                    await s.execute(text(statement))
        assert await h.sql("select id, action, actor from audit_log order by id") == before

    run(db, tmp_path, test)


def test_a_rolled_key_works_through_its_grace_period_on_the_app_s_clock(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        old_id = await key_id_of(h, h.key)
        new, view = await h.app.keys.roll(old_id, 3600, actor="cli")
        assert view["rolled_to"] is None and new.key.startswith("sk_test_")
        for key in (h.key, new.key):
            await ok(h, "GET", "/v1/customers", key)
        h.advance(3599)
        for key in (h.key, new.key):  # the old key is cached: its expiry is still checked
            await ok(h, "GET", "/v1/customers", key)
        h.advance(2)
        r = await h.http.get("/v1/customers")
        assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_expired"
        await ok(h, "GET", "/v1/customers", new.key)
        assert await h.app.keys.authenticate(h.key) is None
        h.advance(7 * 86400)
        await ok(h, "GET", "/v1/customers", new.key)  # the new key has no expiry

    run(db, tmp_path, test)


def test_a_live_key_acts_in_live_mode(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        live, view = await h.app.keys.create(h.account, livemode=True, actor="cli")
        assert live.key.startswith("sk_live_") and view["livemode"] is True
        principal = await h.app.keys.authenticate(live.key)
        assert principal is not None and principal.livemode is True
        cus = await ok(h, "POST", "/v1/customers", live.key, json={"email": "l@example.com"})
        test_cus = await ok(h, "POST", "/v1/customers", json={"email": "t@example.com"})
        [(entry_live,)] = await h.sql(
            "select livemode from audit_log where object_id = :o", o=cus["id"]
        )
        [(entry_test,)] = await h.sql(
            "select livemode from audit_log where object_id = :o", o=test_cus["id"]
        )
        assert (bool(entry_live), bool(entry_test)) == (True, False)
        # Each mode sees its own entries, as it sees its own objects.
        [entry] = await entries(h, live.key, object_id=cus["id"])
        assert entry["livemode"] is True and entry["actor"] == live.key_id
        assert await entries(h, object_id=cus["id"]) == []

    run(db, tmp_path, test)


# -- a payment's entries commit with its changes ----------------------------------------------


async def refuse(h: Harness, table: str, verb: str, when: str) -> None:
    """Make the database itself refuse an ``verb`` (INSERT or UPDATE) of ``table`` for rows
    matching ``when`` (a condition on NEW): a write that fails mid-transaction."""
    async with h.app.ctx.db.write() as s:
        if h.app.ctx.db.is_sqlite:
            await s.execute(
                text(
                    f"CREATE TRIGGER audit_fault BEFORE {verb} ON {table} WHEN {when} "
                    "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                )
            )
            return
        await s.execute(
            text(
                "CREATE FUNCTION audit_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {when} THEN RAISE EXCEPTION 'injected fault' USING ERRCODE = "
                "'check_violation'; END IF; RETURN NEW; END $$"
            )
        )
        await s.execute(
            text(
                f"CREATE TRIGGER audit_fault BEFORE {verb} ON {table} FOR EACH ROW "
                "EXECUTE FUNCTION audit_fault()"
            )
        )


async def heal(h: Harness, table: str) -> None:
    async with h.app.ctx.db.write() as s:
        if h.app.ctx.db.is_sqlite:
            await s.execute(text("DROP TRIGGER audit_fault"))
        else:
            await s.execute(text(f"DROP TRIGGER audit_fault ON {table}"))
            await s.execute(text("DROP FUNCTION audit_fault()"))


async def audited(h: Harness, object_id: str) -> list[tuple[str, str]]:
    """(action, the status the entry recorded) of an object's entries, sorted by action (the
    test's clock stands still, so their times are equal)."""
    rows = await h.sql("select action, details from audit_log where object_id = :o", o=object_id)
    return sorted(
        (action, json.loads(d)["status"] if isinstance(d, str) else d["status"])
        for action, d in rows
    )


def test_a_payment_s_entries_commit_with_its_changes_or_not_at_all(db: str, tmp_path: Path) -> None:
    """The create's entry is written in the create's transaction, the confirm's in the one
    that records the outcome: a create whose entry can't be written is not made, and a confirm
    whose outcome can't be recorded leaves no entry (the answer was never given)."""

    async def test(h: Harness) -> None:
        await refuse(h, "audit_log", "INSERT", "NEW.action = 'payment_intent.create'")
        r = await h.http.post("/v1/payment_intents", json={"amount": 1500, "currency": "usd"})
        assert r.status_code >= 500, r.text
        assert await h.intents() == []  # no intent without its entry
        assert await h.sql("select id from events") == []
        await heal(h, "audit_log")

        pi = await ok(h, "POST", "/v1/payment_intents", json={"amount": 1500, "currency": "usd"})
        assert await audited(h, pi["id"]) == [("payment_intent.create", "requires_payment_method")]

        # The outcome's transaction fails after the entry was added in it: neither stays.
        await refuse(h, "payment_intents", "UPDATE", "NEW.status = 'succeeded'")
        r = await h.http.post(
            f"/v1/payment_intents/{pi['id']}/confirm", json={"payment_method": "tok_visa"}
        )
        assert r.status_code >= 500, r.text
        [intent] = await h.intents()
        assert intent["status"] == "processing"  # the attempt was committed before the call
        assert await audited(h, pi["id"]) == [("payment_intent.create", "requires_payment_method")]
        await heal(h, "payment_intents")
        h.advance(61)
        await h.drain()  # recovery settles it; no request was answered, so no new entry
        [intent] = await h.intents()
        assert intent["status"] == "succeeded"
        assert await audited(h, pi["id"]) == [("payment_intent.create", "requires_payment_method")]

        # And a confirm that is answered has its entry, with the answer's facts.
        other = await ok(h, "POST", "/v1/payment_intents", json={"amount": 900, "currency": "usd"})
        done = await ok(
            h,
            "POST",
            f"/v1/payment_intents/{other['id']}/confirm",
            json={"payment_method": "tok_visa"},
        )
        assert done["status"] == "succeeded"
        assert await audited(h, other["id"]) == [
            ("payment_intent.confirm", "succeeded"),
            ("payment_intent.create", "requires_payment_method"),
        ]

    run(db, tmp_path, test)


# -- captures, cancels, refunds and connection changes: entries commit with their changes -----

ATOMIC_ACTIONS = (
    "payment_intent.capture",
    "payment_intent.cancel",
    "refund.create",
    "connection.create",
    "connection.update",
    "connection.delete",
)
# Takes only yen: the test's dollar payments keep going to the harness's scripted gateway.
STRIPE_CONNECTION = {
    "gateway": "stripe",
    "credentials": {"secret_key": "sk_test_" + "c" * 24},
    "currencies": ["jpy"],
}


def run_with_connections(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        keys = generate_key_entry("a")
        async with Harness.open(db, tmp, admin_key=ADMIN, encryption_keys=keys) as h:
            await test(h)

    asyncio.run(main())


async def intent(h: Harness, pi_id: str) -> dict[str, Any]:
    [found] = [i for i in await h.intents() if i["id"] == pi_id]
    return found


async def actions(h: Harness, object_id: str) -> list[str]:
    rows = await h.sql("select action from audit_log where object_id = :o", o=object_id)
    return sorted(r[0] for r in rows)


def test_captures_cancels_refunds_and_connection_changes_commit_with_their_entries(
    db: str, tmp_path: Path
) -> None:
    """Each entry is written in the transaction that records what the answer shows: when the
    entry can't be written, the change's record goes with it and the answer is a 5xx; and the
    entries never depend on the API layer's after-the-answer write (broken here)."""

    async def test(h: Harness) -> None:
        manual = {"amount": 2000, "currency": "usd", "capture_method": "manual"}
        paid_body = {"amount": 1200, "currency": "usd", "payment_method": "tok_visa"}

        async def held() -> dict[str, Any]:
            return await ok(
                h,
                "POST",
                "/v1/payment_intents",
                json={**manual, "payment_method": "tok_visa", "confirm": True},
            )

        async def paid() -> dict[str, Any]:
            return await ok(h, "POST", "/v1/payment_intents", json={**paid_body, "confirm": True})

        async def opened() -> dict[str, Any]:
            return await ok(
                h, "POST", "/v1/payment_intents", json={"amount": 700, "currency": "usd"}
            )

        # 1. The entry's INSERT fails: no change is recorded either.
        to_capture, to_void, to_drop, to_refund = (
            await held(),
            await held(),
            await opened(),
            await paid(),
        )
        conn = await ok(h, "POST", "/v1/connections", json=STRIPE_CONNECTION)
        listed = ", ".join(f"'{a}'" for a in ATOMIC_ACTIONS)
        before = await h.sql("select id from audit_log order by id")
        await refuse(h, "audit_log", "INSERT", f"NEW.action IN ({listed})")
        for method, path, body in (
            ("POST", f"/v1/payment_intents/{to_capture['id']}/capture", {}),
            ("POST", f"/v1/payment_intents/{to_void['id']}/cancel", {}),
            ("POST", f"/v1/payment_intents/{to_drop['id']}/cancel", {}),
            ("POST", "/v1/refunds", {"payment_intent": to_refund["id"], "amount": 300}),
            ("POST", "/v1/connections", {**STRIPE_CONNECTION, "name": "never"}),
            ("POST", f"/v1/connections/{conn['id']}", {"name": "renamed", "disabled": True}),
            ("DELETE", f"/v1/connections/{conn['id']}", None),
        ):
            r = await h.http.request(method, path, json=body)
            assert r.status_code >= 500, (path, r.status_code, r.text)
        assert (await intent(h, to_capture["id"]))["received"] == 0
        assert (await intent(h, to_void["id"]))["status"] != "canceled"
        assert (await intent(h, to_drop["id"]))["status"] == "requires_payment_method"
        assert (await intent(h, to_refund["id"]))["refunded"] == 0
        assert await h.sql("select name, disabled from connections") == [(None, False)]
        assert await h.sql("select id from audit_log order by id") == before
        await heal(h, "audit_log")

        # 2. With the after-the-answer write broken, every entry is still there, with its change.
        async def broken(values: dict[str, Any]) -> None:
            raise RuntimeError("the after-the-answer audit write is down")

        h.app.audit.write = broken  # type: ignore[method-assign]
        captured = await held()
        done = await ok(h, "POST", f"/v1/payment_intents/{captured['id']}/capture", json={})
        voided = await ok(h, "POST", f"/v1/payment_intents/{(await held())['id']}/cancel", json={})
        dropped = await ok(
            h, "POST", f"/v1/payment_intents/{(await opened())['id']}/cancel", json={}
        )
        refunded_pi = await paid()
        refund = await ok(
            h, "POST", "/v1/refunds", json={"payment_intent": refunded_pi["id"], "amount": 300}
        )
        made = await ok(h, "POST", "/v1/connections", json={**STRIPE_CONNECTION, "name": "b"})
        await ok(h, "POST", f"/v1/connections/{made['id']}", json={"disabled": True})
        await ok(h, "POST", f"/v1/connections/{conn['id']}", json={"name": "renamed"})
        await ok(h, "DELETE", f"/v1/connections/{conn['id']}")

        assert done["status"] == "succeeded" and (await intent(h, done["id"]))["received"] == 2000
        assert (await intent(h, voided["id"]))["status"] == "canceled"
        assert (await intent(h, dropped["id"]))["status"] == "canceled"
        assert (await intent(h, refunded_pi["id"]))["refunded"] == 300
        assert await h.sql("select id, name, disabled from connections") == [
            (made["id"], "b", True)
        ]

        log = await entries(h)  # through the API: the connection changes are listed too
        by = {(e["action"], e["object_id"]): e for e in log}
        assert by[("payment_intent.capture", done["id"])]["details"]["amount_received"] == 2000
        assert by[("payment_intent.cancel", voided["id"])]["details"]["status"] == "canceled"
        assert by[("payment_intent.cancel", dropped["id"])]["details"]["status"] == "canceled"
        assert by[("refund.create", refund["id"])]["details"]["status"] == refund["status"]
        assert by[("refund.create", refund["id"])]["details"]["amount"] == 300
        assert await actions(h, made["id"]) == ["connection.create", "connection.update"]
        assert by[("connection.update", made["id"])]["details"]["disabled"] is True
        assert await actions(h, conn["id"]) == [
            "connection.create",
            "connection.delete",
            "connection.update",
        ]
        sk_id = await key_id_of(h, h.key)
        assert {
            by[("connection.delete", conn["id"])]["actor"],
            by[("connection.create", made["id"])]["actor"],
        } == {sk_id}
        # No credential in an entry.
        assert "c" * 24 not in repr(await h.sql("select * from audit_log"))

    run_with_connections(db, tmp_path, test)
