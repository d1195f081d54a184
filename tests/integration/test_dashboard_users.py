"""The dashboard's users service in process (a clock the test moves, SQLite and PostgreSQL):
the TOTP secret and password are never stored readable, the idle and absolute session
timeouts, the lockout and its end, and ``paymux users create``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, TypeVar

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from typer.testing import CliRunner

from paymux.cli import cli
from paymux.config import Settings
from paymux.domain.clock import FrozenClock
from paymux.domain.errors import PaymuxError
from paymux.security.envelope import Keyring, generate_key_entry
from paymux.services import Paymux
from paymux.services import dashboard_users as users_module
from paymux.services.dashboard_users import (
    ABSOLUTE_US,
    ARGON2_THREADS,
    IDLE_US,
    LOCKOUT_US,
    DashboardUsers,
    LoginRefused,
)
from paymux.storage.models import AuditEntry, DashboardLoginAttempt, DashboardUser
from support.databases import migrated_database_fixture

db = migrated_database_fixture("dash_users")
PASSWORD = "a long enough password"
START_US = 1_800_000_000 * 1_000_000
T = TypeVar("T")


def run(
    database_url: str, test: Callable[[Paymux, DashboardUsers, FrozenClock], Awaitable[T]]
) -> T:
    keys = generate_key_entry("k1")

    async def main() -> T:
        clock = FrozenClock(START_US)
        app = Paymux(Settings(database_url=database_url, encryption_keys=keys), clock=clock)
        try:
            await app.accounts.ensure_account()
            return await test(app, DashboardUsers(app.ctx, Keyring.parse(keys)), clock)
        finally:
            await app.close()

    return asyncio.run(main())


def code_at(uri: str, clock: FrozenClock) -> str:
    return pyotp.TOTP(pyotp.parse_uri(uri).secret).at(clock.now_us() // 1_000_000)


def test_the_totp_secret_and_password_are_stored_sealed_and_hashed(db: str) -> None:
    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> None:
        new = await users.create(
            email="Ops@Example.com", password=PASSWORD, role="admin", account_id="acct_default"
        )
        secret = pyotp.parse_uri(new.provisioning_uri).secret
        async with app.ctx.db.read() as s:
            row = await s.scalar(select(DashboardUser))
            audit = list((await s.scalars(select(AuditEntry))).all())
        assert row is not None and row.email == "ops@example.com"
        assert secret not in row.totp_secret and row.totp_secret.startswith("pmx1.")
        assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
        assert [(a.action, a.object_id) for a in audit] == [("dashboard_user.create", new.id)]
        assert secret not in json.dumps([a.details for a in audit])

    run(db, test)


def test_bad_users_are_refused_with_the_field(db: str) -> None:
    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> list[str | None]:
        params = []
        for email, password, role in (
            ("nobody", PASSWORD, "admin"),
            ("a@example.com", "short", "admin"),
            ("a@example.com", PASSWORD, "owner"),
        ):
            with pytest.raises(PaymuxError) as refused:
                await users.create(
                    email=email, password=password, role=role, account_id="acct_default"
                )
            params.append(refused.value.param)
        await users.create(
            email="a@example.com", password=PASSWORD, role="support", account_id="acct_default"
        )
        with pytest.raises(PaymuxError) as taken:
            await users.create(
                email="A@example.com", password=PASSWORD, role="support", account_id="acct_default"
            )
        params.append(taken.value.param)
        return params

    assert run(db, test) == ["email", "password", "role", "email"]


def test_a_session_ends_when_idle_and_after_the_absolute_limit(db: str) -> None:
    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> None:
        new = await users.create(
            email="ops@example.com", password=PASSWORD, role="admin", account_id="acct_default"
        )
        token = await users.login(
            "ops@example.com", PASSWORD, code_at(new.provisioning_uri, clock), None
        )
        # Used every 29 minutes, it lives on ...
        for _ in range(3):
            clock.advance((IDLE_US - 60_000_000) / 1_000_000)
            assert await users.session(token) is not None
        # ... until 30 minutes pass without a request.
        clock.advance((IDLE_US + 1) / 1_000_000)
        assert await users.session(token) is None
        assert await users.session(token) is None  # and it is gone for good

        clock.advance(60)
        token = await users.login(
            "ops@example.com", PASSWORD, code_at(new.provisioning_uri, clock), None
        )
        used = 0
        while used + IDLE_US // 2 <= ABSOLUTE_US:
            clock.advance(IDLE_US / 2 / 1_000_000)
            used += IDLE_US // 2
            assert await users.session(token) is not None
        clock.advance((ABSOLUTE_US - used + 1) / 1_000_000)
        assert await users.session(token) is None

    run(db, test)


def test_a_lockout_ends_after_its_time(db: str) -> None:
    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> list[str]:
        new = await users.create(
            email="ops@example.com", password=PASSWORD, role="admin", account_id="acct_default"
        )
        reasons = []
        for _ in range(5):
            with pytest.raises(LoginRefused) as refused:
                await users.login("ops@example.com", "wrong password!", "123456", "10.0.0.9")
            reasons.append(refused.value.reason)
        with pytest.raises(LoginRefused) as locked:
            await users.login(
                "ops@example.com", PASSWORD, code_at(new.provisioning_uri, clock), "10.0.0.9"
            )
        reasons.append(locked.value.reason)
        clock.advance(LOCKOUT_US / 1_000_000 + 1)
        token = await users.login(
            "ops@example.com", PASSWORD, code_at(new.provisioning_uri, clock), "10.0.0.9"
        )
        assert await users.session(token) is not None
        return reasons

    assert run(db, test) == ["invalid"] * 5 + ["locked"]


def test_users_create_prints_the_provisioning_uri_once(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paymux.config import get_settings

    monkeypatch.setenv("PAYMUX_DATABASE_URL", db)
    monkeypatch.setenv("PAYMUX_ENCRYPTION_KEYS", generate_key_entry("k1"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli,
            ["users", "create", "--email", "first@example.com", "--password-stdin"],
            input=PASSWORD + "\n",
        )
        assert result.exit_code == 0, result.output
        uri = result.output.strip().splitlines()[-1]
        assert uri.startswith("otpauth://totp/paymux:first%40example.com?secret=")
        listed = CliRunner().invoke(cli, ["users", "list"])
        assert "first@example.com  admin" in listed.output
        assert "secret" not in listed.output
        short = CliRunner().invoke(
            cli,
            ["users", "create", "--email", "second@example.com", "--password-stdin"],
            input="short\n",
        )
        assert short.exit_code == 1 and "password" in short.output
    finally:
        get_settings.cache_clear()


class _WatchedHasher(PasswordHasher):
    """argon2-cffi's own hasher (the real verification), noting the thread each verification
    runs on and how many run at once; the first one waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.running = 0
        self.most = 0
        self.release = threading.Event()
        self.released: list[bool] = []
        self.on_first: Callable[[], object] = lambda: None
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.threads.append(threading.get_ident())
            self.running += 1
            self.most = max(self.most, self.running)
            first = len(self.threads) == 1
        try:
            if first:
                self.on_first()
                # Set by a coroutine on the event loop: on the loop's own thread this wait
                # could never end early (the bound only keeps a failing run from hanging).
                self.released.append(self.release.wait(timeout=20))
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


def test_a_sign_in_verifies_its_password_off_the_event_loop(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = _WatchedHasher()
    monkeypatch.setattr(users_module, "_HASHER", hasher)

    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> tuple[int, int]:
        new = await users.create(
            email="ops@example.com", password=PASSWORD, role="admin", account_id="acct_default"
        )
        started = asyncio.Event()
        loop = asyncio.get_running_loop()
        hasher.on_first = lambda: loop.call_soon_threadsafe(started.set)
        signing_in = asyncio.create_task(
            users.login("ops@example.com", PASSWORD, code_at(new.provisioning_uri, clock), None)
        )
        await started.wait()  # the sign-in's verification has started ...
        assert await users.count() == 1  # ... and the loop still serves others meanwhile
        hasher.release.set()
        token = await signing_in
        assert await users.session(token) is not None
        return hasher.threads[0], threading.get_ident()

    verified_on, loop_thread = run(db, test)
    assert hasher.released == [True]
    assert verified_on != loop_thread


def test_at_most_two_argon2_verifications_run_at_once(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = _WatchedHasher()
    hasher.release.set()
    monkeypatch.setattr(users_module, "_HASHER", hasher)

    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> None:
        await asyncio.gather(
            *(
                users.login(f"u{n}@example.com", "wrong password!", "000000", None)
                for n in range(6)
            ),
            return_exceptions=True,
        )

    run(db, test)
    assert len(hasher.threads) == 6
    assert hasher.most == ARGON2_THREADS == 2


def test_first_failed_sign_ins_at_once_are_all_refused_and_counted(db: str) -> None:
    async def test(
        app: Paymux, users: DashboardUsers, clock: FrozenClock
    ) -> tuple[list[str], dict[str, int]]:
        outcomes = await asyncio.gather(
            *(
                users.login("nobody@example.com", "wrong password!", "000000", "10.0.0.9")
                for _ in range(8)
            ),
            return_exceptions=True,
        )
        reasons = [o.reason if isinstance(o, LoginRefused) else repr(o) for o in outcomes]
        async with app.ctx.db.read() as s:
            rows = (await s.scalars(select(DashboardLoginAttempt))).all()
        return reasons, {r.key: r.failures for r in rows}

    reasons, failures = run(db, test)
    assert set(reasons) <= {"invalid", "locked"} and len(reasons) == 8, reasons
    counted = reasons.count("invalid")  # a "locked" answer is not a try, so not counted
    assert counted >= 5
    assert failures == {"email:nobody@example.com": counted, "ip:10.0.0.9": counted}


def test_a_nul_in_a_sign_in_field_is_refused_as_invalid(db: str) -> None:
    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> list[str]:
        new = await users.create(
            email="ops@example.com", password=PASSWORD, role="admin", account_id="acct_default"
        )
        code = code_at(new.provisioning_uri, clock)
        reasons = []
        for email, password, otp in (
            ("ops\x00@example.com", PASSWORD, code),
            ("ops@example.com", PASSWORD + "\x00", code),
            ("ops@example.com", PASSWORD, code[:5] + "\x00"),
        ):
            with pytest.raises(LoginRefused) as refused:
                await users.login(email, password, otp, "10.0.0.9")
            reasons.append(refused.value.reason)
        async with app.ctx.db.read() as s:
            assert (await s.scalars(select(DashboardLoginAttempt))).all() == []
        return reasons

    assert run(db, test) == ["invalid"] * 3


def test_disable_and_reset_totp_end_sessions_and_old_codes(db: str) -> None:
    async def test(app: Paymux, users: DashboardUsers, clock: FrozenClock) -> None:
        new = await users.create(
            email="ops@example.com", password=PASSWORD, role="support", account_id="acct_default"
        )
        token = await users.login(
            "ops@example.com", PASSWORD, code_at(new.provisioning_uri, clock), None
        )
        clock.advance(30)
        reset = await users.reset_totp("Ops@Example.com")
        assert (reset.id, reset.email, reset.role) == (new.id, "ops@example.com", "support")
        assert await users.session(token) is None  # its sessions ended
        old_code = code_at(new.provisioning_uri, clock)
        assert old_code != code_at(reset.provisioning_uri, clock)
        with pytest.raises(LoginRefused):
            await users.login("ops@example.com", PASSWORD, old_code, None)
        token = await users.login(
            "ops@example.com", PASSWORD, code_at(reset.provisioning_uri, clock), None
        )
        assert await users.session(token) is not None

        clock.advance(30)
        assert await users.disable("ops@example.com") == new.id
        assert await users.session(token) is None
        with pytest.raises(LoginRefused) as refused:
            await users.login(
                "ops@example.com", PASSWORD, code_at(reset.provisioning_uri, clock), None
            )
        assert refused.value.reason == "invalid"
        with pytest.raises(PaymuxError) as missing:
            await users.disable("nobody@example.com")
        assert missing.value.param == "email"
        async with app.ctx.db.read() as s:
            actions = [
                a.action
                for a in (
                    await s.scalars(
                        select(AuditEntry).order_by(AuditEntry.created_us, AuditEntry.id)
                    )
                ).all()
            ]
        assert [a for a in actions if a.startswith("dashboard_user.")] == [
            "dashboard_user.create",
            "dashboard_user.reset_totp",
            "dashboard_user.disable",
        ]

    run(db, test)


def test_users_disable_and_reset_totp_commands(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from paymux.config import get_settings

    monkeypatch.setenv("PAYMUX_DATABASE_URL", db)
    monkeypatch.setenv("PAYMUX_ENCRYPTION_KEYS", generate_key_entry("k1"))
    get_settings.cache_clear()
    try:
        made = CliRunner().invoke(
            cli,
            ["users", "create", "--email", "ops@example.com", "--password-stdin"],
            input=PASSWORD + "\n",
        )
        assert made.exit_code == 0, made.output
        first_uri = made.output.strip().splitlines()[-1]
        reset = CliRunner().invoke(cli, ["users", "reset-totp", "ops@example.com"])
        assert reset.exit_code == 0, reset.output
        new_uri = reset.output.strip().splitlines()[-1]
        assert new_uri.startswith("otpauth://totp/paymux:ops%40example.com?secret=")
        assert pyotp.parse_uri(new_uri).secret != pyotp.parse_uri(first_uri).secret
        disabled = CliRunner().invoke(cli, ["users", "disable", "ops@example.com"])
        assert disabled.exit_code == 0, disabled.output
        listed = CliRunner().invoke(cli, ["users", "list"])
        assert "ops@example.com  admin  (disabled)" in listed.output
        missing = CliRunner().invoke(cli, ["users", "disable", "nobody@example.com"])
        assert missing.exit_code == 1 and "resource_missing" in missing.output
    finally:
        get_settings.cache_clear()
