"""The ``paymux`` command: serve, worker, migrate, keys create, demo."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from paymux.config import Settings, get_settings

__all__ = ["main"]

cli = typer.Typer(help="paymux: one payments integration for every gateway.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
webhooks_cli = typer.Typer(help="The inbound webhook inbox: list, replay.", no_args_is_help=True)
cli.add_typer(webhooks_cli, name="webhooks")
console = Console(soft_wrap=True)


def _setup_logging(settings: Settings) -> None:
    from paymux.security import configure_logging

    configure_logging(settings.log_level, json_output=settings.log_json)


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema (Alembic)."""
    from paymux.storage.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    console.print(f"[green]database is up to date[/green] ({_safe_url(settings.database_url)})")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _bootstrap_key(settings: Settings) -> str | None:
    """A key to print at start-up when none exists yet (shown once, stored hashed)."""
    from paymux.services import Paymux
    from paymux.services.accounts import DEFAULT_ACCOUNT

    app = Paymux(settings)
    try:
        await app.accounts.ensure_account(DEFAULT_ACCOUNT)
        if settings.api_key is not None or await app.accounts.has_keys():
            return None
        return (await app.accounts.create_key(DEFAULT_ACCOUNT)).key
    finally:
        await app.close()


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Run the job worker in this process (default: PAYMUX_RUN_WORKER, else true).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the API server (with its worker, unless --no-worker or PAYMUX_RUN_WORKER=false)."""
    import uvicorn

    from paymux.api.app import create_app
    from paymux.storage.migrate import upgrade

    overrides: dict[str, Any] = {} if worker is None else {"run_worker": worker}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = get_settings().model_copy(update=overrides)
    _setup_logging(settings)
    upgrade(settings.database_url)
    key = asyncio.run(_bootstrap_key(settings))
    base = settings.base_url()
    console.print(
        f"[bold]paymux[/bold] on {base}  (database {_safe_url(settings.database_url)}, "
        f"gateway {settings.default_gateway})"
    )
    if key:
        console.print(
            f"Your test API key (shown once, stored hashed):\n  [bold]{key}[/bold]\n"
            f"  export PAYMUX_KEY={key}"
        )
    elif settings.api_key is not None:
        console.print("Using the API key from PAYMUX_API_KEY.")
    else:
        console.print("API keys exist already; make another with `paymux keys create`.")
    console.print(
        f"API docs: {base}/docs   OpenAPI: {base}/openapi.json   "
        f"Sandbox card form: {base}/sandbox/elements"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=True,
    )


@cli.command("worker")
def worker_command() -> None:
    """Run the job worker alone (several may share one PostgreSQL database)."""
    from paymux.jobs.worker import Worker
    from paymux.services import Paymux

    settings = get_settings()
    _setup_logging(settings)

    async def run() -> None:
        app = Paymux(settings)
        try:
            await Worker(app).run()
        finally:
            await app.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


@keys_cli.command("create")
def keys_create(
    account: Annotated[str | None, typer.Option(help="Account id; default: acct_default.")] = None,
    new_account: Annotated[bool, typer.Option(help="Make a new account for the key.")] = False,
) -> None:
    """Create an API key and print it once."""
    from paymux.services import Paymux
    from paymux.services.accounts import DEFAULT_ACCOUNT

    async def run() -> tuple[str, str]:
        app = Paymux(get_settings())
        try:
            new = await app.accounts.create_key(None if new_account else account or DEFAULT_ACCOUNT)
            return new.account_id, new.key
        finally:
            await app.close()

    account_id, key = asyncio.run(run())
    console.print(f"account {account_id}")
    print(key)


@webhooks_cli.command("list")
def webhooks_list(
    status: Annotated[str | None, typer.Option(help="received, applied, ignored or dead.")] = None,
    gateway: Annotated[str | None, typer.Option(help="Only this gateway's events.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
) -> None:
    """List stored gateway events, newest first."""
    from paymux.services import Paymux

    async def run() -> list[dict[str, Any]]:
        app = Paymux(get_settings())
        try:
            return await app.webhooks.list_page(status=status, gateway=gateway, limit=limit)
        finally:
            await app.close()

    rows = asyncio.run(run())
    table = Table(title=f"webhook events ({len(rows)})", title_justify="left")
    for col in ("id", "gateway", "event_id", "type", "status", "error"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["id"], row["gateway"], row["event_id"], row["type"], row["status"],
                      (row["error"] or "")[:60])
    console.print(table)


@webhooks_cli.command("replay")
def webhooks_replay(
    event_id: Annotated[str | None, typer.Argument(help="Inbox id (we_...) or event id.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Replay every dead event.")] = False,
) -> None:
    """Queue stored events to be applied again (they stay idempotent)."""
    from paymux.services import Paymux

    if not event_id and not all_dead:
        raise typer.BadParameter("give an EVENT_ID or --all-dead")

    async def run() -> list[str]:
        app = Paymux(get_settings())
        try:
            return await app.webhooks.replay(event_id=event_id, all_dead=all_dead)
        finally:
            await app.close()

    replayed = asyncio.run(run())
    console.print(f"replayed {len(replayed)} event(s)")
    for inbox_id in replayed:
        print(inbox_id)
    if event_id and not replayed:
        raise typer.Exit(1)


@cli.command()
def demo() -> None:
    """A scripted tour against an in-process service: one table per scenario."""
    asyncio.run(_demo())


async def _demo() -> None:
    from paymux.domain.errors import PaymuxError
    from paymux.gateways.signing import sign_header
    from paymux.jobs.worker import Worker
    from paymux.services import Paymux
    from paymux.services.payments import CreateParams
    from paymux.storage.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = Settings(
            database_url=url, sandbox_db=str(Path(tmp) / "sandbox.db"), run_worker=False
        )
        app = Paymux(settings)
        account = (await app.accounts.create_key()).account_id
        sandbox = app.ctx.gateways.sandbox()
        assert sandbox is not None
        worker = Worker(app)

        def show(title: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
            table = Table(title=title, title_justify="left")
            for col in (
                "step",
                "status",
                "amount",
                "capturable",
                "received",
                "refunded",
                "error / next action",
            ):
                table.add_column(col)
            for step, obj in rows:
                err = obj.get("last_payment_error") or obj.get("error") or {}
                action = obj.get("next_action") or {}
                note = (
                    f"{err.get('code')} / {err.get('decline_code')} -> {err.get('action')}"
                    if err
                    else action.get("type", "")
                )
                table.add_row(
                    step,
                    str(obj.get("status", "")),
                    str(obj.get("amount", "")),
                    str(obj.get("amount_capturable", "")),
                    str(obj.get("amount_received", "")),
                    str(obj.get("amount_refunded", "")),
                    note,
                )
            console.print(table)

        async def confirm(pi: dict[str, Any], pm: str) -> dict[str, Any]:
            try:
                return await app.payments.confirm(account, pi["id"], payment_method=pm)
            except PaymuxError as exc:
                return dict(exc.extra.get("payment_intent") or {"error": exc.to_dict()})

        pi = await app.payments.create(account, CreateParams(amount=2000, currency="usd"))
        done = await confirm(pi, "pm_card_visa")
        show("1. A successful payment (pm_card_visa)", [("create", pi), ("confirm", done)])

        pi = await app.payments.create(account, CreateParams(amount=2000, currency="usd"))
        done = await confirm(pi, "pm_card_chargeDeclinedInsufficientFunds")
        show("2. A decline (insufficient funds)", [("create", pi), ("confirm", done)])

        pi = await app.payments.create(account, CreateParams(amount=4500, currency="eur"))
        challenged = await confirm(pi, "pm_card_threeDSecure2Required")
        charge_id = challenged["gateway_reference"]
        charge = sandbox.processor.complete_3ds(charge_id, True)
        event = {
            "id": f"evt_demo_{charge_id}",
            "type": "charge.updated",
            "data": {"object": charge},
        }
        body = json.dumps(event).encode()
        await app.webhooks.receive(
            "sandbox",
            {"paymux-sandbox-signature": sign_header(body, sandbox.webhook_secrets[0])},
            body,
        )
        await worker.run_once()
        after = await app.payments.retrieve(account, pi["id"])
        show(
            "3. 3-D Secure: challenge, approve, signed webhook",
            [("confirm", challenged), ("payer approves + webhook", after)],
        )

        pi = await app.payments.create(
            account, CreateParams(amount=10000, currency="usd", capture_method="manual")
        )
        held = await confirm(pi, "pm_card_mastercard")
        captured = await app.payments.capture(account, pi["id"], 7500)
        show(
            "4. Manual capture of less than authorized",
            [("confirm", held), ("capture 7500", captured)],
        )

        refund = await app.refunds.create(account, pi["id"], 2500, "requested_by_customer")
        after = await app.payments.retrieve(account, pi["id"])
        show("5. A partial refund", [(f"refund {refund['id'][:10]}.. {refund['status']}", after)])
        events, _ = await app.events.list_page(
            account, limit=100, starting_after=None, ending_before=None
        )
        console.print(
            f"{len(events)} events written, e.g. " + ", ".join(sorted({e["type"] for e in events}))
        )
        await app.close()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
