"""Accounts and API keys. Keys are shown once and stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import select

from paymux.domain.ids import new_id
from paymux.services.context import Context
from paymux.storage.models import Account, ApiKey

__all__ = ["DEFAULT_ACCOUNT", "AccountsService", "NewKey", "hash_key"]

DEFAULT_ACCOUNT = "acct_default"
_ALPHABET = string.ascii_letters + string.digits


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    account_id: str
    key: str


class AccountsService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._cache: dict[str, str] = {}

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
        """The account of an active key, or None."""
        digest = hash_key(key)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        async with self.ctx.db.read() as s:
            row = (
                await s.execute(
                    select(ApiKey.account_id).where(
                        ApiKey.key_hash == digest, ApiKey.revoked.is_(False)
                    )
                )
            ).scalar()
        if row is not None:
            self._cache[digest] = row
        return row
