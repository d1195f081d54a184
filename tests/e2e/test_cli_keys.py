"""`paymux keys create`: a key printed once, stored hashed, that authenticates at once.

The commands run in this process (support/cli.py: their options, output, exit status and
rows are the claim, not the interpreter's start-up), except the revocation, which a running
server must notice from another process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import httpx

from conftest import RunningServer
from support.cli import paymux_cli


def _env(server: RunningServer) -> dict[str, str | None]:
    return {"PAYMUX_DATABASE_URL": server.settings.database_url,
            "PAYMUX_SANDBOX_DB": server.settings.sandbox_db}


def keys_create(server: RunningServer, *args: str) -> tuple[str, str]:
    done = paymux_cli("keys", "create", *args, env=_env(server))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    return lines[0].split()[-1], lines[-1]


def test_a_created_key_authenticates_and_is_stored_only_as_a_hash(server: RunningServer) -> None:
    account, key = keys_create(server, "--new-account")
    assert account.startswith("acct_") and key.startswith("sk_test_") and len(key) > 30
    r = httpx.get(f"{server.url}/v1/payment_intents",
                  headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["data"] == []
    stored = server.sql("select key_hash, last4 from api_keys where account_id = :a", a=account)
    assert stored == [(hashlib.sha256(key.encode()).hexdigest(), key[-4:])]
    dump = server.sql("select * from api_keys")
    assert key not in repr(dump)


def test_keys_of_two_accounts_see_only_their_own_objects(server: RunningServer) -> None:
    _, first = keys_create(server, "--new-account")
    _, second = keys_create(server, "--new-account")
    made = httpx.post(f"{server.url}/v1/payment_intents", json={"amount": 900, "currency": "usd"},
                      headers={"authorization": f"Bearer {first}"}).json()
    r = httpx.get(f"{server.url}/v1/payment_intents/{made['id']}",
                  headers={"authorization": f"Bearer {second}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"


def keys_cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return paymux_cli("keys", *args, env=_env(server))


def keys_process(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``paymux keys ...`` as a process of its own (the interpreter, the entry point)."""
    env = dict(os.environ, PAYMUX_DATABASE_URL=server.settings.database_url,
               PAYMUX_SANDBOX_DB=server.settings.sandbox_db, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "paymux.cli", "keys", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_revoked_key_is_refused_by_a_running_server_within_seconds(
    server: RunningServer,
) -> None:
    """The server caches a key's check for PAYMUX_KEY_CACHE_SECONDS (2 s): a key revoked by
    the CLI, in another process, is refused there within that time, with no restart."""
    account, key = keys_create(server, "--new-account")
    auth = {"authorization": f"Bearer {key}"}
    assert httpx.get(f"{server.url}/v1/payment_intents", headers=auth).status_code == 200
    listed = keys_cli(server, "list", "--account", account)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and key[-4:] in listed.stdout
    [(key_id, last_used)] = server.sql(
        "select id, last_used_us from api_keys where account_id = :a", a=account)
    assert key_id in listed.stdout and last_used is not None  # noted on first use
    done = keys_process(server, "revoke", key_id)  # another process, as an operator's shell
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + server.settings.key_cache_seconds + 5
    while True:
        r = httpx.get(f"{server.url}/v1/payment_intents", headers=auth)
        if r.status_code == 401:
            break
        assert r.status_code == 200
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.1)
    assert r.json()["error"]["code"] == "api_key_invalid"
    assert "yes" in keys_cli(server, "list", "--account", account).stdout
    unknown = keys_cli(server, "revoke", "key_doesnotexist")
    assert unknown.returncode == 1 and "no API key" in unknown.stdout


def test_an_unknown_account_is_refused_unless_new_account_is_asked_for(
    server: RunningServer,
) -> None:
    typo = f"acct_typo{time.time_ns()}"
    refused = keys_cli(server, "create", "--account", typo)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"no account {typo}" in refused.stderr and "--new-account" in refused.stderr
    assert "sk_test_" not in refused.stdout
    assert server.sql("select count(*) from accounts where id = :a", a=typo) == [(0,)]

    account, key = keys_create(server, "--account", typo, "--new-account")
    assert account == typo and key.startswith("sk_test_")
    assert server.sql("select count(*) from accounts where id = :a", a=typo) == [(1,)]
    # Now it exists: a second key for it needs no flag, and --new-account is refused.
    again, second = keys_create(server, "--account", typo)
    assert again == typo and second != key
    twice = keys_cli(server, "create", "--account", typo, "--new-account")
    assert twice.returncode == 2 and "exists already" in twice.stderr
    # --new-account alone still makes a fresh account.
    fresh, _ = keys_create(server, "--new-account")
    assert fresh.startswith("acct_") and fresh != typo
