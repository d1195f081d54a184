"""``paymux webhooks deliver``: send events to a merchant's webhook endpoint by hand (one
event again, or every event of a time range), as the API's resend and replay do; with
``--now`` the deliveries are made by this command instead of waiting for a worker.

``paymux listen --forward-to URL`` (like ``stripe listen``): while a developer builds a
webhook handler, the account's new events are forwarded to a local URL, signed as a test
endpoint's deliveries are (``outbound.listen``), one line printed per event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from paymux.config import get_settings

__all__ = ["add_listen_command", "add_outbound_commands", "add_prune_command"]

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
    add_prune_command(app)

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
        from paymux.root import Paymux

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


def add_prune_command(app: typer.Typer) -> None:
    @app.command("prune-attempts")
    def prune_attempts_command(
        older_than_days: Annotated[
            float,
            typer.Option(
                envvar="PAYMUX_WEBHOOK_ATTEMPT_RETENTION_DAYS",
                help="Delete delivery attempts older than this many days.",
            ),
        ] = 30.0,
    ) -> None:
        """Delete old outbound delivery attempts (run it daily, e.g. from cron)."""
        if older_than_days < 0:
            raise typer.BadParameter("must not be negative", param_hint="--older-than-days")
        from paymux.outbound.prune import prune_attempts
        from paymux.root import Paymux

        async def run() -> int:
            app = Paymux(get_settings())
            try:
                return await prune_attempts(app.ctx, older_than_days)
            finally:
                await app.close()

        deleted = asyncio.run(run())
        console.print(f"{deleted} delivery attempt(s) older than {older_than_days:g} days deleted")


def add_listen_command(app: typer.Typer) -> None:
    @app.command("listen")
    def listen(
        forward_to: Annotated[
            str, typer.Option("--forward-to", help="Where to POST each event (a local URL).")
        ],
        events: Annotated[
            str | None, typer.Option(help="Only these event types (comma-separated).")
        ] = None,
        api_key: Annotated[
            str | None,
            typer.Option(envvar="PAYMUX_API_KEY", help="The account's secret key (sk_test_...)."),
        ] = None,
        api_base: Annotated[
            str, typer.Option(envvar="PAYMUX_API_BASE", help="The paymux API to listen to.")
        ] = "http://127.0.0.1:8000",
        secret: Annotated[
            str | None, typer.Option(help="Sign with this whsec_ secret (default: a new one).")
        ] = None,
        scheme: Annotated[str, typer.Option(help="standard or stripe signatures.")] = "standard",
        interval: Annotated[float, typer.Option(help="Seconds between looks.")] = 0.5,
        max_events: Annotated[
            int | None, typer.Option(help="Stop after forwarding this many events.")
        ] = None,
    ) -> None:
        """Forward the account's new events to a local URL, signed (like `stripe listen`)."""
        from paymux.outbound.listen import Listener, ListenError
        from paymux.outbound.signing import SCHEMES, new_secret

        if not api_key:
            raise typer.BadParameter("an API key is needed", param_hint="--api-key")
        if scheme not in SCHEMES:
            raise typer.BadParameter("standard or stripe", param_hint="--scheme")
        try:
            listener = Listener(
                api_base=api_base,
                api_key=api_key,
                forward_to=forward_to,
                types=[t.strip() for t in events.split(",") if t.strip()] if events else None,
                secret=secret or new_secret(),
                scheme=scheme,
            )
        except ListenError as exc:
            raise typer.BadParameter(str(exc)) from None

        async def run() -> None:
            async for line in listener.forward(interval=interval, max_events=max_events):
                console.print(line)

        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            pass
        except ListenError as exc:
            errors.print(f"error: {exc}")
            raise typer.Exit(1) from None
