"""``paymux connections create/update --failover/--no-failover`` (issue 8, failover): the CLI
sets the connection's ``failover`` as the API does (off by default), on SQLite and
PostgreSQL. The commands run in this process (support/cli.py): what they do is the claim,
not the interpreter's start-up (tested where a test starts the process)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from conftest import BACKENDS, migrated_database_url
from paymux.config import Settings
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from support.cli import paymux_cli
from support.pgcluster import PgCluster

KEYS = generate_key_entry("clifo")
ACCOUNT = "acct_conn_cli_failover"
SECRET = "sk_test_FAILOVER" + "c" * 20 + "F0v3"


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(
        request.param, tmp_path, pg_cluster, f"conncli_fo_{request.param}_{uuid.uuid4().hex[:8]}")


def settings(url: str, tmp: Path) -> Settings:
    return Settings(database_url=url, sandbox_db=str(tmp / "s.db"), run_worker=False,
                    log_json=False, encryption_keys=KEYS)


def failover_of(url: str, tmp: Path) -> dict[str, bool]:
    """Each of the account's stored connections: its ``failover``, as the API shows it."""
    async def go() -> dict[str, bool]:
        app = Paymux(settings(url, tmp))
        try:
            rows = await app.connections.all(ACCOUNT)
            return {r["id"]: r["failover"] for r in rows if r["source"] != "environment"}
        finally:
            await app.close()

    return asyncio.run(go())


def cli(url: str, tmp: Path, *args: str) -> str:
    done = paymux_cli("connections", *args, "--account", ACCOUNT, env={
        "PAYMUX_DATABASE_URL": url, "PAYMUX_SANDBOX_DB": str(tmp / "s.db"),
        "PAYMUX_ENCRYPTION_KEYS": KEYS, "SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_sets_and_clears_a_connections_failover(url: str, tmp_path: Path) -> None:
    async def account() -> None:
        app = Paymux(settings(url, tmp_path))
        try:
            await app.accounts.ensure_account(ACCOUNT, name=ACCOUNT)
        finally:
            await app.close()

    asyncio.run(account())
    plain = cli(url, tmp_path, "create", "--gateway", "stripe",
                "--credential", "secret_key=env:SECRET").split()[0]
    allows = cli(url, tmp_path, "create", "--gateway", "stripe", "--failover",
                 "--credential", "secret_key=env:SECRET").split()[0]
    assert failover_of(url, tmp_path) == {plain: False, allows: True}  # off unless asked

    cli(url, tmp_path, "update", plain, "--failover")
    assert failover_of(url, tmp_path) == {plain: True, allows: True}
    cli(url, tmp_path, "update", allows, "--no-failover")
    assert failover_of(url, tmp_path) == {plain: True, allows: False}
    cli(url, tmp_path, "update", plain, "--priority", "4")  # not named: kept
    assert failover_of(url, tmp_path) == {plain: True, allows: False}
