"""``paymux users``: the dashboard's users (issue 15).

``paymux users create --email you@example.com`` makes a user (the first one: an admin). The
password is asked for twice without echo (or read from stdin with ``--password-stdin``);
the TOTP secret is made here, stored sealed (PAYMUX_ENCRYPTION_KEYS), and its provisioning
URI (``otpauth://...``, for an authenticator app) printed once to stdout: it is never logged
and cannot be shown again. ``paymux users list`` shows e-mails and roles. ``paymux users
disable EMAIL`` stops a user signing in; ``paymux users reset-totp EMAIL`` gives them a new
TOTP secret (printed once, as by ``create``). Both end the user's sessions.

``login_hint``: the line ``paymux serve`` prints about signing in to the dashboard (no
secret in it).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.console import Console

from paymux.config import Settings, get_settings

__all__ = ["login_hint", "users_cli"]

users_cli = typer.Typer(
    help="Dashboard users: create, list, disable, reset-totp.", no_args_is_help=True
)
console = Console(soft_wrap=True, markup=False, highlight=False)
errors = Console(stderr=True, soft_wrap=True, markup=False)


@users_cli.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's e-mail (their sign-in name).")],
    role: Annotated[str, typer.Option(help="admin, developer, support or view_only.")] = "admin",
    account: Annotated[
        str | None, typer.Option(help="The account the user works on; default: acct_default.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a dashboard user and print their TOTP provisioning URI once."""
    from paymux.domain.errors import PaymuxError
    from paymux.root import Paymux
    from paymux.services.accounts import DEFAULT_ACCOUNT
    from paymux.services.dashboard_users import DashboardUsers

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def run() -> tuple[str, str] | str:
        app = Paymux(get_settings())
        try:
            account_id = account or DEFAULT_ACCOUNT
            if account_id == DEFAULT_ACCOUNT:
                await app.accounts.ensure_account(DEFAULT_ACCOUNT)
            elif not await app.accounts.exists(account_id):
                return f"no account {account_id}: check the id (`paymux keys list`)"
            users = DashboardUsers(app.ctx, app.connections.keyring)
            new = await users.create(
                email=email, password=password, role=role, account_id=account_id
            )
            return new.id, new.provisioning_uri
        finally:
            await app.close()

    try:
        made = asyncio.run(run())
    except PaymuxError as exc:
        detail = f" ({exc.param})" if exc.param else ""
        errors.print(f"{exc.code}: {exc.message}{detail}")
        raise typer.Exit(1) from None
    if isinstance(made, str):
        errors.print(made)
        raise typer.Exit(2)
    user_id, uri = made
    console.print(f"user {user_id} ({role})")
    console.print(
        "Add this to your authenticator app (shown once; scan it as a QR code or paste it):"
    )
    print(uri)


@users_cli.command("list")
def users_list() -> None:
    """E-mail, role and state of every dashboard user."""
    from paymux.root import Paymux
    from paymux.services.dashboard_users import DashboardUsers

    async def run() -> list[tuple[str, str, str, bool]]:
        app = Paymux(get_settings())
        try:
            return await DashboardUsers(app.ctx, app.connections.keyring).summary()
        finally:
            await app.close()

    for user_id, address, role, disabled in asyncio.run(run()):
        console.print(f"{user_id}  {address}  {role}{'  (disabled)' if disabled else ''}")


def _change(email: str, reset: bool) -> str | None:
    """Disable the user of ``email`` (or give them a new TOTP secret: its URI is returned);
    exits 1 with the error when there is no such user."""
    from paymux.domain.errors import PaymuxError
    from paymux.root import Paymux
    from paymux.services.dashboard_users import DashboardUsers

    async def run() -> str | None:
        app = Paymux(get_settings())
        try:
            users = DashboardUsers(app.ctx, app.connections.keyring)
            if reset:
                return (await users.reset_totp(email)).provisioning_uri
            await users.disable(email)
            return None
        finally:
            await app.close()

    try:
        return asyncio.run(run())
    except PaymuxError as exc:
        errors.print(f"{exc.code}: {exc.message}")
        raise typer.Exit(1) from None


@users_cli.command("disable")
def users_disable(email: Annotated[str, typer.Argument(help="The user's e-mail.")]) -> None:
    """Stop a dashboard user signing in, and end their sessions."""
    _change(email, reset=False)
    console.print(f"disabled {email.strip().lower()}; their sessions are ended")


@users_cli.command("reset-totp")
def users_reset_totp(email: Annotated[str, typer.Argument(help="The user's e-mail.")]) -> None:
    """Give a dashboard user a new TOTP secret (printed once) and end their sessions."""
    uri = _change(email, reset=True)
    console.print(
        "New TOTP secret: add this to the authenticator app (shown once; the old code "
        "no longer works):"
    )
    print(uri)


def login_hint(settings: Settings, base: str) -> str:
    """How to sign in to the dashboard (``paymux serve`` prints it)."""
    from paymux.root import Paymux
    from paymux.services.dashboard_users import DashboardUsers

    async def count() -> int:
        app = Paymux(settings)
        try:
            return await DashboardUsers(app.ctx, app.connections.keyring).count()
        finally:
            await app.close()

    line = f"Dashboard: {base}/dashboard"
    if asyncio.run(count()) == 0:
        keys = "" if settings.encryption_keys else "set PAYMUX_ENCRYPTION_KEYS, then "
        line += (
            f"  (no users yet: {keys}run `paymux users create --email you@example.com` "
            "and add the printed otpauth:// URI to an authenticator app)"
        )
    else:
        line += "  (sign in with your e-mail, password and authenticator code)"
    return line
