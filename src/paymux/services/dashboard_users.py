"""Dashboard users and their sessions: the service behind /dashboard's sign-in (the pages and
``paymux users`` call it; the dashboard package itself never queries the database).

- A user: e-mail, argon2id password hash (argon2-cffi), a TOTP secret (pyotp) sealed with
  the envelope keyring of PAYMUX_ENCRYPTION_KEYS (context ``dashboard_user:<id>:totp``, so it
  never sits in the database in the clear), a role (``ROLES``).
- Signing in takes the e-mail, the password and a current TOTP code together; any failure
  answers the same ``LoginRefused("invalid")`` (no hint which part was wrong, and an unknown
  e-mail costs one argon2 verification too). A TOTP time step is accepted once per user.
- Lockout: ``MAX_EMAIL_FAILURES`` failures for one e-mail, or ``MAX_CLIENT_FAILURES`` from
  one client address, within ``FAILURE_WINDOW_US`` lock that key for ``LOCKOUT_US``
  (``LoginRefused("locked")``, even with the right password). A success clears the e-mail's.
- ``disable`` and ``reset_totp`` (``paymux users disable`` / ``reset-totp``) end the user's
  sessions; a disabled user signs in no more.
- argon2 runs in worker threads, ``ARGON2_THREADS`` at once, never on the event loop.
- A session: the cookie holds 32 random bytes; the row holds their SHA-256 (a database read
  gives no usable cookie), a CSRF token, the mode (test or live). It ends after
  ``IDLE_US`` without a request or ``ABSOLUTE_US`` after sign-in, whichever comes first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.security.envelope import Keyring
from paymux.services.audit import audit_entry
from paymux.services.context import Context
from paymux.storage.models import DashboardLoginAttempt, DashboardSession, DashboardUser

__all__ = [
    "ABSOLUTE_US",
    "IDLE_US",
    "ROLES",
    "DashboardUsers",
    "LoginRefused",
    "NewUser",
    "SessionInfo",
]

ROLES = ("admin", "developer", "support", "view_only")
MINUTE_US = 60 * 1_000_000
IDLE_US = 30 * MINUTE_US
ABSOLUTE_US = 12 * 60 * MINUTE_US
MAX_EMAIL_FAILURES = 5
MAX_CLIENT_FAILURES = 20
FAILURE_WINDOW_US = 15 * MINUTE_US
LOCKOUT_US = 15 * MINUTE_US
SEEN_EVERY_US = MINUTE_US
MIN_PASSWORD = 12
TOTP_STEP_SECONDS = 30
ISSUER = "paymux"

ARGON2_THREADS = 2  # argon2 hashes and verifications at once (each in a worker thread)

_HASHER = PasswordHasher()


class LoginRefused(Exception):
    """``reason``: ``invalid`` (any wrong part) or ``locked`` (too many failures)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NewUser:
    id: str
    email: str
    role: str
    provisioning_uri: str  # shown once to whoever created the user; never stored or logged


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str  # the row's id (the token's hash), never the cookie's token
    user_id: str
    email: str
    role: str
    account_id: str
    livemode: bool
    csrf_token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _totp_context(user_id: str) -> str:
    return f"dashboard_user:{user_id}:totp"


def _normal_email(email: str) -> str:
    return email.strip().lower()


class DashboardUsers:
    def __init__(self, ctx: Context, keyring: Keyring) -> None:
        self.ctx = ctx
        self.keyring = keyring
        # argon2 takes a CPU for a good part of a second: never on the event loop (the other
        # requests would wait), and only ARGON2_THREADS at once (a burst of sign-ins queues
        # here instead of taking every worker thread).
        self._argon2 = asyncio.Semaphore(ARGON2_THREADS)

    async def _verify(self, hashed: str | None, password: str) -> bool:
        """``password`` against ``hashed`` (None: against a throwaway hash, so an unknown
        e-mail costs what a known one does), in a worker thread."""
        async with self._argon2:
            return await asyncio.to_thread(_verify, hashed, password)

    async def _hash(self, password: str) -> str:
        async with self._argon2:
            return await asyncio.to_thread(_HASHER.hash, password)

    # -- users -------------------------------------------------------------------------------
    async def create(self, *, email: str, password: str, role: str, account_id: str) -> NewUser:
        address = _normal_email(email)
        if "@" not in address or len(address) > 254:
            raise PaymuxError.of("parameter_invalid", "Invalid email.", param="email")
        if role not in ROLES:
            raise PaymuxError.of(
                "parameter_invalid", f"Invalid role: one of {', '.join(ROLES)}.", param="role"
            )
        if len(password) < MIN_PASSWORD:
            raise PaymuxError.of(
                "parameter_invalid",
                f"The password must be at least {MIN_PASSWORD} characters.",
                param="password",
            )
        if not self.keyring.configured:
            raise PaymuxError.of(
                "parameter_invalid",
                "PAYMUX_ENCRYPTION_KEYS must be set: the TOTP secret is stored encrypted.",
                param="encryption_keys",
            )
        user_id = new_id("dusr")
        secret = pyotp.random_base32()
        password_hash = await self._hash(password)
        async with self.ctx.db.write() as s:
            taken = await s.scalar(select(DashboardUser.id).where(DashboardUser.email == address))
            if taken is not None:
                raise PaymuxError.of(
                    "parameter_invalid", "A user with this email exists.", param="email"
                )
            s.add(
                DashboardUser(
                    id=user_id,
                    account_id=account_id,
                    email=address,
                    password_hash=password_hash,
                    totp_secret=self.keyring.seal(secret.encode(), context=_totp_context(user_id)),
                    role=role,
                    disabled=False,
                    created_us=self.ctx.now_us(),
                )
            )
            s.add(
                audit_entry(
                    self.ctx,
                    account_id=account_id,
                    actor="cli",
                    action="dashboard_user.create",
                    object_type="dashboard_user",
                    object_id=user_id,
                    details={"role": role},
                )
            )
        uri = pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=ISSUER)
        return NewUser(user_id, address, role, uri)

    async def count(self) -> int:
        async with self.ctx.db.read() as s:
            return int(await s.scalar(select(func.count()).select_from(DashboardUser)) or 0)

    async def summary(self) -> list[tuple[str, str, str, bool]]:
        """(id, e-mail, role, disabled) of every user, oldest first."""
        async with self.ctx.db.read() as s:
            rows = (await s.scalars(select(DashboardUser).order_by(DashboardUser.created_us))).all()
        return [(u.id, u.email, u.role, u.disabled) for u in rows]

    async def disable(self, email: str) -> str:
        """Disable the user of ``email`` (they can no longer sign in) and end their sessions.
        Returns their id."""
        return await self._change(email, "dashboard_user.disable", disabled=True)

    async def reset_totp(self, email: str) -> NewUser:
        """A new TOTP secret for the user of ``email`` (the old one stops working; their
        sessions end); its provisioning URI, to show once."""
        if not self.keyring.configured:
            raise PaymuxError.of(
                "parameter_invalid",
                "PAYMUX_ENCRYPTION_KEYS must be set: the TOTP secret is stored encrypted.",
                param="encryption_keys",
            )
        secret = pyotp.random_base32()

        def seal(user_id: str) -> str:
            return self.keyring.seal(secret.encode(), context=_totp_context(user_id))

        user_id = await self._change(email, "dashboard_user.reset_totp", totp=seal)
        address = _normal_email(email)
        async with self.ctx.db.read() as s:
            role = await s.scalar(select(DashboardUser.role).where(DashboardUser.id == user_id))
        uri = pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=ISSUER)
        return NewUser(user_id, address, str(role), uri)

    async def _change(
        self,
        email: str,
        action: str,
        *,
        disabled: bool | None = None,
        totp: Callable[[str], str] | None = None,
    ) -> str:
        address = _normal_email(email)
        async with self.ctx.db.write() as s:
            user = await s.scalar(
                select(DashboardUser).where(DashboardUser.email == address).with_for_update()
            )
            if user is None:
                raise PaymuxError.of(
                    "resource_missing", f"No dashboard user {address[:254]}.", param="email"
                )
            if disabled is not None:
                user.disabled = disabled
            if totp is not None:
                user.totp_secret = totp(user.id)
                user.last_totp_step = None
            await s.execute(delete(DashboardSession).where(DashboardSession.user_id == user.id))
            s.add(
                audit_entry(
                    self.ctx,
                    account_id=user.account_id,
                    actor="cli",
                    action=action,
                    object_type="dashboard_user",
                    object_id=user.id,
                )
            )
            return user.id

    # -- signing in --------------------------------------------------------------------------
    async def login(self, email: str, password: str, code: str, client: str | None) -> str:
        """A new session's cookie token, or ``LoginRefused``."""
        address = _normal_email(email)
        now = self.ctx.now_us()
        if "\x00" in address + password + code:
            # No user's e-mail holds a NUL and PostgreSQL refuses one in a query: refused as
            # a wrong password is, at the same cost (not counted: no key holds a NUL either).
            await self._verify(None, password)
            raise LoginRefused("invalid")
        keys = [f"email:{address}"[:300]] + ([f"ip:{client}"[:300]] if client else [])
        if await self._locked(keys, now):
            await self._verify(None, password)  # same cost as a real try
            raise LoginRefused("locked")
        async with self.ctx.db.read() as s:
            user = await s.scalar(select(DashboardUser).where(DashboardUser.email == address))
        step = None
        if user is None or user.disabled:
            await self._verify(None, password)
        elif await self._verify(user.password_hash, password):
            step = self._totp_step(user, code, now)
        if user is None or step is None:
            await self._fail(keys, now)
            raise LoginRefused("invalid")
        token = secrets.token_urlsafe(32)
        async with self.ctx.db.write() as s:
            fresh = await s.get(DashboardUser, user.id, with_for_update=True)
            if fresh is None or (fresh.last_totp_step is not None and step <= fresh.last_totp_step):
                raise LoginRefused("invalid")  # the code was used already (a replay)
            fresh.last_totp_step = step
            fresh.last_login_us = now
            s.add(
                DashboardSession(
                    id=token_hash(token),
                    user_id=user.id,
                    csrf_token=secrets.token_urlsafe(32),
                    livemode=False,
                    created_us=now,
                    seen_us=now,
                )
            )
            await s.execute(
                delete(DashboardLoginAttempt).where(DashboardLoginAttempt.key == keys[0])
            )
            s.add(
                audit_entry(
                    self.ctx,
                    account_id=user.account_id,
                    actor=_actor(user.email),
                    action="dashboard_session.create",
                    object_type="dashboard_user",
                    object_id=user.id,
                )
            )
        return token

    def _totp_step(self, user: DashboardUser, code: str, now_us: int) -> int | None:
        """The time step ``code`` is the TOTP of (this one or either neighbour), else None."""
        digits = code.strip().replace(" ", "")
        if not re.fullmatch(r"[0-9]{6}", digits):  # ASCII only (isdigit takes "²")
            return None
        secret = self.keyring.open(user.totp_secret, context=_totp_context(user.id)).decode()
        totp = pyotp.TOTP(secret)
        now_s = now_us // 1_000_000
        for offset in (0, -1, 1):
            at = now_s + offset * TOTP_STEP_SECONDS
            if hmac.compare_digest(totp.at(at), digits):
                return at // TOTP_STEP_SECONDS
        return None

    async def _locked(self, keys: list[str], now: int) -> bool:
        async with self.ctx.db.read() as s:
            rows = (
                await s.scalars(
                    select(DashboardLoginAttempt).where(DashboardLoginAttempt.key.in_(keys))
                )
            ).all()
        return any(r.locked_until_us is not None and r.locked_until_us > now for r in rows)

    async def _fail(self, keys: list[str], now: int) -> None:
        """Count a failure on each key. The row is made by an insert that does nothing when
        it exists, then locked: first failures of one key at once each count (no two inserts
        of one key racing into a unique violation)."""
        async with self.ctx.db.write() as s:
            dialect = s.bind.dialect.name if s.bind is not None else "sqlite"
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            for key in sorted(keys):  # one lock order for every caller
                await s.execute(
                    insert(DashboardLoginAttempt)
                    .values(key=key, failures=0, window_start_us=now)
                    .on_conflict_do_nothing(index_elements=["key"])
                )
                row = (
                    await s.scalars(
                        select(DashboardLoginAttempt)
                        .where(DashboardLoginAttempt.key == key)
                        .with_for_update()
                        .execution_options(populate_existing=True)
                    )
                ).one()
                if now - row.window_start_us > FAILURE_WINDOW_US:
                    row.failures, row.window_start_us, row.locked_until_us = 0, now, None
                row.failures += 1
                limit = MAX_EMAIL_FAILURES if key.startswith("email:") else MAX_CLIENT_FAILURES
                if row.failures >= limit:
                    row.locked_until_us = now + LOCKOUT_US

    # -- sessions ----------------------------------------------------------------------------
    async def session(self, token: str) -> SessionInfo | None:
        """The live session of a cookie's token, else None (an expired one is deleted). Its
        last-seen time is written at most once a minute (``SEEN_EVERY_US``): a page view is
        a read."""
        if not token:
            return None
        now = self.ctx.now_us()
        key = token_hash(token)
        async with self.ctx.db.read() as s:
            row = await s.get(DashboardSession, key)
            user = await s.get(DashboardUser, row.user_id) if row is not None else None
        if row is None:
            return None
        if (
            user is None
            or user.disabled
            or now - row.seen_us > IDLE_US
            or now - row.created_us > ABSOLUTE_US
        ):
            await self.end(key)
            return None
        if now - row.seen_us >= SEEN_EVERY_US:
            async with self.ctx.db.write() as s:
                await s.execute(
                    update(DashboardSession)
                    .where(DashboardSession.id == key, DashboardSession.seen_us < now)
                    .values(seen_us=now)
                )
        return SessionInfo(
            row.id,
            user.id,
            user.email,
            user.role,
            user.account_id,
            row.livemode,
            row.csrf_token,
        )

    async def end(self, session_id: str) -> None:
        async with self.ctx.db.write() as s:
            await s.execute(delete(DashboardSession).where(DashboardSession.id == session_id))

    async def set_mode(self, session_id: str, livemode: bool) -> None:
        async with self.ctx.db.write() as s:
            row = await s.get(DashboardSession, session_id)
            if row is not None:
                row.livemode = livemode


def _actor(email: str) -> str:
    return f"dashboard:{email}"


@cache
def _dummy_hash() -> str:
    """Verified against when the e-mail is unknown (made once, on first use)."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def _verify(hashed: str | None, password: str) -> bool:
    """Blocking (argon2): call it in a worker thread."""
    try:
        return _HASHER.verify(_dummy_hash() if hashed is None else hashed, password)
    except (VerificationError, InvalidHashError):
        return False
