"""Stored gateway credentials: sealed with PAYMUX_ENCRYPTION_KEYS, rotated without a
re-encryption of the data (a new primary key re-wraps each data key), and managed from the
command line (`paymux connections ...`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from conftest import BACKENDS, migrated_database_url
from paymux.config import Settings
from paymux.domain.errors import PaymuxError
from paymux.gateways.stripe import StripeGateway
from paymux.security.envelope import Keyring, generate_key_entry
from paymux.services import Paymux
from paymux.services.connections import ConnectionParams
from support.cli import paymux_cli
from support.pgcluster import PgCluster

KEY_A = generate_key_entry("a")
KEY_B = generate_key_entry("b")
SECRET = "sk_test_SEALED" + "x" * 20 + "Wq9z"
HOOK = "whsec_sealed_hook_4455"
ACCOUNT = "acct_conn_keys"


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    name = f"connkeys_{request.param}_{uuid.uuid4().hex[:10]}"
    made = migrated_database_url(request.param, tmp_path, pg_cluster, name)
    return made


def settings(url: str, tmp: Path, keys: str | None) -> Settings:
    return Settings(database_url=url, sandbox_db=str(tmp / "sandbox.db"), run_worker=False,
                    log_json=False, encryption_keys=keys)


def run(url: str, tmp: Path, keys: str | None, work: Any) -> Any:
    async def go() -> Any:
        app = Paymux(settings(url, tmp, keys))
        try:
            await app.accounts.ensure_account(ACCOUNT, name=ACCOUNT)
            return await work(app)
        finally:
            await app.close()

    return asyncio.run(go())


def stored(url: str, tmp: Path) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        app = Paymux(settings(url, tmp, None))
        try:
            async with app.ctx.db.read() as s:
                rows = await s.execute(text("select id, credentials from connections"))
                return [(str(a), str(b)) for a, b in rows.all()]
        finally:
            await app.close()

    return asyncio.run(go())


def create(app: Paymux) -> Any:
    return app.connections.create(ACCOUNT, ConnectionParams(
        gateway="stripe", credentials={"secret_key": SECRET, "webhook_secrets": HOOK}))


async def _gateway(app: Paymux, connection_id: str) -> StripeGateway:
    gateway = await app.connections.gateway(None, account_id=ACCOUNT, connection_id=connection_id)
    assert isinstance(gateway, StripeGateway)
    return gateway


def test_rotation_rewraps_the_data_key_and_the_old_key_can_then_go(url: str, tmp_path: Path) -> None:
    made = run(url, tmp_path, KEY_A, create)
    [(conn_id, sealed_a)] = stored(url, tmp_path)
    assert conn_id == made["id"] and sealed_a.startswith("pmx1.a.")
    assert SECRET not in sealed_a and HOOK not in sealed_a
    # Step 1: the new key first, the old one after it: everything still opens.
    both = f"{KEY_B},{KEY_A}"

    async def opens(app: Paymux) -> list[str]:
        return (await _gateway(app, conn_id)).webhook_secrets

    assert run(url, tmp_path, both, opens) == [HOOK]
    # Step 2: rewrap. Only the wrapped data key changes; the sealed data stays byte for byte.
    assert run(url, tmp_path, both, lambda app: app.connections.rewrap()) == (1, 0, [])
    [(_, sealed_b)] = stored(url, tmp_path)
    assert Keyring.parse(both).key_id_of(sealed_b) == "b"
    assert sealed_b.split(".")[3] == sealed_a.split(".")[3]
    assert run(url, tmp_path, both, lambda app: app.connections.rewrap()) == (0, 1, [])
    # Step 3: the old key removed, the credentials open with the new one alone ...
    assert run(url, tmp_path, KEY_B, opens) == [HOOK]
    # ... and no longer with the old one alone.

    async def refused(app: Paymux) -> str:
        with pytest.raises(PaymuxError) as caught:
            await _gateway(app, conn_id)
        return caught.value.code

    assert run(url, tmp_path, KEY_A, refused) == "service_unavailable"


def test_a_missing_key_fails_clearly_and_the_log_names_the_key_id_only(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = run(url, tmp_path, KEY_A, create)
    caplog.set_level(logging.ERROR)

    async def refused(app: Paymux) -> PaymuxError:
        with pytest.raises(PaymuxError) as caught:
            await _gateway(app, made["id"])
        return caught.value

    error = run(url, tmp_path, KEY_B, refused)
    assert error.code == "service_unavailable" and error.http_status == 503
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "key a is not in PAYMUX_ENCRYPTION_KEYS" in logged and made["id"] in logged
    for secret in (SECRET, HOOK, KEY_A.split(":")[1], KEY_B.split(":")[1]):
        assert secret not in logged and secret not in str(error)


def test_without_an_encryption_key_nothing_is_stored(url: str, tmp_path: Path) -> None:
    async def refused(app: Paymux) -> PaymuxError:
        with pytest.raises(PaymuxError) as caught:
            await create(app)
        return caught.value

    error = run(url, tmp_path, None, refused)
    assert (error.code, error.param) == ("encryption_not_configured", "credentials")
    assert stored(url, tmp_path) == []


def test_a_sealed_value_copied_to_another_connection_does_not_open(
    url: str, tmp_path: Path
) -> None:
    first = run(url, tmp_path, KEY_A, create)
    second = run(url, tmp_path, KEY_A, create)
    sealed = dict(stored(url, tmp_path))

    async def swap_and_open(app: Paymux) -> str:
        async with app.ctx.db.write() as s:
            await s.execute(text("update connections set credentials = :c, updated_us = "
                                 "updated_us + 1 where id = :i"),
                            {"c": sealed[first["id"]], "i": second["id"]})
        with pytest.raises(PaymuxError) as caught:
            await _gateway(app, second["id"])
        return caught.value.code

    assert run(url, tmp_path, KEY_A, swap_and_open) == "service_unavailable"


def cli(url: str, tmp: Path, keys: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``paymux connections ...`` run in this process (support/cli.py): what the commands do is
    the claim here; the process's own start-up is tested where a test starts it."""
    return paymux_cli("connections", *args, env={
        "PAYMUX_DATABASE_URL": url, "PAYMUX_SANDBOX_DB": str(tmp / "s.db"),
        "PAYMUX_ENCRYPTION_KEYS": keys, **env})


def test_the_cli_creates_lists_disables_rewraps_and_deletes(url: str, tmp_path: Path) -> None:
    run(url, tmp_path, KEY_A, lambda app: asyncio.sleep(0))  # the account exists
    made = cli(url, tmp_path, KEY_A, "create", "--account", ACCOUNT, "--gateway", "stripe",
               "--credential", "secret_key=env:MY_STRIPE_KEY", "--currency", "eur",
               MY_STRIPE_KEY=SECRET)
    assert made.returncode == 0, made.stderr
    assert SECRET not in made.stdout and SECRET not in made.stderr
    assert "secret_key: ••••" + SECRET[-4:] in made.stdout
    conn_id = made.stdout.split()[0]
    assert conn_id.startswith("conn_")
    listed = cli(url, tmp_path, KEY_A, "list", "--account", ACCOUNT)
    assert listed.returncode == 0 and conn_id in listed.stdout and "EUR" in listed.stdout
    assert cli(url, tmp_path, KEY_A, "disable", conn_id, "--account", ACCOUNT).returncode == 0
    assert "yes" in cli(url, tmp_path, KEY_A, "list", "--account", ACCOUNT).stdout
    bad = cli(url, tmp_path, KEY_A, "create", "--account", ACCOUNT, "--gateway", "stripe",
              "--credential", "colour=red")
    assert bad.returncode == 1 and "credentials[" in bad.stderr
    assert "Traceback" not in bad.stderr
    rotated = cli(url, tmp_path, f"{KEY_B},{KEY_A}", "rewrap")
    assert rotated.returncode == 0 and "rewrapped 1" in rotated.stdout
    assert stored(url, tmp_path)[0][1].startswith("pmx1.b.")
    assert cli(url, tmp_path, KEY_B, "delete", conn_id, "--account", ACCOUNT).returncode == 0
    assert stored(url, tmp_path) == []

    async def audited(app: Paymux) -> list[str]:
        async with app.ctx.db.read() as s:
            rows = await s.execute(text(
                "select action from audit_log where object_id = :i and actor = 'cli' "
                "order by created_us"), {"i": conn_id})
            return [str(r[0]) for r in rows.all()]

    assert run(url, tmp_path, KEY_B, audited) == [
        "connection.create", "connection.disable", "connection.delete"]
    key = cli(url, tmp_path, KEY_B, "keygen", "2027-01")
    assert key.returncode == 0 and Keyring.parse(key.stdout.strip()).key_ids == ("2027-01",)
