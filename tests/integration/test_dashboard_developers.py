"""The dashboard's Developers pages and the inbound inbox, in process (services, the HTTP app
through ASGI, a clock the test moves) on SQLite and PostgreSQL: creating keys (shown once,
then masked; restricted keys with their grants; refused input answers 400 and makes no key),
the audit log page (its rows, filters and who may look), and the inbox paged by account in
SQL (an account whose events are older than every other account's still sees them)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from paymux.storage.models import WebhookInbox
from support.dashboard import csrf_of, harness_client, page
from support.dashboard import run_in_harness as run
from support.databases import migrated_database_fixture
from support.harness import START_US, Harness

db = migrated_database_fixture("dash_devs")
_NEW_KEY = re.compile(r'id="new-key"[^>]*value="([^"]+)"')
_OLDER = re.compile(r'href="(\?[^"]*)" rel="next"')


async def create_key(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    token = csrf_of(await page(client, "/dashboard/keys"))
    return await client.post("/dashboard/keys/new", data={"csrf_token": token, **fields})


def test_a_created_key_is_shown_once_then_masked_and_works(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        dev = await harness_client(h, "developer")
        r = await create_key(dev, type="secret", name="Shop backend")
        assert r.status_code == 200, r.text[:500]
        assert r.headers["cache-control"] == "no-store"
        found = _NEW_KEY.search(r.text)
        assert found
        secret = found.group(1)
        assert secret.startswith("sk_test_") and len(secret) == len("sk_test_") + 32
        keys = await page(dev, "/dashboard/keys")
        assert "Shop backend" in keys
        assert secret not in keys
        assert f"sk_test_...{secret[-4:]}" in keys
        api = await h.http.get("/v1/payment_intents", headers={"authorization": f"Bearer {secret}"})
        assert api.status_code == 200
        # A restricted key: its grants, as chosen.
        r = await create_key(dev, type="restricted", perm_refunds="read", perm_customers="write")
        assert r.status_code == 200, r.text[:500]
        restricted = _NEW_KEY.search(r.text)
        assert restricted and restricted.group(1).startswith("rk_test_")
        views = {k["type"]: k for k in await h.app.keys.list(h.account)}
        assert views["restricted"]["permissions"] == {"refunds": "read", "customers": "write"}
        await dev.aclose()

    run(db, tmp_path, test)


def test_refused_key_input_makes_no_key_and_only_developers_may_create(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        before = len(await h.app.keys.list(h.account))
        dev = await harness_client(h, "developer")
        for fields, param in (
            ({"type": "restricted"}, "permissions"),  # a restricted key with no grant
            ({"type": "restricted", "perm_refunds": "admin"}, "permissions[refunds]"),
            ({"type": "root"}, "type"),
            ({"type": "secret", "perm_refunds": "read"}, "permissions"),
        ):
            r = await create_key(dev, **fields)
            assert r.status_code == 400, (fields, r.status_code)
            assert f"(field: {param})" in r.text, fields
        support = await harness_client(h, "support")
        r = await support.post("/dashboard/keys/new", data={"type": "secret"})
        assert r.status_code == 403
        r = await dev.post("/dashboard/keys/new", data={"type": "secret"})  # no CSRF token
        assert r.status_code == 403
        assert len(await h.app.keys.list(h.account)) == before
        await dev.aclose()
        await support.aclose()

    run(db, tmp_path, test)


def test_the_audit_page_lists_filters_and_is_for_developers(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        admin = await harness_client(h, "admin", email="ada@example.com")
        r = await create_key(admin, type="publishable", name="Web")
        assert r.status_code == 200
        key_id = next(k["id"] for k in await h.app.keys.list(h.account) if k["name"] == "Web")
        shown = await page(admin, "/dashboard/audit")
        assert "key.create" in shown and key_id in shown and "ada@example.com" in shown
        only = await page(admin, "/dashboard/audit?action=key.create")
        assert key_id in only
        none = await page(admin, "/dashboard/audit?action=key.revoke")
        assert key_id not in none and "No entries." in none
        bad = await page(admin, "/dashboard/audit?actor=%3Cscript%3E")
        assert 'id="filter-errors"' in bad and "<script>" not in bad
        support = await harness_client(h, "support")  # the same role set as the keys page's
        assert (await support.get("/dashboard/audit")).status_code == 403
        await support.aclose()
        await admin.aclose()

    run(db, tmp_path, test)


def _inbox(i: int, account: str | None, received_us: int, status: str) -> WebhookInbox:
    return WebhookInbox(
        id=f"whin_{account or 'deploy'}_{i:04d}",
        gateway="stripe",
        account_id=account,
        connection_id=None,
        event_id=f"evt_{account}_{i}",
        type="payment_intent.succeeded",
        payload="{}",
        status=status,
        error=None,
        received_us=received_us,
        applied_us=None,
    )


def test_the_inbox_shows_an_accounts_old_events_past_other_accounts_newer_ones(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        # 105 of ours, a day old (one dead), then 600 of another account's, newer.
        ours = [
            _inbox(i, h.account, START_US - 86_400_000_000 + i, "dead" if i == 7 else "applied")
            for i in range(105)
        ]
        theirs = [_inbox(i, "acct_other", START_US + i, "dead") for i in range(600)]
        async with h.app.ctx.db.write() as s:
            s.add_all([*ours, *theirs])
        dev = await harness_client(h, "developer")
        first = await page(dev, "/dashboard/webhooks")
        assert "acct_other" not in first
        shown = set(re.findall(r'id="inbox-(whin_\w+)"', first))
        assert shown == {f"whin_{h.account}_{i:04d}" for i in range(5, 105)}  # newest 100
        older = _OLDER.search(first)
        assert older
        rest = await page(dev, "/dashboard/webhooks" + older.group(1).replace("&amp;", "&"))
        assert set(re.findall(r'id="inbox-(whin_\w+)"', rest)) == {
            f"whin_{h.account}_{i:04d}" for i in range(5)
        }
        dead = await page(dev, "/dashboard/webhooks?status=dead")
        assert set(re.findall(r'id="inbox-(whin_\w+)"', dead)) == {f"whin_{h.account}_0007"}
        # Another account's dead event is not ours to replay.
        r = await dev.post(
            "/dashboard/webhooks/inbound/replay",
            data={"csrf_token": csrf_of(dead), "inbox_id": "whin_acct_other_0001"},
        )
        assert r.status_code == 400
        await dev.aclose()

    run(db, tmp_path, test)


def test_connections_are_added_replaced_and_disabled_with_credentials_never_shown(
    db: str, tmp_path: Path
) -> None:
    secret = "sk_test_" + "Q7" * 16  # ends in Q7Q7
    hook = "whsec_" + "w3" * 12

    async def test(h: Harness) -> None:
        dev = await harness_client(h, "developer")
        token = csrf_of(await page(dev, "/dashboard/connections"))
        form = {"csrf_token": token, "gateway": "stripe", "name": "EU Stripe"}
        r = await dev.post("/dashboard/connections/new", data=form)  # no secret key
        assert r.status_code == 400 and "(field: credentials[secret_key])" in r.text
        assert [c for c in await h.app.connections.all(h.account) if c["source"] == "api"] == []
        form |= {"cred_secret_key": secret, "cred_webhook_secrets": hook}
        assert (await dev.post("/dashboard/connections/new", data=form)).status_code == 303
        [made] = [c for c in await h.app.connections.all(h.account) if c["source"] == "api"]
        shown = await page(dev, "/dashboard/connections")
        assert "EU Stripe" in shown and made["id"] in shown and "••••Q7Q7" in shown
        assert secret not in shown and hook not in shown
        path = f"/dashboard/connections/{made['id']}"
        new_secret = "sk_test_" + "Z9" * 16
        r = await dev.post(
            f"{path}/credentials", data={"csrf_token": token, "cred_secret_key": new_secret}
        )
        assert r.status_code == 303
        shown = await page(dev, "/dashboard/connections")
        assert "••••Z9Z9" in shown and new_secret not in shown
        assert (await dev.post(f"{path}/disable", data={"csrf_token": token})).status_code == 303
        assert (await h.app.connections.retrieve(h.account, made["id"]))["disabled"] is True
        assert (await dev.post(f"{path}/enable", data={})).status_code == 403  # no CSRF token
        support = await harness_client(h, "support")
        assert (await support.get("/dashboard/connections")).status_code == 403
        r = await support.post(f"{path}/enable", data={"csrf_token": token})
        assert r.status_code == 403
        assert (await h.app.connections.retrieve(h.account, made["id"]))["disabled"] is True
        audit = await page(dev, "/dashboard/audit?object_id=" + made["id"])
        assert "connection.create" in audit and "connection.disable" in audit
        assert secret not in audit and new_secret not in audit
        await dev.aclose()
        await support.aclose()

    run(db, tmp_path, test)
