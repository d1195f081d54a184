"""``paymux connections``: an account's gateway connections from the command line.

Credential values are write-only. Give them as ``--credential NAME=VALUE``, or, to keep a
secret out of the shell's history and the process list, ``--credential NAME=env:VARIABLE``
(read from that environment variable).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from paymux.config import get_settings

__all__ = ["connections_cli"]

connections_cli = typer.Typer(
    help="Gateway connections per account: create, list, update, test, disable, delete, rewrap.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True, markup=False)
errors = Console(stderr=True, soft_wrap=True, markup=False)
T = TypeVar("T")
DEFAULT_ACCOUNT = "acct_default"

AccountOpt = Annotated[str, typer.Option(help="The account; default: acct_default.")]
CredentialOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--credential",
        help="NAME=VALUE, or NAME=env:VARIABLE to read the value from the environment. "
        "Repeat for each field.",
    ),
]
CurrencyOpt = Annotated[
    list[str] | None, typer.Option("--currency", help="A currency it takes (repeat).")
]


def _credentials(items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{name or item!r}: use NAME=VALUE", param_hint="--credential")
        if value.startswith("env:"):
            variable = value.removeprefix("env:")
            if variable not in os.environ:
                raise typer.BadParameter(
                    f"{name}: the environment variable {variable} is not set",
                    param_hint="--credential",
                )
            value = os.environ[variable]
        out[name.strip()] = value
    return out


def _run(work: Callable[[Any], Awaitable[T]], *, audit: str | None = None) -> T:
    """Run ``work(app)`` with a Paymux on the configured database; a PaymuxError is printed
    as its message (exit 1), never with a traceback that could carry a value."""
    from paymux.domain.errors import PaymuxError
    from paymux.root import Paymux

    async def run() -> T:
        app = Paymux(get_settings())
        try:
            return await work(app)
        finally:
            await app.close()

    try:
        return asyncio.run(run())
    except PaymuxError as exc:
        errors.print(f"error: {exc}" + (f" ({exc.param})" if exc.param else ""))
        raise typer.Exit(1) from None


async def _audited(app: Any, account: str, action: str, view: dict[str, Any]) -> dict[str, Any]:
    await app.audit.record(
        account_id=account,
        actor="cli",
        action=action,
        object_type="connection",
        object_id=view["id"],
        livemode=bool(view.get("livemode")),
    )
    return view


def _show(view: dict[str, Any]) -> None:
    console.print(f"{view['id']}  {view['gateway']}  {'live' if view['livemode'] else 'test'}")
    console.print(f"webhook url: {view['webhook_url']}")
    for name, hint in sorted(view["credentials"].items()):
        console.print(f"  {name}: {hint}")


_FAILOVER_HELP = (
    "When this connection can't be reached at all (nothing was sent), a new payment that "
    "names no connection, gateway, payment method or customer goes to the next one."
)


@connections_cli.command("create")
def create(
    gateway: Annotated[str, typer.Option(help="sandbox, stripe, paypal, square, ...")],
    credential: CredentialOpt = None,
    account: AccountOpt = DEFAULT_ACCOUNT,
    live: Annotated[bool, typer.Option(help="A live-mode connection.")] = False,
    name: Annotated[str | None, typer.Option(help="A name to show.")] = None,
    currency: CurrencyOpt = None,
    priority: Annotated[int, typer.Option(help="Routing order: lowest first.")] = 0,
    failover: Annotated[bool, typer.Option(help=_FAILOVER_HELP)] = False,
) -> None:
    """Create a connection; prints its id and the webhook URL to register at the provider."""
    from paymux.services.connections import ConnectionParams

    params = ConnectionParams(
        gateway=gateway,
        credentials=_credentials(credential) or {},
        livemode=live,
        name=name,
        currencies=currency or None,
        priority=priority,
        failover=failover,
    )

    async def work(app: Any) -> dict[str, Any]:
        view = await app.connections.create(account, params)
        return await _audited(app, account, "connection.create", view)

    _show(_run(work))


@connections_cli.command("list")
def list_(account: AccountOpt = DEFAULT_ACCOUNT) -> None:
    """The account's connections (credentials only as masked hints)."""

    async def work(app: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await app.connections.all(account)
        return rows

    rows = _run(work)
    table = Table(title=f"connections of {account} ({len(rows)})", title_justify="left")
    for col in ("id", "gateway", "mode", "source", "priority", "currencies", "disabled", "name"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["id"],
            row["gateway"],
            "live" if row["livemode"] else "test",
            row["source"],
            "-" if row["priority"] is None else str(row["priority"]),
            ",".join(row["currencies"] or []) or "all",
            "yes" if row["disabled"] else "no",
            row["name"] or "-",
        )
    console.print(table)


def _update(account: str, connection_id: str, action: str, **changes: Any) -> dict[str, Any]:
    from paymux.services.connections import ConnectionParams

    params = ConnectionParams(**changes)

    async def work(app: Any) -> dict[str, Any]:
        view = await app.connections.update(account, connection_id, params)
        return await _audited(app, account, action, view)

    return _run(work)


@connections_cli.command("update")
def update(
    connection_id: Annotated[str, typer.Argument(help="conn_...")],
    credential: CredentialOpt = None,
    account: AccountOpt = DEFAULT_ACCOUNT,
    name: Annotated[str | None, typer.Option()] = None,
    currency: CurrencyOpt = None,
    priority: Annotated[int | None, typer.Option()] = None,
    failover: Annotated[bool | None, typer.Option(help=_FAILOVER_HELP)] = None,
) -> None:
    """Change a connection: the credential fields given replace the stored ones."""
    _show(
        _update(
            account,
            connection_id,
            "connection.update",
            credentials=_credentials(credential),
            name=name,
            currencies=currency or None,
            priority=priority,
            failover=failover,
        )
    )


@connections_cli.command("test")
def check(
    connection_id: Annotated[str, typer.Argument(help="conn_... or conn_env_<gateway>")],
    account: AccountOpt = DEFAULT_ACCOUNT,
) -> None:
    """Check that its stored credentials work: one read-only call to the gateway (nothing
    moves). Exit 1, with the reason, when they don't."""

    async def work(app: Any) -> dict[str, Any]:
        result: dict[str, Any] = await app.connections.test(account, connection_id)
        error = result["error"] or {}
        await app.audit.record(
            account_id=account,
            actor="cli",
            action="connection.test",
            object_type="connection",
            object_id=connection_id,
            livemode=bool(result.get("livemode")),
            details={"status": result["status"], **({"code": error["code"]} if error else {})},
        )
        return result

    result = _run(work)
    if not result["ok"]:
        errors.print(f"error: {result['error']['message']} ({result['error']['code']})")
        raise typer.Exit(1)
    console.print(f"{connection_id}: ok, the {result['gateway']} gateway accepted its credentials")


@connections_cli.command("disable")
def disable(
    connection_id: Annotated[str, typer.Argument(help="conn_...")],
    account: AccountOpt = DEFAULT_ACCOUNT,
) -> None:
    """Take no new payments through it (refunds and webhooks of its payments still work)."""
    _update(account, connection_id, "connection.disable", disabled=True)
    console.print(f"disabled {connection_id}")


@connections_cli.command("enable")
def enable(
    connection_id: Annotated[str, typer.Argument(help="conn_...")],
    account: AccountOpt = DEFAULT_ACCOUNT,
) -> None:
    """Route new payments through it again."""
    _update(account, connection_id, "connection.enable", disabled=False)
    console.print(f"enabled {connection_id}")


@connections_cli.command("delete")
def delete(
    connection_id: Annotated[str, typer.Argument(help="conn_...")],
    account: AccountOpt = DEFAULT_ACCOUNT,
) -> None:
    """Delete a connection nothing has run through yet (otherwise: disable it)."""

    async def work(app: Any) -> dict[str, Any]:
        view = await app.connections.delete(account, connection_id)
        return await _audited(app, account, "connection.delete", view)

    _run(work)
    console.print(f"deleted {connection_id}")


@connections_cli.command("rewrap")
def rewrap() -> None:
    """Re-seal every stored credential's data key with the first key of
    PAYMUX_ENCRYPTION_KEYS (step 2 of a key rotation, docs/security.md)."""

    async def work(app: Any) -> tuple[int, int, list[str]]:
        result: tuple[int, int, list[str]] = await app.connections.rewrap()
        return result

    done, already, failed = _run(work)
    console.print(f"rewrapped {done}, already under the primary key {already}")
    if failed:
        errors.print(f"could not open (left as they are): {', '.join(failed)}")
        raise typer.Exit(1)


@connections_cli.command("keygen")
def keygen(
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-12.")],
) -> None:
    """Print a new PAYMUX_ENCRYPTION_KEYS entry (id:base64 of 32 random bytes)."""
    from paymux.security.envelope import generate_key_entry

    print(generate_key_entry(key_id))
