"""`paymux keys create`: a key printed once, stored hashed, that authenticates at once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx

from conftest import RunningServer


def keys_create(server: RunningServer, *args: str) -> tuple[str, str]:
    env = dict(os.environ, PAYMUX_DATABASE_URL=server.settings.database_url,
               PAYMUX_SANDBOX_DB=server.settings.sandbox_db, COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "paymux.cli", "keys", "create", *args],
                          env=env, capture_output=True, text=True, timeout=60)
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
