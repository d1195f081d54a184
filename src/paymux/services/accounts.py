"""Accounts and API keys. Keys are shown once and stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from paymux.domain.ids import new_id
from paymux.services.context import Context
from paymux.storage.models import Account, ApiKey

__all__ = ["DEFAULT_ACCOUNT", "AccountsService", "NewKey", "hash_key"]

DEFAULT_ACCOUNT = "acct_default"
_ALPHABET = string.ascii_letters + string.digits
_LAST_USED_EVERY_US = 60 * 1_000_000  # last use is noted at most once a minute per process


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    account_id: str
    key: str


class AccountsService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # key hash -> (account, when to read it again): a revoked key stops working in every
        # process within key_cache_seconds, without a database read per request.
        self._cache: dict[str, tuple[str, int]] = {}

    async def ensure_account(self, account_id: str = DEFAULT_ACCOUNT, name: str = "default") -> str:
        async with self.ctx.db.write() as s:
            if await s.get(Account, account_id) is None:
                s.add(Account(id=account_id, name=name, created_us=self.ctx.now_us()))
        return account_id

    async def create_key(self, account_id: str | None = None) -> NewKey:
        """A new ``sk_test_`` key; a new account unless one is named."""
        account = account_id or new_id("acct", 16)
        await self.ensure_account(account, name=account)
        key = "sk_test_" + "".join(secrets.choice(_ALPHABET) for _ in range(32))
        await self.register_key(account, key)
        return NewKey(account, key)

    async def register_key(self, account_id: str, key: str) -> None:
        digest = hash_key(key)
        async with self.ctx.db.write() as s:
            existing = (await s.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar()
            if existing is None:
                s.add(
                    ApiKey(
                        id=new_id("key", 16),
                        account_id=account_id,
                        key_hash=digest,
                        last4=key[-4:],
                        livemode=False,
                        revoked=False,
                        created_us=self.ctx.now_us(),
                    )
                )

    async def has_keys(self) -> bool:
        async with self.ctx.db.read() as s:
            return (await s.execute(select(ApiKey.id).limit(1))).first() is not None

    async def authenticate(self, key: str) -> str | None:
        """The account of an active key, or None. Known keys are cached for
        ``key_cache_seconds``; reading one again also notes when it was last used."""
        digest = hash_key(key)
        now = self.ctx.now_us()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        async with self.ctx.db.read() as s:
            row = (
                await s.execute(
                    select(ApiKey.id, ApiKey.account_id, ApiKey.last_used_us).where(
                        ApiKey.key_hash == digest, ApiKey.revoked.is_(False)
                    )
                )
            ).first()
        if row is None:
            self._cache.pop(digest, None)
            return None
        key_id, account_id, last_used = row
        if last_used is None or now - last_used >= _LAST_USED_EVERY_US:
            async with self.ctx.db.write() as s:
                await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_us=now))
        ttl = int(self.ctx.settings.key_cache_seconds * 1_000_000)
        self._cache[digest] = (str(account_id), now + ttl)
        return str(account_id)

    async def list_keys(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """Keys as an operator may see them: never the key, only its last four."""
        query = select(ApiKey).order_by(ApiKey.created_us, ApiKey.id)
        if account_id:
            query = query.where(ApiKey.account_id == account_id)
        async with self.ctx.db.read() as s:
            return [
                {
                    "id": k.id,
                    "account": k.account_id,
                    "last4": k.last4,
                    "livemode": k.livemode,
                    "revoked": k.revoked,
                    "created": k.created_us // 1_000_000,
                    "last_used": None if k.last_used_us is None else k.last_used_us // 1_000_000,
                }
                for k in (await s.execute(query)).scalars()
            ]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key at once (every process stops taking it within key_cache_seconds).
        False if there is no such key."""
        async with self.ctx.db.write() as s:
            done = await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked=True))
            return bool(getattr(done, "rowcount", 0))
