"""Owner rows for gateway tokens a gateway issues later in a payment method's life.

A token belongs to the account that first recorded it (``gateway_token_owners``, migration
0010; services/customers.py claims the token a payment method is made from). A gateway can
also hand out a token of its own afterwards: a vault token or card on file when a card is
saved (a SetupIntent, an attach: Square's ``ccof:``), or a payment method it makes with the
payer (a PayPal wallet saved by a SetupIntent). Those are claimed here, in the transaction
that records them on the payment method, so the owner row and the payment method commit
together and another account naming the token is refused by the owner check, not only by the
older look-up of payment methods (which a token no longer on any payment method escapes).
"""

from __future__ import annotations

import logging

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.storage.models import GatewayTokenOwner

__all__ = ["claim_token"]

log = logging.getLogger(__name__)

_TABLE: Table = GatewayTokenOwner.__table__  # type: ignore[assignment]


async def claim_token(
    s: AsyncSession, *, gateway: str, token: str, account_id: str, now: int
) -> bool:
    """Make ``account_id`` the owner of ``token`` in the caller's transaction, unless it has
    an owner already. True if the account owns it afterwards. A token another account owns
    (which a gateway issuing fresh tokens never hands out twice) is logged, not taken."""
    dialect = s.bind.dialect.name if s.bind is not None else "sqlite"
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await s.execute(
        dialect_insert(_TABLE)
        .values(gateway=gateway, token=token, account_id=account_id, created_us=now)
        .on_conflict_do_nothing(index_elements=["gateway", "token"])
    )
    owner = (
        await s.execute(
            select(GatewayTokenOwner.account_id).where(
                GatewayTokenOwner.gateway == gateway, GatewayTokenOwner.token == token
            )
        )
    ).scalar_one()
    if owner != account_id:
        log.warning("a %s token the gateway issued is already another account's", gateway)
        return False
    return True
