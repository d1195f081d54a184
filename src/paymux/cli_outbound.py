"""``paymux webhooks deliver``: send events to a merchant's webhook endpoint by hand (one
event again, or every event of a time range), as the API's resend and replay do; with
``--now`` the deliveries are made by this command instead of waiting for a worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from paymux.config import get_settings

__all__ = ["add_outbound_commands"]

console = Console(soft_wrap=True, markup=False)
errors = Console(stderr=True, soft_wrap=True, markup=False)


def _epoch(value: str | None, option: str) -> int | None:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("unix seconds or an ISO 8601 time", param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def add_outbound_commands(app: typer.Typer) -> None:
    @app.command("deliver")
    def deliver(
        endpoint: Annotated[str, typer.Argument(help="The webhook endpoint (we_...).")],
        event: Annotated[
            str | None, typer.Option(help="One event to send again (evt_...).")
        ] = None,
        since: Annotated[
            str | None, typer.Option(help="Replay events created at or after (seconds or ISO).")
        ] = None,
        until: Annotated[
            str | None, typer.Option(help="Replay events created at or before (seconds or ISO).")
        ] = None,
        now: Annotated[
            bool, typer.Option("--now", help="Deliver here and now instead of by the worker.")
        ] = False,
    ) -> None:
        """Send one event (--event) or a time range (--since/--until) to an endpoint."""
        if event is not None and (since is not None or until is not None):
            raise typer.BadParameter("either --event or --since/--until", param_hint="--event")
        gte, lte = _epoch(since, "--since"), _epoch(until, "--until")
        from paymux.domain.errors import PaymuxError
        from paymux.outbound.delivery import DeliveryRunner
        from paymux.outbound.endpoints import account_of
        from paymux.services import Paymux

        async def run() -> dict[str, Any]:
            app = Paymux(get_settings())
            try:
                account = await account_of(app.ctx, endpoint)
                hooks = app.webhook_endpoints
                if event is not None:
                    result = await hooks.resend(account, endpoint, event)
                else:
                    result = await hooks.replay(account, endpoint, gte, lte)
                if now:
                    runner = DeliveryRunner(app.ctx, app.webhook_endpoints)
                    try:
                        await runner.drain()
                    finally:
                        await runner.client.aclose()
                return result
            finally:
                await app.close()

        try:
            result = asyncio.run(run())
        except PaymuxError as exc:
            errors.print(f"error: {exc}" + (f" ({exc.param})" if exc.param else ""))
            raise typer.Exit(1) from None
        where = "delivered" if now else "queued for the worker"
        console.print(f"{result['queued']} event(s) to {endpoint}: {where}")
