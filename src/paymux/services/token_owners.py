"""Owner rows for gateway tokens a gateway issues later in a payment method's life.

A token belongs to the account that first recorded it (``gateway_token_owners``, migration
0010; services/customers.py claims the token a payment method is made from). A gateway can
also hand out a token of its own afterwards: a vault token or card on file when a card is
saved (a SetupIntent, an attach: Square's ``ccof:``), or a payment method it makes with the
payer (a PayPal wallet saved by a SetupIntent). Those are claimed here, in the transaction
that records them on the payment method, so the owner row and the payment method commit
together and another account naming the token is refused by the owner check, not only by the
older look-up of payment methods (which a token no longer on any payment method escapes).

A token the gateway hands back that another account already owns (two accounts sharing one
gateway account, a provider that de-duplicates saved cards) is not the caller's:
``claim_token_or_refuse`` answers 400 ``payment_method_unexpected_state`` (``not_this_accounts``),
and the caller's transaction (which would have recorded the token on its object) rolls back.
The refusal names only what the caller itself named (its own payment method), never the token
the gateway answered with: that token is the other account's, and the caller never sent it,
so it appears in no answer, row, event or log line of the caller's.
"""

from __future__ import annotations

import logging

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.storage.models import GatewayTokenOwner

__all__ = ["claim_token", "claim_token_or_refuse", "not_this_accounts"]

log = logging.getLogger(__name__)

_TABLE: Table = GatewayTokenOwner.__table__  # type: ignore[assignment]


async def claim_token(
    s: AsyncSession, *, gateway: str, token: str, account_id: str, now: int
) -> bool:
    """Make ``account_id`` the owner of ``token`` in the caller's transaction, unless it has
    an owner already. True if the account owns it afterwards; False (and nothing written) if
    another account owns it, which a gateway issuing fresh tokens never hands out twice."""
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


def not_this_accounts(gateway: str, named: str | None) -> PaymuxError:
    """The refusal of a save the gateway answered with another account's token: 400
    ``payment_method_unexpected_state`` on ``payment_method`` (as a gateway's refusal to save
    one is), naming only ``named``, the caller's own payment method (None: one the gateway
    made), never the token the gateway answered with."""
    which = f" {named}" if named else ""
    return PaymuxError.of(
        "payment_method_unexpected_state",
        f"The {gateway} gateway saved the payment method{which} under a token this account "
        "cannot use, so it was not saved. Use another payment method.",
        param="payment_method",
    )


async def claim_token_or_refuse(
    s: AsyncSession, *, gateway: str, token: str, account_id: str, now: int, named: str
) -> None:
    """``claim_token``, raising ``not_this_accounts(gateway, named)`` when another account owns
    ``token``: the caller lets it end its transaction, so nothing records the token on its
    object. ``named``: the caller's own payment method, the only thing the refusal names."""
    if not await claim_token(s, gateway=gateway, token=token, account_id=account_id, now=now):
        raise not_this_accounts(gateway, named)
