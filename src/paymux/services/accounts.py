"""Accounts. Their API keys are services/keys.py's; the key methods here are the short forms
the CLI, the start-up code and the tests use (a test secret key, made by the CLI)."""

from __future__ import annotations

from paymux.services.context import Context
from paymux.services.keys import KeysService, NewKey, hash_key
from paymux.storage.models import Account

__all__ = ["DEFAULT_ACCOUNT", "AccountsService", "NewKey", "hash_key"]

DEFAULT_ACCOUNT = "acct_default"


class AccountsService:
    def __init__(self, ctx: Context, keys: KeysService | None = None) -> None:
        self.ctx = ctx
        self.keys = keys or KeysService(ctx)

    async def ensure_account(self, account_id: str = DEFAULT_ACCOUNT, name: str = "default") -> str:
        async with self.ctx.db.write() as s:
            if await s.get(Account, account_id) is None:
                s.add(Account(id=account_id, name=name, created_us=self.ctx.now_us()))
        return account_id

    async def exists(self, account_id: str) -> bool:
        async with self.ctx.db.read() as s:
            return await s.get(Account, account_id) is not None

    async def create_key(self, account_id: str | None = None) -> NewKey:
        """A new ``sk_test_`` key; a new account unless one is named."""
        new, _ = await self.keys.create(account_id, actor="cli")
        return new

    async def register_key(self, account_id: str, key: str) -> None:
        await self.keys.register(account_id, key)

    async def has_keys(self) -> bool:
        return await self.keys.has_keys()
