"""Tax rates (``/v1/tax_rates``): a percentage (exact, up to 4 decimal places), inclusive or
exclusive. Its percentage and inclusiveness never change once made (invoices already taxed by
it must stay explainable); archive it (``active`` false) and make a new one instead."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from paymux.billing.catalog_checks import decimal_rate
from paymux.billing.catalog_rows import tax_rate_row
from paymux.billing.catalog_views import tax_rate_view
from paymux.domain.ids import new_id
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    merge_metadata,
    page_of,
    request_livemode,
)
from paymux.storage.models import TaxRate

__all__ = ["TaxRates"]

_UPDATABLE = (
    "display_name",
    "description",
    "active",
    "country",
    "state",
    "jurisdiction",
    "tax_type",
)


class TaxRates:
    ctx: Context

    async def create_tax_rate(self, account_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        now = self.ctx.now_us()
        percentage = decimal_rate(
            Decimal(p["percentage"]),
            "percentage",
            places=4,
            low=Decimal(0),
            high=Decimal(100),
            low_open=False,
        )
        async with self.ctx.db.write() as s:
            rate = TaxRate(
                id=new_id("txr"),
                account_id=account_id,
                livemode=request_livemode(),
                display_name=p["display_name"],
                description=p.get("description"),
                percentage=percentage,
                inclusive=p["inclusive"],
                active=p.get("active", True),
                country=None if p.get("country") is None else p["country"].upper(),
                state=p.get("state"),
                jurisdiction=p.get("jurisdiction"),
                tax_type=p.get("tax_type"),
                metadata_=p.get("metadata") or {},
                created_us=now,
            )
            s.add(rate)
            await s.flush()
            await emit(s, account_id, "tax_rate.created", tax_rate_view(rate), now)
            return tax_rate_view(rate)

    async def retrieve_tax_rate(self, account_id: str, tax_rate_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return tax_rate_view(await tax_rate_row(s, account_id, tax_rate_id, param="id"))

    async def update_tax_rate(
        self, account_id: str, tax_rate_id: str, p: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            rate = await tax_rate_row(s, account_id, tax_rate_id, param="id")
            for name in _UPDATABLE:
                value = p.get(name)
                if value is None:
                    continue
                if name == "country" and value:
                    value = value.upper()
                if name == "display_name" or isinstance(value, bool):
                    setattr(rate, name, value)
                else:
                    setattr(rate, name, value or None)  # "" unsets, as on Stripe
            if p.get("metadata") is not None:
                rate.metadata_ = merge_metadata(rate.metadata_, p["metadata"])
            await emit(s, account_id, "tax_rate.updated", tax_rate_view(rate), now)
            return tax_rate_view(rate)

    async def list_tax_rates(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        active: bool | None = None,
        inclusive: bool | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            TaxRate,
            account_id,
            tax_rate_view,
            None if active is None else TaxRate.active.is_(active),
            None if inclusive is None else TaxRate.inclusive.is_(inclusive),
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )
