"""API keys a merchant manages, against a running server on SQLite and PostgreSQL: what a
publishable key and a restricted key may do, revoking and rolling through the admin API and
the CLI, and that a key is shown once and never again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningServer, free_port, make_settings, migrated_database_url
from support.cli import paymux_cli
from support.pgcluster import PgCluster

ADMIN = "adm_" + "k" * 24


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def keys_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"keys-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"keys_{request.param}")
    running = RunningServer(make_settings(url, tmp, free_port(), admin_key=ADMIN)).start()
    try:
        yield running
    finally:
        running.stop()


def admin(server: RunningServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}/v1/admin/keys{path}",
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=30,
        **kw,
    )


def new_key(server: RunningServer, **body: Any) -> dict[str, Any]:
    r = admin(server, "POST", "", json=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def call(server: RunningServer, key: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", headers={"authorization": f"Bearer {key}"}, timeout=30, **kw
    )


def code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, str(r.json()["error"]["code"])


@pytest.fixture
def account(keys_server: RunningServer) -> dict[str, Any]:
    """A new account with a test secret key."""
    return new_key(keys_server, type="secret", name="server")


# -- creating keys ----------------------------------------------------------------------------
def test_each_type_and_mode_gets_its_prefix_and_the_key_is_shown_only_once(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    acct = account["account"]
    made = {
        ("secret", False): account,
        ("secret", True): new_key(keys_server, account=acct, type="secret", livemode=True),
        ("publishable", False): new_key(keys_server, account=acct, type="publishable"),
        ("publishable", True): new_key(
            keys_server, account=acct, type="publishable", livemode=True
        ),
        ("restricted", False): new_key(
            keys_server, account=acct, type="restricted", permissions={"refunds": "read"}
        ),
        ("restricted", True): new_key(
            keys_server,
            account=acct,
            type="restricted",
            livemode=True,
            permissions={"refunds": "read"},
        ),
    }
    prefixes = {"secret": "sk", "publishable": "pk", "restricted": "rk"}
    for (kind, live), view in made.items():
        secret = view["secret"]
        prefix = f"{prefixes[kind]}_{'live' if live else 'test'}_"
        assert secret.startswith(prefix) and len(secret) == len(prefix) + 32
        assert (view["type"], view["livemode"], view["account"]) == (kind, live, acct)
        assert view["redacted"] == f"{prefix}...{secret[-4:]}"
    listed = admin(keys_server, "GET", "", params={"account": acct})
    assert listed.status_code == 200
    assert {k["id"] for k in listed.json()["data"]} == {v["id"] for v in made.values()}
    one = admin(keys_server, "GET", f"/{account['id']}").json()
    for view in made.values():
        assert view["secret"] not in listed.text and view["secret"] not in str(one)
        assert "secret" not in one
    stored = keys_server.sql("select * from api_keys where account_id = :a", a=acct)
    audit = keys_server.sql("select * from audit_log where account_id = :a", a=acct)
    for view in made.values():
        assert view["secret"] not in repr(stored) and view["secret"] not in repr(audit)


@pytest.mark.parametrize(
    ("permissions", "param"),
    [
        ({"payouts": "read"}, "permissions[payouts]"),
        ({"refunds": "admin"}, "permissions[refunds]"),
        ({}, "permissions"),
    ],
)
def test_a_restricted_key_with_bad_permissions_is_refused_naming_the_param(
    keys_server: RunningServer,
    account: dict[str, Any],
    permissions: dict[str, str],
    param: str,
) -> None:
    r = admin(
        keys_server,
        "POST",
        "",
        json={"account": account["account"], "type": "restricted", "permissions": permissions},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_the_admin_key_api_needs_the_admin_key(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    r = call(keys_server, account["secret"], "GET", "/v1/admin/keys")
    assert code(r) == (401, "api_key_invalid")
    r = call(keys_server, account["secret"], "POST", f"/v1/admin/keys/{account['id']}/revoke")
    assert code(r) == (401, "api_key_invalid")
    assert call(keys_server, account["secret"], "GET", "/v1/customers").status_code == 200


# -- publishable keys -------------------------------------------------------------------------
def test_a_publishable_key_retrieves_and_confirms_only_with_the_client_secret(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    sk = account["secret"]
    pk = new_key(keys_server, account=account["account"], type="publishable")["secret"]
    pi = call(
        keys_server,
        sk,
        "POST",
        "/v1/payment_intents",
        json={"amount": 1200, "currency": "usd", "metadata": {"order": "o-1"}},
    ).json()
    secret = pi["client_secret"]
    assert secret.startswith(f"{pi['id']}_secret_") and len(secret) == len(pi["id"]) + 8 + 24
    path = f"/v1/payment_intents/{pi['id']}"

    seen = call(keys_server, pk, "GET", path, params={"client_secret": secret})
    assert seen.status_code == 200, seen.text
    assert (seen.json()["id"], seen.json()["amount"], seen.json()["status"]) == (
        pi["id"],
        1200,
        "requires_payment_method",
    )
    assert "metadata" not in seen.json() and "customer" not in seen.json()

    assert code(call(keys_server, pk, "GET", path)) == (400, "parameter_missing")
    # One character changed (never to itself: a secret ending in "x" made this the real one).
    wrong_secret = secret[:-1] + ("y" if secret.endswith("x") else "x")
    wrong = call(keys_server, pk, "GET", path, params={"client_secret": wrong_secret})
    assert code(wrong) == (400, "payment_intent_invalid_parameter")
    assert wrong.json()["error"]["param"] == "client_secret"

    refused = [
        call(keys_server, pk, "GET", "/v1/payment_intents", params={"client_secret": secret}),
        call(
            keys_server, pk, "POST", "/v1/payment_intents", json={"amount": 100, "currency": "usd"}
        ),
        call(keys_server, pk, "POST", path, json={"metadata": {"x": "1"}}),
        call(keys_server, pk, "POST", f"{path}/cancel", json={}),
        call(keys_server, pk, "POST", f"{path}/capture", json={}),
        call(keys_server, pk, "GET", "/v1/refunds"),
        call(keys_server, pk, "POST", "/v1/refunds", json={"payment_intent": pi["id"]}),
        call(keys_server, pk, "GET", "/v1/customers"),
        call(keys_server, pk, "POST", "/v1/customers", json={"email": "x@example.com"}),
        call(keys_server, pk, "GET", "/v1/events"),
        call(keys_server, pk, "GET", "/v1/audit_log"),
    ]
    for r in refused:
        assert code(r) == (401, "publishable_key_not_allowed"), (r.request.url, r.text)

    confirm = f"{path}/confirm"
    r = call(
        keys_server,
        pk,
        "POST",
        confirm,
        json={"payment_method": "pm_card_visa", "client_secret": "pi_x_secret_y"},
    )
    assert code(r) == (400, "payment_intent_invalid_parameter")
    r = call(keys_server, pk, "POST", confirm, json={"payment_method": "pm_card_visa"})
    assert code(r) == (400, "parameter_missing")
    r = call(
        keys_server,
        pk,
        "POST",
        confirm,
        json={"payment_method": "pm_card_visa", "client_secret": secret, "amount": 1},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount"
    r = call(
        keys_server,
        pk,
        "POST",
        confirm,
        json={"payment_method": "pm_card_visa", "client_secret": secret, "off_session": True},
    )
    assert code(r) == (400, "parameter_not_allowed")
    assert r.json()["error"]["param"] == "off_session"
    unchanged = call(keys_server, sk, "GET", path).json()
    assert (unchanged["status"], unchanged["amount"]) == ("requires_payment_method", 1200)

    done = call(
        keys_server,
        pk,
        "POST",
        confirm,
        json={
            "payment_method": "pm_card_visa",
            "client_secret": secret,
            "return_url": "https://shop.example/done",
        },
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded" and "metadata" not in done.json()
    paid = call(keys_server, sk, "GET", path).json()
    assert (paid["status"], paid["amount_received"], paid["metadata"]) == (
        "succeeded",
        1200,
        {"order": "o-1"},
    )


def test_a_publishable_key_cannot_reach_another_account_s_intent_even_with_its_secret(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    other = new_key(keys_server, type="secret")
    theirs = call(
        keys_server,
        other["secret"],
        "POST",
        "/v1/payment_intents",
        json={"amount": 500, "currency": "usd"},
    ).json()
    pk = new_key(keys_server, account=account["account"], type="publishable")["secret"]
    r = call(
        keys_server,
        pk,
        "GET",
        f"/v1/payment_intents/{theirs['id']}",
        params={"client_secret": theirs["client_secret"]},
    )
    assert code(r) == (400, "payment_intent_invalid_parameter")
    r = call(
        keys_server,
        pk,
        "POST",
        f"/v1/payment_intents/{theirs['id']}/confirm",
        json={"payment_method": "pm_card_visa", "client_secret": theirs["client_secret"]},
    )
    assert code(r) == (400, "payment_intent_invalid_parameter")
    still = call(keys_server, other["secret"], "GET", f"/v1/payment_intents/{theirs['id']}")
    assert still.json()["status"] == "requires_payment_method"


# -- restricted keys --------------------------------------------------------------------------
def test_a_restricted_key_reads_and_writes_only_what_it_was_granted(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    acct, sk = account["account"], account["secret"]
    rk = new_key(
        keys_server,
        account=acct,
        type="restricted",
        permissions={"payment_intents": "write", "refunds": "read"},
    )["secret"]
    pi = call(
        keys_server,
        rk,
        "POST",
        "/v1/payment_intents",
        json={"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True},
    )
    assert pi.status_code == 200 and pi.json()["status"] == "succeeded"
    assert call(keys_server, rk, "GET", "/v1/payment_intents").status_code == 200  # write => read
    refund = call(
        keys_server,
        sk,
        "POST",
        "/v1/refunds",
        json={"payment_intent": pi.json()["id"], "amount": 300},
    ).json()
    assert call(keys_server, rk, "GET", "/v1/refunds").status_code == 200
    assert call(keys_server, rk, "GET", f"/v1/refunds/{refund['id']}").status_code == 200
    denied = call(
        keys_server,
        rk,
        "POST",
        "/v1/refunds",
        json={"payment_intent": pi.json()["id"], "amount": 100},
    )
    assert code(denied) == (403, "api_key_permission_denied")
    assert "refunds: write" in denied.json()["error"]["message"]
    assert rk not in denied.text
    for method, path in [
        ("GET", "/v1/customers"),
        ("POST", "/v1/customers"),
        ("GET", "/v1/events"),
        ("GET", "/v1/audit_log"),
    ]:
        r = call(keys_server, rk, method, path, json={} if method == "POST" else None)
        assert code(r) == (403, "api_key_permission_denied"), (method, path)

    reader = new_key(
        keys_server,
        account=acct,
        type="restricted",
        permissions={"customers": "read", "audit_log": "read"},
    )["secret"]
    assert call(keys_server, reader, "GET", "/v1/customers").status_code == 200
    r = call(keys_server, reader, "POST", "/v1/customers", json={"email": "r@example.com"})
    assert code(r) == (403, "api_key_permission_denied")
    assert code(call(keys_server, reader, "GET", "/v1/payment_intents")) == (
        403,
        "api_key_permission_denied",
    )
    log = call(keys_server, reader, "GET", "/v1/audit_log")
    assert log.status_code == 200
    assert "refund.create" in {e["action"] for e in log.json()["data"]}
    assert call(keys_server, sk, "GET", "/v1/refunds").json()["data"][0]["amount"] == 300


# -- revoke and roll --------------------------------------------------------------------------
def test_a_key_revoked_through_the_admin_api_is_refused_at_once(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    sk = account["secret"]
    assert call(keys_server, sk, "GET", "/v1/customers").status_code == 200
    r = admin(keys_server, "POST", f"/{account['id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked"] is True and "secret" not in r.json()
    assert code(call(keys_server, sk, "GET", "/v1/customers")) == (401, "api_key_invalid")
    assert code(admin(keys_server, "POST", "/key_nosuchkey/revoke")) == (404, "resource_missing")
    again = admin(keys_server, "POST", f"/{account['id']}/roll", json={"expires_in": 60})
    assert code(again) == (400, "api_key_unexpected_state")


def test_rolling_with_no_grace_period_refuses_the_old_key_at_once(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    old = account["secret"]
    assert call(keys_server, old, "GET", "/v1/customers").status_code == 200  # cached now
    rolled = admin(keys_server, "POST", f"/{account['id']}/roll", json={"expires_in": 0})
    assert rolled.status_code == 200, rolled.text
    new = rolled.json()
    assert new["secret"] != old and new["secret"].startswith("sk_test_")
    assert (new["type"], new["name"], new["account"]) == ("secret", "server", account["account"])
    assert code(call(keys_server, old, "GET", "/v1/customers")) == (401, "api_key_expired")
    assert call(keys_server, new["secret"], "GET", "/v1/customers").status_code == 200
    view = admin(keys_server, "GET", f"/{account['id']}").json()
    assert view["rolled_to"] == new["id"] and view["expires_at"] is not None
    too_long = admin(keys_server, "POST", f"/{new['id']}/roll", json={"expires_in": 8 * 86400})
    assert code(too_long) == (400, "parameter_invalid")
    assert too_long.json()["error"]["param"] == "expires_in"


def test_a_rolled_restricted_key_keeps_its_permissions(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    rk = new_key(
        keys_server,
        account=account["account"],
        type="restricted",
        name="reports",
        livemode=False,
        permissions={"customers": "read"},
    )
    new = admin(keys_server, "POST", f"/{rk['id']}/roll", json={"expires_in": 3600}).json()
    assert new["secret"].startswith("rk_test_") and new["name"] == "reports"
    assert new["permissions"] == {"customers": "read"}
    for key in (rk["secret"], new["secret"]):  # both work in the grace period
        assert call(keys_server, key, "GET", "/v1/customers").status_code == 200
        assert code(call(keys_server, key, "POST", "/v1/customers", json={})) == (
            403,
            "api_key_permission_denied",
        )


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``paymux keys ...`` run in this process (support/cli.py): what the commands do is the
    claim here; the process's own start-up is tested where a test starts it."""
    return paymux_cli(
        "keys",
        *args,
        env={
            "PAYMUX_DATABASE_URL": server.settings.database_url,
            "PAYMUX_SANDBOX_DB": server.settings.sandbox_db,
            "COLUMNS": "250",
        },
    )


def test_the_cli_creates_typed_keys_and_rolls_them(
    keys_server: RunningServer, account: dict[str, Any]
) -> None:
    acct = account["account"]
    made = cli(
        keys_server,
        "create",
        "--account",
        acct,
        "--type",
        "restricted",
        "--name",
        "ci",
        "--permission",
        "customers=write",
        "--permission",
        "refunds=read",
    )
    assert made.returncode == 0, made.stderr
    rk = made.stdout.strip().splitlines()[-1]
    assert rk.startswith("rk_test_")
    assert call(keys_server, rk, "POST", "/v1/customers", json={}).status_code == 200
    assert code(call(keys_server, rk, "GET", "/v1/payment_intents"))[0] == 403
    live = cli(keys_server, "create", "--account", acct, "--live")
    assert live.returncode == 0 and live.stdout.strip().splitlines()[-1].startswith("sk_live_")
    bad = cli(
        keys_server,
        "create",
        "--account",
        acct,
        "--type",
        "restricted",
        "--permission",
        "payouts=write",
    )
    assert bad.returncode != 0 and "permissions[payouts]" in bad.stderr

    [(rk_id,)] = keys_server.sql(
        "select id from api_keys where account_id = :a and name = 'ci'", a=acct
    )
    rolled = cli(keys_server, "roll", rk_id, "--expires-in", "0")
    assert rolled.returncode == 0, rolled.stderr
    new = rolled.stdout.strip().splitlines()[-1]
    assert new.startswith("rk_test_") and new != rk
    # The CLI is not the server: the server may trust the old key it checked a moment ago
    # for PAYMUX_KEY_CACHE_SECONDS, then refuses it (the documented bound, docs/security.md).
    deadline = time.monotonic() + keys_server.settings.key_cache_seconds + 5
    while (old := call(keys_server, rk, "GET", "/v1/customers")).status_code == 200:
        assert time.monotonic() < deadline, "the rolled key still works past the cache time"
        time.sleep(0.1)
    assert code(old) == (401, "api_key_expired")
    assert call(keys_server, new, "POST", "/v1/customers", json={}).status_code == 200
    listed = cli(keys_server, "list", "--account", acct)
    assert listed.returncode == 0 and rk not in listed.stdout and new not in listed.stdout
    assert f"rk_test_...{new[-4:]}" in listed.stdout
    actions = keys_server.sql(
        "select action, actor from audit_log where account_id = :a and object_id = :k",
        a=acct,
        k=rk_id,
    )
    assert sorted(actions) == [("key.create", "cli"), ("key.roll", "cli")]
    for stored in (
        keys_server.sql("select * from audit_log where account_id = :a", a=acct),
        keys_server.sql("select * from api_keys where account_id = :a", a=acct),
    ):
        assert rk not in repr(stored) and new not in repr(stored)
