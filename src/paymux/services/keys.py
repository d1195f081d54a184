"""API keys: secret, publishable and restricted, in test or live mode; create, list, roll,
revoke, authenticate. A key is shown once and stored only as its SHA-256 hash.

Prefixes are Stripe's: ``sk_`` (secret, for servers), ``pk_`` (publishable, for a checkout
page: it retrieves and confirms a PaymentIntent with the intent's client secret, nothing
else), ``rk_`` (restricted: per-resource ``read`` or ``write``), then ``test_`` or ``live_``.

Rolling makes a new key of the same kind, mode, name and permissions; the old one keeps
working for the grace period the merchant chose (0: not at all), then is refused. Revoking
refuses a key at once. Each process caches a key's check for ``key_cache_seconds`` (so a key
revoked elsewhere stops working everywhere within that time); an expiry is checked on every
request, cached or not. Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from sqlalchemy import bindparam, select, update

from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.services.audit import audit_entry
from paymux.services.context import Context
from paymux.storage.models import Account, ApiKey, PaymentIntent, SetupIntent

__all__ = [
    "MAX_ROLL_GRACE_SECONDS",
    "RESOURCES",
    "KeyKind",
    "KeysService",
    "Level",
    "NewKey",
    "Principal",
    "hash_key",
    "key_view",
    "permits",
    "validate_permissions",
]

KeyKind = Literal["secret", "publishable", "restricted"]
Level = Literal["read", "write"]
KINDS: tuple[KeyKind, ...] = get_args(KeyKind)
LEVELS: tuple[Level, ...] = get_args(Level)
# What a restricted key can be granted, one level per resource (write implies read).
RESOURCES = (
    "payment_intents",
    "charges",
    "refunds",
    "customers",
    "payment_methods",
    "events",
    "disputes",
    "connections",
    "audit_log",
    "webhook_endpoints",
    # billing
    "setup_intents",
    "products",
    "prices",
    "coupons",
    "promotion_codes",
    "tax_rates",
    "meters",
    "meter_events",
    "subscriptions",
    "subscription_items",
    "invoices",
    "invoiceitems",
    "credit_notes",
    "test_clocks",
    # fraud (fraud/): /v1/fraud/rules, /v1/radar/value_lists and _items, /v1/reviews
    "fraud",
    "radar",
    "reviews",
)
_PREFIX: dict[KeyKind, str] = {"secret": "sk", "publishable": "pk", "restricted": "rk"}
# ``client_secret_matches``'s read of an intent's secret and account, by primary key alone
# (the account is compared on the row): with ``account_id = :a`` in the statement, a plan made
# without statistics can walk the account's intents through its (account, created) index, as
# the GET's read did (docs/benchmarks.md; tests/integration/test_key_lookup_plans.py).
_SECRET_OF: dict[type[PaymentIntent] | type[SetupIntent], Any] = {
    model: select(model.client_secret, model.account_id).where(model.id == bindparam("id"))
    for model in (PaymentIntent, SetupIntent)
}
MAX_ROLL_GRACE_SECONDS = 7 * 24 * 3600  # Stripe's dashboard offers now, 1 h, 24 h, 3 d, 7 d
_ALPHABET = string.ascii_letters + string.digits
_LAST_USED_EVERY_US = 60 * 1_000_000  # last use is noted at most once a minute per process


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(kind: str, livemode: bool) -> str:
    return f"{_PREFIX.get(cast(KeyKind, kind), 'sk')}_{'live' if livemode else 'test'}_"


@dataclass(frozen=True, slots=True)
class NewKey:
    account_id: str
    key: str
    key_id: str = ""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the account, and the key with its kind, mode and grants."""

    account_id: str
    key_id: str
    kind: KeyKind
    livemode: bool
    permissions: Mapping[str, Level] = field(default_factory=dict)
    key_hash: str = ""


def permits(permissions: Mapping[str, str], resource: str, level: Level) -> bool:
    """A restricted key's grants allow ``level`` on ``resource`` (write implies read)."""
    granted = permissions.get(resource)
    return granted == "write" or (granted == "read" and level == "read")


def validate_permissions(raw: Mapping[str, Any] | None) -> dict[str, Level]:
    """A restricted key's grants, checked: 400 naming the param for an unknown resource or
    level, or for none at all."""
    if not raw:
        raise PaymuxError.of(
            "parameter_missing",
            "A restricted key needs permissions: {resource: 'read' | 'write'}, resources "
            f"being {', '.join(RESOURCES)}.",
            param="permissions",
        )
    out: dict[str, Level] = {}
    for resource, level in raw.items():
        if resource not in RESOURCES:
            raise PaymuxError.of(
                "parameter_invalid",
                f"Unknown resource {str(resource)[:40]!r}: use one of {', '.join(RESOURCES)}.",
                param=f"permissions[{str(resource)[:40]}]",
            )
        if level not in LEVELS:
            raise PaymuxError.of(
                "parameter_invalid",
                f"Invalid permission for {resource}: use 'read' or 'write'.",
                param=f"permissions[{resource}]",
            )
        out[resource] = cast(Level, level)
    return out


def key_view(k: ApiKey) -> dict[str, Any]:
    """A key as anyone may see it after creation: never the key, only a redacted form."""
    return {
        "id": k.id,
        "object": "api_key",
        "account": k.account_id,
        "type": k.kind,
        "livemode": k.livemode,
        "name": k.name,
        "redacted": f"{prefix_of(k.kind, k.livemode)}...{k.last4}",
        "last4": k.last4,
        "permissions": dict(k.permissions) if k.permissions else None,
        "created": k.created_us // 1_000_000,
        "last_used": None if k.last_used_us is None else k.last_used_us // 1_000_000,
        "expires_at": None if k.expires_us is None else k.expires_us // 1_000_000,
        "revoked": k.revoked,
        "rolled_to": k.rolled_to,
    }


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    expires_us: int | None
    read_again_us: int


class KeysService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # key hash -> the key's check, trusted until read_again_us.
        self._cache: dict[str, _Cached] = {}

    # -- create -----------------------------------------------------------------------------
    async def create(
        self,
        account_id: str | None = None,
        *,
        kind: str = "secret",
        livemode: bool = False,
        name: str | None = None,
        permissions: Mapping[str, Any] | None = None,
        actor: str = "cli",
        request_id: str | None = None,
    ) -> tuple[NewKey, dict[str, Any]]:
        """A new key (and a new account unless one is named): the key, shown once, and its
        view. Recorded in the audit log as ``key.create`` by ``actor``."""
        if kind not in KINDS:
            raise PaymuxError.of(
                "parameter_invalid",
                "type must be secret, publishable or restricted.",
                param="type",
            )
        grants: dict[str, Level] | None = None
        if kind == "restricted":
            grants = validate_permissions(permissions)
        elif permissions:
            raise PaymuxError.of(
                "parameter_invalid",
                "Only a restricted key has permissions.",
                param="permissions",
            )
        account = account_id or new_id("acct", 16)
        key = prefix_of(kind, livemode) + "".join(secrets.choice(_ALPHABET) for _ in range(32))
        async with self.ctx.db.write() as s:
            if await s.get(Account, account) is None:
                s.add(Account(id=account, name=account, created_us=self.ctx.now_us()))
                await s.flush()
            row = self._row(account, key, kind, livemode, name, grants)
            s.add(row)
            s.add(self._audit(row, actor, "key.create", request_id))
            view = key_view(row)
        return NewKey(account, key, row.id), view

    async def register(self, account_id: str, key: str) -> None:
        """Take a key made elsewhere (PAYMUX_API_KEY) as a test secret key, once."""
        digest = hash_key(key)
        async with self.ctx.db.write() as s:
            existing = (await s.execute(select(ApiKey.id).where(ApiKey.key_hash == digest))).first()
            if existing is None:
                s.add(self._row(account_id, key, "secret", key.startswith("sk_live_"), None, None))

    def _row(
        self,
        account_id: str,
        key: str,
        kind: str,
        livemode: bool,
        name: str | None,
        permissions: dict[str, Level] | None,
    ) -> ApiKey:
        return ApiKey(
            id=new_id("key", 16),
            account_id=account_id,
            key_hash=hash_key(key),
            last4=key[-4:],
            livemode=livemode,
            revoked=False,
            kind=kind,
            name=name,
            permissions=dict(permissions) if permissions is not None else None,
            expires_us=None,
            rolled_to=None,
            created_us=self.ctx.now_us(),
        )

    def _audit(
        self,
        row: ApiKey,
        actor: str,
        action: str,
        request_id: str | None,
        details: dict[str, Any] | None = None,
    ) -> Any:
        return audit_entry(
            self.ctx,
            account_id=row.account_id,
            actor=actor,
            action=action,
            object_type="api_key",
            object_id=row.id,
            livemode=row.livemode,
            request_id=request_id,
            details={"type": row.kind, "redacted": key_view(row)["redacted"], **(details or {})},
        )

    # -- read -------------------------------------------------------------------------------
    async def has_keys(self) -> bool:
        async with self.ctx.db.read() as s:
            return (await s.execute(select(ApiKey.id).limit(1))).first() is not None

    async def list(self, account_id: str | None = None) -> list[dict[str, Any]]:
        query = select(ApiKey).order_by(ApiKey.created_us, ApiKey.id)
        if account_id:
            query = query.where(ApiKey.account_id == account_id)
        async with self.ctx.db.read() as s:
            return [key_view(k) for k in (await s.execute(query)).scalars()]

    async def retrieve(self, key_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return key_view(await self._get(s, key_id))

    async def _get(self, s: Any, key_id: str, *, lock: bool = False) -> ApiKey:
        row = await s.get(ApiKey, key_id, with_for_update=lock)
        if row is None:
            raise PaymuxError.of(
                "resource_missing", f"No such API key: '{key_id[:40]}'", param="id"
            )
        return cast(ApiKey, row)

    # -- roll / revoke ----------------------------------------------------------------------
    async def roll(
        self,
        key_id: str,
        expires_in_seconds: int = 0,
        *,
        actor: str = "cli",
        request_id: str | None = None,
    ) -> tuple[NewKey, dict[str, Any]]:
        """A new key like ``key_id`` (kind, mode, name, permissions); the old one works for
        ``expires_in_seconds`` more (0: refused at once), then is refused."""
        if not 0 <= expires_in_seconds <= MAX_ROLL_GRACE_SECONDS:
            raise PaymuxError.of(
                "parameter_invalid",
                f"expires_in must be 0 to {MAX_ROLL_GRACE_SECONDS} seconds (7 days).",
                param="expires_in",
            )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            old = await self._get(s, key_id, lock=True)
            if (
                old.revoked
                or old.rolled_to is not None
                or (old.expires_us is not None and old.expires_us <= now)
            ):
                raise PaymuxError.of(
                    "api_key_unexpected_state",
                    f"API key {old.id} is revoked, expired or already rolled"
                    + (f" (to {old.rolled_to}); roll that one." if old.rolled_to else "."),
                    param="id",
                )
            key = prefix_of(old.kind, old.livemode) + "".join(
                secrets.choice(_ALPHABET) for _ in range(32)
            )
            grants = cast(dict[str, Level], dict(old.permissions)) if old.permissions else None
            new = self._row(old.account_id, key, old.kind, old.livemode, old.name, grants)
            s.add(new)
            old.rolled_to = new.id
            old.expires_us = now + expires_in_seconds * 1_000_000
            await s.flush()
            s.add(
                self._audit(
                    old,
                    actor,
                    "key.roll",
                    request_id,
                    {"rolled_to": new.id, "expires_in": expires_in_seconds},
                )
            )
            view = key_view(new)
        self._forget(key_id)
        return NewKey(new.account_id, key, new.id), view

    async def revoke(
        self, key_id: str, *, actor: str = "cli", request_id: str | None = None
    ) -> dict[str, Any] | None:
        """Refuse a key from now on (other processes: within key_cache_seconds). Its view,
        or None if there is no such key."""
        async with self.ctx.db.write() as s:
            row = await s.get(ApiKey, key_id, with_for_update=True)
            if row is None:
                return None
            if not row.revoked:
                row.revoked = True
                s.add(self._audit(row, actor, "key.revoke", request_id))
            view = key_view(row)
        self._forget(key_id)
        return view

    def _forget(self, key_id: str) -> None:
        for digest in [d for d, c in self._cache.items() if c.principal.key_id == key_id]:
            self._cache.pop(digest, None)

    # -- authenticate -----------------------------------------------------------------------
    async def authenticate(self, key: str) -> Principal | None:
        """The principal of a key that works now; None if it is unknown, revoked or expired."""
        found = await self.check(key)
        return found if isinstance(found, Principal) else None

    async def check(self, key: str) -> Principal | Literal["expired"] | None:
        """Like ``authenticate``, but tells an expired (rolled) key from an unknown one.

        Checks are cached for ``key_cache_seconds``; reading a key again also notes when it
        was last used (at most once a minute)."""
        digest = hash_key(key)
        now = self.ctx.now_us()
        cached = self._cache.get(digest)
        if cached is not None and cached.read_again_us > now:
            if cached.expires_us is not None and cached.expires_us <= now:
                return "expired"
            return cached.principal
        async with self.ctx.db.read() as s:
            row = (
                await s.execute(
                    select(
                        ApiKey.id,
                        ApiKey.account_id,
                        ApiKey.kind,
                        ApiKey.livemode,
                        ApiKey.permissions,
                        ApiKey.expires_us,
                        ApiKey.last_used_us,
                    ).where(ApiKey.key_hash == digest, ApiKey.revoked.is_(False))
                )
            ).first()
        if row is None:
            self._cache.pop(digest, None)
            return None
        key_id, account_id, kind, livemode, permissions, expires_us, last_used = row
        if expires_us is not None and expires_us <= now:
            self._cache.pop(digest, None)
            return "expired"
        if last_used is None or now - last_used >= _LAST_USED_EVERY_US:
            async with self.ctx.db.write() as s:
                await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_us=now))
        principal = Principal(
            account_id=str(account_id),
            key_id=str(key_id),
            kind=cast(KeyKind, kind if kind in KINDS else "secret"),
            livemode=bool(livemode),
            permissions=dict(permissions or {}),
            key_hash=digest,
        )
        ttl = int(self.ctx.settings.key_cache_seconds * 1_000_000)
        self._cache[digest] = _Cached(principal, expires_us, now + ttl)
        return principal

    # -- publishable keys -------------------------------------------------------------------
    async def client_secret_matches(self, account_id: str, pi_id: str, secret: str) -> bool:
        """The PaymentIntent (or SetupIntent, ``seti_...``) is the account's and ``secret`` is
        its client secret (compared in constant time). An unknown intent and a wrong secret
        are alike: False."""
        statement = _SECRET_OF[SetupIntent if pi_id.startswith("seti_") else PaymentIntent]
        async with self.ctx.db.read() as s:
            found = (await s.execute(statement, {"id": pi_id})).first()
        if found is None or found.account_id != account_id or not found.client_secret:
            return False
        return hmac.compare_digest(str(found.client_secret).encode(), secret.encode())
