"""``paymux connections update`` and ``enable`` (issue 8: connections are created, listed,
updated, disabled and deleted from the CLI too; test_connection_encryption.py covers create,
list, disable, rewrap and delete). SQLite and PostgreSQL.

An update replaces only the credential fields it names, the new secret is sealed (never in
the output or the database in clear) and is what the connection's gateway then uses; other
settings change as asked; enable undoes disable; each change is audited with actor ``cli``.

The commands run in this process (support/cli.py): what they do is the claim, not the
interpreter's start-up (tested where a test starts the process).
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import BACKENDS, migrated_database_url
from paymux.config import Settings
from paymux.gateways.stripe import StripeGateway
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from support.cli import paymux_cli
from support.pgcluster import PgCluster

KEYS = generate_key_entry("cli1")
ACCOUNT = "acct_conn_cli_update"
FIRST = "sk_test_FIRST" + "a" * 20 + "F1r5"
SECOND = "sk_test_SECOND" + "b" * 20 + "S3cd"
HOOK = "whsec_cli_update_hook_7788"


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(
        request.param, tmp_path, pg_cluster, f"conncli_{request.param}_{uuid.uuid4().hex[:10]}")


def app_run(url: str, tmp: Path, work: Any) -> Any:
    async def go() -> Any:
        app = Paymux(Settings(database_url=url, sandbox_db=str(tmp / "s.db"), run_worker=False,
                              log_json=False, encryption_keys=KEYS))
        try:
            await app.accounts.ensure_account(ACCOUNT, name=ACCOUNT)
            return await work(app)
        finally:
            await app.close()

    return asyncio.run(go())


def cli(url: str, tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return paymux_cli("connections", *args, "--account", ACCOUNT, env={
        "PAYMUX_DATABASE_URL": url, "PAYMUX_SANDBOX_DB": str(tmp / "s.db"),
        "PAYMUX_ENCRYPTION_KEYS": KEYS, **env})


def test_the_cli_updates_and_enables_a_connection(url: str, tmp_path: Path) -> None:
    app_run(url, tmp_path, lambda app: asyncio.sleep(0))  # the account exists
    made = cli(url, tmp_path, "create", "--gateway", "stripe",
               "--credential", "secret_key=env:FIRST_KEY",
               "--credential", "webhook_secrets=env:HOOK", "--currency", "eur",
               FIRST_KEY=FIRST, HOOK=HOOK)
    assert made.returncode == 0, made.stderr
    conn_id = made.stdout.split()[0]

    updated = cli(url, tmp_path, "update", conn_id, "--credential", "secret_key=env:NEW_KEY",
                  "--currency", "usd", "--currency", "gbp", "--priority", "3", "--name", "main",
                  NEW_KEY=SECOND)
    assert updated.returncode == 0, updated.stderr
    assert SECOND not in updated.stdout + updated.stderr
    assert "secret_key: ••••S3cd" in updated.stdout
    assert "webhook_secrets: ••••7788" in updated.stdout  # not named: kept

    async def state(app: Paymux) -> tuple[Any, ...]:
        view = await app.connections.retrieve(ACCOUNT, conn_id)
        gateway = await app.connections.gateway(None, account_id=ACCOUNT, connection_id=conn_id)
        assert isinstance(gateway, StripeGateway)
        async with app.ctx.db.read() as s:
            sealed = (await s.execute(text("select credentials from connections where id = :i"),
                                      {"i": conn_id})).scalar_one()
            audit = [str(r[0]) for r in (await s.execute(text(
                "select action from audit_log where object_id = :i and actor = 'cli' "
                "order by created_us, id"), {"i": conn_id})).all()]
        # The key the gateway's Stripe client sends (stripe-python keeps it on its requestor).
        key = gateway._client._requestor.api_key
        return (view["currencies"], view["priority"], view["name"], view["disabled"],
                key, gateway.webhook_secrets, str(sealed), audit)

    currencies, priority, name, disabled, key, hooks, sealed, _ = app_run(
        url, tmp_path, state)
    assert (sorted(currencies), priority, name, disabled) == (["GBP", "USD"], 3, "main", False)
    assert (key, hooks) == (SECOND, [HOOK])  # the gateway now uses the new key, same hook
    assert SECOND not in sealed and FIRST not in sealed and HOOK not in sealed

    assert cli(url, tmp_path, "disable", conn_id).returncode == 0
    assert app_run(url, tmp_path, state)[3] is True
    enabled = cli(url, tmp_path, "enable", conn_id)
    assert enabled.returncode == 0 and f"enabled {conn_id}" in enabled.stdout
    after = app_run(url, tmp_path, state)
    assert after[3] is False
    assert sorted(after[-1]) == sorted([
        "connection.create", "connection.update", "connection.disable", "connection.enable"])

    missing = cli(url, tmp_path, "update", "conn_nosuch", "--name", "x")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
