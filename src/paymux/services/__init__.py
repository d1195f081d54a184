"""Use cases. Each opens its own transactions, never calls a gateway inside one, and writes
an event with every state change. ``Paymux`` is the library face: the same services the
HTTP API is a thin shell over."""

from __future__ import annotations

from paymux.config import Settings
from paymux.domain.clock import Clock, SystemClock
from paymux.gateways.registry import GatewayRegistry, build_registry
from paymux.services.accounts import AccountsService
from paymux.services.context import Context
from paymux.services.customers import CustomersService
from paymux.services.events import EventsService
from paymux.services.idempotency import IdempotencyService
from paymux.services.payments import PaymentsService
from paymux.services.refunds import RefundsService
from paymux.storage.db import Database
from paymux.storage.models import GatewayAttempt

__all__ = ["Paymux"]


class Paymux:
    """Everything paymux does, as one object: ``Paymux(settings)`` then ``.payments.create``."""

    def __init__(
        self,
        settings: Settings,
        *,
        gateways: GatewayRegistry | None = None,
        clock: Clock | None = None,
        database: Database | None = None,
    ) -> None:
        self.settings = settings
        self.ctx = Context(
            db=database or Database(settings.database_url),
            gateways=gateways if gateways is not None else build_registry(settings),
            settings=settings,
            clock=clock or SystemClock(),
        )
        self.accounts = AccountsService(self.ctx)
        self.payments = PaymentsService(self.ctx)
        self.refunds = RefundsService(self.ctx)
        self.customers = CustomersService(self.ctx)
        self.events = EventsService(self.ctx)
        self.idempotency = IdempotencyService(self.ctx)
        from paymux.webhooks.inbound import InboundWebhooks

        self.webhooks = InboundWebhooks(self.ctx, self.payments, self.refunds)

    async def settle_attempt(self, attempt_id: str) -> None:
        """Settle an interrupted gateway call, whatever its object (job ``settle_attempt``)."""
        async with self.ctx.db.read() as s:
            attempt = await s.get(GatewayAttempt, attempt_id)
        if attempt is None or attempt.status != "pending":
            return
        if attempt.operation == "refund":
            await self.refunds.settle_attempt(attempt)
        else:
            await self.payments.settle_attempt(attempt_id)

    async def close(self) -> None:
        for gateway in self.ctx.gateways.values():
            await gateway.aclose()
        await self.ctx.db.dispose()
