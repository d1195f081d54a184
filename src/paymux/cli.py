"""The ``paymux`` command: serve, worker, migrate, keys create, webhooks, jobs, reconcile,
demo."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from paymux import heap
from paymux.cli_connections import connections_cli
from paymux.cli_outbound import add_listen_command, add_outbound_commands
from paymux.cli_users import login_hint, users_cli
from paymux.config import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn
    from sqlalchemy.ext.asyncio import AsyncSession

    from paymux.root import Paymux
    from paymux.services.reconcile import ReconcileReport

__all__ = ["main"]

cli = typer.Typer(help="paymux: one payments integration for every gateway.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
webhooks_cli = typer.Typer(help="The inbound webhook inbox: list, replay.", no_args_is_help=True)
cli.add_typer(webhooks_cli, name="webhooks")
add_outbound_commands(webhooks_cli)  # paymux webhooks deliver (outbound)
add_listen_command(cli)  # paymux listen --forward-to (outbound)
jobs_cli = typer.Typer(help="The job queue: list jobs, retry dead ones.", no_args_is_help=True)
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(connections_cli, name="connections")
cli.add_typer(users_cli, name="users")  # dashboard users (issue 15)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")
log = logging.getLogger("paymux.cli")


def _setup_logging(settings: Settings) -> None:
    from paymux.security import configure_logging

    configure_logging(settings.log_level, json_output=settings.log_json)


@cli.command()
def migrate(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Change nothing: exit 1 if migrations are pending (a deploy pipeline's gate), "
            "0 if the schema is current.",
        ),
    ] = False,
) -> None:
    """Create or upgrade the database schema (Alembic), and say which it did."""
    from paymux.observability.health import head_revision, known_revisions
    from paymux.storage.migrate import current_revision, upgrade

    settings = get_settings()
    url = settings.database_url
    before = current_revision(url)
    if check:
        head = head_revision()
        if before is not None and before != head and before not in known_revisions():
            console.print(
                f"the schema is newer than this release (revision {before}; this release's "
                f"newest is {head}): nothing pending",
                markup=False,
            )
            return
        if before != head:
            errors.print(
                f"migrations pending: the schema is at revision {before or '(none)'}, this "
                f"release needs {head}; run `paymux migrate` ({_safe_url(url)})",
                markup=False,
            )
            raise typer.Exit(1)
        console.print(f"the schema is current (revision {head})")
        return
    upgrade(url)
    after = current_revision(url)
    if before is None:
        done = f"created the schema at revision {after}"
    elif before != after:
        done = f"upgraded the schema from revision {before} to {after}"
    else:
        done = f"the schema is already at revision {after}"
    console.print(f"[green]{done}[/green] ({_safe_url(url)})")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _bootstrap_key(settings: Settings) -> str | None:
    """A key to print at start-up when none exists yet (shown once, stored hashed)."""
    from paymux.root import Paymux
    from paymux.services.accounts import DEFAULT_ACCOUNT

    app = Paymux(settings)
    try:
        await app.accounts.ensure_account(DEFAULT_ACCOUNT)
        if settings.api_key is not None:
            # Here, once, before any API process starts: N processes each taking it at start-up
            # would race to insert the same row.
            await app.accounts.register_key(DEFAULT_ACCOUNT, settings.api_key.get_secret_value())
            return None
        if await app.accounts.has_keys():
            return None
        return (await app.accounts.create_key(DEFAULT_ACCOUNT)).key
    finally:
        await app.close()


def _bind_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host``:``port`` (bound as uvicorn binds it, then
    let go at once), or None if it can."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {host}: {exc.strerror or exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use"
            return f"cannot listen on port {port} on {host}: {exc.strerror or exc}"
    return None


def _event_loop_and_parser() -> tuple[Literal["uvloop", "asyncio"], Literal["httptools", "h11"]]:
    """uvloop and httptools (dependencies: ``uvicorn[standard]``) where they can be imported
    (uvloop has no Windows build), else asyncio and h11."""
    loop: Literal["uvloop", "asyncio"] = "asyncio"
    http: Literal["httptools", "h11"] = "h11"
    if importlib.util.find_spec("uvloop") is not None:
        loop = "uvloop"
    if importlib.util.find_spec("httptools") is not None:
        http = "httptools"
    return loop, http


def _workers_refusal(workers: int, database_url: str) -> str | None:
    """Why ``serve --workers N`` cannot run on this database, or None if it can.

    Several API processes are for PostgreSQL. On SQLite each process would count rate limits
    in its own memory (N times the limit), and one writer at a time leaves nothing to gain."""
    from sqlalchemy.engine import make_url

    if workers > 1 and make_url(database_url).get_backend_name() == "sqlite":
        return (
            f"--workers {workers} needs PostgreSQL (PAYMUX_DATABASE_URL=postgresql+asyncpg://...): "
            "on SQLite each process would count rate limits on its own, and SQLite takes one "
            "writer at a time. Run one process (--workers 1) on SQLite."
        )
    return None


def _flag_environment(overrides: dict[str, Any]) -> dict[str, str]:
    """The PAYMUX_* variables that say what ``overrides`` (from ``serve``'s flags) say."""
    env: dict[str, str] = {}
    for name, value in overrides.items():
        env[f"PAYMUX_{name.upper()}"] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    return env


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
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="API processes sharing the port (uvicorn workers); more than 1 needs "
            "PostgreSQL. Each runs the job worker too unless --no-worker: see docs/operations.md.",
        ),
    ] = 1,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            help="Serve TLS with this PEM certificate (chain); with --ssl-keyfile "
            "(default: PAYMUX_SSL_CERTFILE).",
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(help="The certificate's PEM private key (default: PAYMUX_SSL_KEYFILE)."),
    ] = None,
) -> None:
    """Run the API server (with its worker, unless --no-worker or PAYMUX_RUN_WORKER=false)."""
    import uvicorn

    from paymux.storage.migrate import upgrade_if_behind

    overrides: dict[str, Any] = {} if worker is None else {"run_worker": worker}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if ssl_certfile:
        overrides["ssl_certfile"] = str(ssl_certfile)
    if ssl_keyfile:
        overrides["ssl_keyfile"] = str(ssl_keyfile)
    settings = get_settings().model_copy(update=overrides)
    refusal = _workers_refusal(workers, settings.database_url) or _tls_refusal(settings)
    if refusal:
        errors.print(refusal, markup=False)
        raise typer.Exit(2)
    _setup_logging(settings)
    # Before anything is printed (or a key made, shown once): a port taken is a plain error.
    problem = _bind_problem(settings.host, settings.port)
    if problem:
        errors.print(problem, markup=False)
        raise typer.Exit(1)
    # Alembic runs only when the schema is behind (or ahead: a newer release's), not at every
    # start of every API process: at head, the check is one SELECT of alembic_version.
    upgrade_if_behind(settings.database_url)
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
    console.print(login_hint(settings, base), markup=False)
    loop, http = _event_loop_and_parser()
    if workers > 1:
        jobs = "each with a job worker" if settings.run_worker else "no job worker"
        console.print(f"{workers} API processes, {jobs}")
        # Each process is a fresh interpreter (uvicorn spawns them) that builds its app from
        # PAYMUX_* variables: the flags reach it there.
        os.environ.update(_flag_environment(overrides))
    metrics_dir = _multiprocess_metrics(workers)
    try:
        _run_uvicorn(uvicorn, settings, workers, loop, http)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _tls_refusal(settings: Settings) -> str | None:
    """Why the TLS settings can't serve, or None (both files, or neither)."""
    cert, key = settings.ssl_certfile, settings.ssl_keyfile
    if bool(cert) != bool(key):
        return "--ssl-certfile and --ssl-keyfile go together: give both, or neither"
    for name, path in (("--ssl-certfile", cert), ("--ssl-keyfile", key)):
        if path and not Path(path).is_file():
            return f"{name}: no file at {path}"
    return None


def _multiprocess_metrics(workers: int) -> str | None:
    """With several API processes, a fresh directory for prometheus-client's multiprocess
    mode (PROMETHEUS_MULTIPROC_DIR, read by each process as it starts), unless the operator
    named one; returns the directory made here, to remove at exit."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    made = tempfile.mkdtemp(prefix="paymux-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


def _run_uvicorn(
    uvicorn: Any,
    settings: Settings,
    workers: int,
    loop: Literal["uvloop", "asyncio"],
    http: Literal["httptools", "h11"],
) -> None:
    from paymux.api.app import create_app

    uvicorn.run(
        (
            create_app(settings, settle_heap=True)
            if workers == 1
            else "paymux.api.app:create_app_from_environment"
        ),
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        # How long the parent waits for a process to answer its health ping before killing
        # it as hung (uvicorn's default, 5 s, kills processes still importing on a busy host).
        timeout_worker_healthcheck=30,
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=http,
        # No route is a WebSocket: uvicorn's default ("auto") would import websockets into
        # every API process (~0.8 MiB) to answer upgrades nothing accepts.
        ws="none",
        log_config=None,
        # Below INFO uvicorn would still format each request's access-log arguments (client
        # address, quoted path) for a record that is then dropped.
        access_log=logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO),
        # X-Forwarded-* are believed only from the proxies the operator names (uvicorn
        # would otherwise trust them from 127.0.0.1, or FORWARDED_ALLOW_IPS).
        proxy_headers=bool(settings.trusted_proxy_list()),
        forwarded_allow_ips=settings.trusted_proxy_list(),
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        # SIGTERM: stop accepting, let requests in flight finish for up to this long; then
        # the app's shutdown gives its worker as long again (api/app.py).
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )


@cli.command("worker")
def worker_command() -> None:
    """Run the job worker alone (several may share one PostgreSQL database)."""
    from paymux.jobs.worker import Worker
    from paymux.observability.tracing import (
        configure_tracing,
        flush_tracing,
        instrument_database,
    )
    from paymux.root import Paymux

    settings = get_settings()
    _setup_logging(settings)

    configure_tracing()  # on when OTEL_EXPORTER_OTLP_ENDPOINT is set

    metrics_port = settings.worker_metrics_port
    if metrics_port is not None and (
        settings.metrics_token is None or not settings.metrics_token.get_secret_value()
    ):
        errors.print("PAYMUX_WORKER_METRICS_PORT needs PAYMUX_METRICS_TOKEN", markup=False)
        raise typer.Exit(2)

    async def run() -> None:
        app = Paymux(settings)
        instrument_database(app.ctx.db)
        metrics = await _worker_metrics(app, metrics_port) if metrics_port else None
        worker = Worker(app)
        heap.settle()  # start-up's objects out of the collector's passes
        task = asyncio.create_task(worker.run())
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # SIGTERM or SIGINT: the job in hand finishes (the rest are released); past
            # PAYMUX_SHUTDOWN_TIMEOUT it is cut short (its transaction rolled back).
            worker.stop()
            loop.call_later(settings.shutdown_timeout, task.cancel)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        try:
            try:
                await task
            except asyncio.CancelledError:
                log.warning("worker cut short after %gs", settings.shutdown_timeout)
            await worker.shut_down()
        finally:
            if metrics is not None:
                metrics.should_exit = True
                await metrics.shutdown()
            await app.close()
            flush_tracing()  # the last jobs' spans, before the process goes

    asyncio.run(run())


async def _worker_metrics(app: Paymux, port: int) -> uvicorn.Server:
    """The worker's /metrics server (uvicorn, started and stopped with the worker: not its
    ``serve()``, which would take over SIGTERM)."""
    import uvicorn

    from paymux.observability.routes import worker_metrics_app

    settings = app.settings
    config = uvicorn.Config(
        worker_metrics_app(
            app.ctx.db, settings, app.ctx.now_us, app.rate_limiter.check_unauthenticated
        ),
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    log.info("worker metrics on %s:%d/metrics", settings.host, port)
    return server


@keys_cli.command("create")
def keys_create(
    account: Annotated[
        str | None,
        typer.Option(help="An existing account's id; default: acct_default."),
    ] = None,
    new_account: Annotated[
        bool,
        typer.Option(
            help="Make a new account for the key: with --account ID, that id; alone, a fresh one."
        ),
    ] = False,
    type_: Annotated[
        str,
        typer.Option(
            "--type",
            help="secret (sk_), publishable (pk_, for a checkout page) or restricted (rk_).",
        ),
    ] = "secret",
    live: Annotated[bool, typer.Option("--live", help="A live-mode key (sk_live_...).")] = False,
    name: Annotated[str | None, typer.Option(help="A name to tell keys apart.")] = None,
    permission: Annotated[
        list[str] | None,
        typer.Option(
            "--permission",
            help="A restricted key's grant, resource=read|write (repeatable), e.g. "
            "--permission payment_intents=write --permission refunds=read.",
        ),
    ] = None,
) -> None:
    """Create an API key and print it once (last line)."""
    from paymux.domain.errors import PaymuxError
    from paymux.root import Paymux
    from paymux.services.accounts import DEFAULT_ACCOUNT

    grants: dict[str, str] = {}
    for item in permission or []:
        resource, sep, level = item.partition("=")
        if not sep:
            errors.print(f"--permission takes resource=read|write, not {item!r}", markup=False)
            raise typer.Exit(2)
        grants[resource.strip()] = level.strip()

    async def run() -> tuple[str, str, str] | str:
        app = Paymux(get_settings())
        try:
            if account and account != DEFAULT_ACCOUNT:
                exists = await app.accounts.exists(account)
                if not exists and not new_account:
                    return (
                        f"no account {account}: check the id (`paymux keys list` shows "
                        "accounts), or pass --new-account to create it"
                    )
                if exists and new_account:
                    return f"account {account} exists already: drop --new-account"
            new, _ = await app.keys.create(
                account if account else (None if new_account else DEFAULT_ACCOUNT),
                kind=type_,
                livemode=live,
                name=name,
                permissions=grants or None,
                actor="cli",
            )
            return new.account_id, new.key_id, new.key
        finally:
            await app.close()

    try:
        made = asyncio.run(run())
    except PaymuxError as exc:
        detail = f" ({exc.param})" if exc.param else ""
        errors.print(f"{exc.code}: {exc.message}{detail}", markup=False)
        raise typer.Exit(1) from None
    if isinstance(made, str):
        errors.print(made, markup=False)
        raise typer.Exit(2)
    account_id, key_id, key = made
    console.print(f"account {account_id}")
    console.print(f"id {key_id}")
    print(key)


@keys_cli.command("list")
def keys_list(
    account: Annotated[str | None, typer.Option(help="Only this account's keys.")] = None,
) -> None:
    """List API keys: id, account, type, key (redacted), name, created, last used, expires,
    revoked."""
    from paymux.root import Paymux

    async def run() -> list[dict[str, Any]]:
        app = Paymux(get_settings())
        try:
            return await app.keys.list(account)
        finally:
            await app.close()

    rows = asyncio.run(run())
    table = Table(title=f"API keys ({len(rows)})", title_justify="left")
    for col in (
        "id",
        "account",
        "type",
        "key",
        "name",
        "created",
        "last used",
        "expires",
        "revoked",
    ):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["id"],
            row["account"],
            row["type"],
            row["redacted"],
            row["name"] or "-",
            str(row["created"]),
            str(row["last_used"] or "-"),
            str(row["expires_at"] or "-"),
            "yes" if row["revoked"] else "no",
        )
    console.print(table)


@keys_cli.command("roll")
def keys_roll(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    expires_in: Annotated[
        int,
        typer.Option(
            "--expires-in",
            help="Seconds the old key keeps working (0: refused at once; at most 604800, 7 days).",
        ),
    ] = 0,
) -> None:
    """Make a new key like this one (printed once, last line); the old one expires."""
    from paymux.domain.errors import PaymuxError
    from paymux.root import Paymux

    async def run() -> tuple[str, str, int | None]:
        app = Paymux(get_settings())
        try:
            new, _ = await app.keys.roll(key_id, expires_in, actor="cli")
            old = await app.keys.retrieve(key_id)
            return new.key_id, new.key, old["expires_at"]
        finally:
            await app.close()

    try:
        new_id, key, expires_at = asyncio.run(run())
    except PaymuxError as exc:
        errors.print(f"{exc.code}: {exc.message}", markup=False)
        raise typer.Exit(1) from None
    console.print(f"rolled {key_id} to {new_id}; the old key expires at {expires_at}")
    print(key)


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key at once: every API process refuses it within PAYMUX_KEY_CACHE_SECONDS."""
    from paymux.root import Paymux

    async def run() -> bool:
        app = Paymux(get_settings())
        try:
            return await app.keys.revoke(key_id, actor="cli") is not None
        finally:
            await app.close()

    if not asyncio.run(run()):
        console.print(f"no API key {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@webhooks_cli.command("list")
def webhooks_list(
    status: Annotated[
        str | None, typer.Option(help="received, applied, ignored, stale or dead.")
    ] = None,
    gateway: Annotated[str | None, typer.Option(help="Only this gateway's events.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
) -> None:
    """List stored gateway events, newest first."""
    from paymux.root import Paymux
    from paymux.webhooks.inbound import INBOX_STATUSES

    if status is not None and status not in INBOX_STATUSES:
        errors.print(
            f"--status must be one of {', '.join(INBOX_STATUSES)}, not {status!r}", markup=False
        )
        raise typer.Exit(2)

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
        table.add_row(
            row["id"],
            row["gateway"],
            row["event_id"],
            row["type"],
            row["status"],
            (row["error"] or "")[:60],
        )
    console.print(table)


@webhooks_cli.command("replay")
def webhooks_replay(
    event_id: Annotated[str | None, typer.Argument(help="Inbox id (we_...) or event id.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Replay every dead event.")] = False,
) -> None:
    """Queue stored events to be applied again (they stay idempotent)."""
    from paymux.root import Paymux

    if not event_id and not all_dead:
        raise typer.BadParameter("give an EVENT_ID or --all-dead")

    async def run() -> list[str]:
        app = Paymux(get_settings())
        try:
            return await app.webhooks.replay(event_id=event_id, all_dead=all_dead)
        finally:
            await app.close()

    replayed = asyncio.run(run())
    if event_id and not replayed:
        errors.print(f"not found: no stored event {event_id}", markup=False)
        raise typer.Exit(1)
    console.print(f"replayed {len(replayed)} event(s)")
    for inbox_id in replayed:
        print(inbox_id)


def _in_transaction(write: bool, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the configured database; a PaymuxError it raises
    is printed (code and message) and exits 2 for a bad parameter, else 1."""
    from paymux.domain.errors import PaymuxError
    from paymux.storage.db import Database

    async def run() -> T:
        db = Database(get_settings().database_url, pool_size=1)
        try:
            async with db.write() if write else db.read() as s:
                return await work(s)
        finally:
            await db.dispose()

    try:
        return asyncio.run(run())
    except PaymuxError as exc:
        errors.print(f"[red]error[/red] ({exc.code}): {exc.message}", markup=True)
        raise typer.Exit(2 if exc.code == "parameter_invalid" else 1) from None


def _when(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _first_line(text: str | None, width: int = 60) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


@jobs_cli.command("list")
def jobs_list(
    dead: Annotated[bool, typer.Option("--dead", help="Only dead jobs (--status dead).")] = False,
    status: Annotated[
        str | None, typer.Option(help="queued, running, done or dead.", show_default=False)
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many rows.")] = 50,
) -> None:
    """List jobs, most recently changed first (UTC times)."""
    from paymux.jobs import queue

    if dead and status not in (None, queue.DEAD):
        raise typer.BadParameter(f"--dead and --status {status} contradict each other")
    wanted = queue.DEAD if dead else status
    rows = _in_transaction(
        False, lambda s: queue.list_jobs(s, status=wanted, kind=kind, limit=limit)
    )
    title = f"{wanted or 'all'} jobs" + (f" of kind {kind}" if kind else "")
    table = Table(title=f"{title} ({len(rows)})", title_justify="left")
    # One line per job: last_error gets what the terminal has left (the other columns are
    # short), cut with an ellipsis.
    widths = {
        "id": max((len(str(row["id"])) for row in rows), default=2),
        "kind": max((len(row["kind"]) for row in rows), default=4),
        "status": 7,
        "attempts": 8,
        "updated": 19,
    }
    rest = console.width - sum(widths.values()) - (3 * 6 + 1)  # 6 columns: bars and padding
    for col in ("id", "kind", "status", "attempts", "last_error", "updated"):
        table.add_column(
            col,
            no_wrap=True,
            overflow="ellipsis",
            max_width=max(8, rest) if col == "last_error" else None,
        )
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["kind"],
            row["status"],
            f"{row['attempts']}/{row['max_attempts']}",
            _first_line(row["last_error"]),
            _when(row["updated"]),
        )
    console.print(table)


@jobs_cli.command("retry")
def jobs_retry(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="The dead job's id.")],
) -> None:
    """Put a dead job back in the queue: due now, attempts reset to 0."""
    from paymux.domain.clock import SystemClock
    from paymux.jobs import queue

    now = SystemClock().now_us()
    job = _in_transaction(True, lambda s: queue.retry_job(s, job_id, now_us=now))
    console.print(
        f"job {job['id']} ({job['kind']}) queued again: attempts reset to 0, due now; "
        f"its last error: {_first_line(job['last_error']) or '(none recorded)'}"
    )


@cli.command()
def reconcile(
    since: Annotated[
        str | None,
        typer.Option(
            help="Only objects created since: an age (24h, 30m, 7d), a date (2026-11-30, "
            "UTC) or an ISO 8601 time. Default: everything.",
            show_default=False,
        ),
    ] = None,
    gateway: Annotated[str | None, typer.Option(help="Only this gateway's objects.")] = None,
    account: Annotated[str | None, typer.Option(help="Only this account's objects.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compare only; change nothing.")] = (
        False
    ),
) -> None:
    """Compare payment intents and refunds with the providers' records; apply the provider's
    word where the rules allow it.

    Exit status: 0 nothing needs a person; 1 something needs attention; 2 bad usage;
    3 a provider could not be asked about something (the check is incomplete)."""
    from paymux.domain.clock import SystemClock
    from paymux.root import Paymux
    from paymux.services.reconcile import Reconciler, parse_since

    try:
        since_us = None if since is None else parse_since(since, SystemClock().now_us())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    settings = get_settings()
    _setup_logging(settings)

    async def run() -> ReconcileReport | None:
        app = Paymux(settings)
        try:
            if gateway is not None and gateway not in app.ctx.gateways:
                return None
            return await Reconciler(app.ctx, app.engine).run(
                since_us=since_us, gateway=gateway, apply=not dry_run, account_id=account
            )
        finally:
            await app.close()

    report = asyncio.run(run())
    if report is None:
        raise typer.BadParameter(
            f"no gateway named {gateway!r} is configured", param_hint="--gateway"
        )
    for line in _reconcile_lines(report):
        typer.echo(line)
    raise typer.Exit(report.exit_code)


def _reconcile_lines(report: ReconcileReport) -> list[str]:
    """The differences as an aligned text table, then the summary line."""
    from paymux.services.reconcile import Resolution

    lines: list[str] = []
    rows = [
        (
            d.object_id,
            d.gateway,
            str(d.ours),
            "?" if d.theirs is None else str(d.theirs),
            str(d.resolution),
            d.note,
        )
        for d in report.rows
    ]
    if rows:
        header = ("id", "gateway", "ours", "theirs", "resolution", "note")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        for r in [header, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(r, widths, strict=False)]
            lines.append("  ".join([*cells, r[-1]]).rstrip())
    applied = (
        f"would apply {report.count(Resolution.WOULD_APPLY)}"
        if report.dry_run
        else f"applied {report.count(Resolution.APPLIED)}"
    )
    summary = (
        f"checked {report.checked}, differences {len(report.differences)}, {applied}, "
        f"needs attention {report.count(Resolution.NEEDS_ATTENTION)}, "
        f"errors {report.count(Resolution.ERROR)}"
    )
    if report.skipped:
        summary += f", in flight (skipped) {report.skipped}"
    lines.append(summary + (" (dry run: nothing changed)" if report.dry_run else ""))
    return lines


demo_cli = typer.Typer(
    help="Scripted tours against an in-process service: alone, the payments tour (one table "
    "per scenario); `paymux demo billing`, a year of a subscription (one table per invoice)."
)
cli.add_typer(demo_cli, name="demo")


@demo_cli.callback(invoke_without_command=True)
def demo(ctx: typer.Context) -> None:
    """A scripted tour against an in-process service: one table per scenario (alone: the
    payments tour; `paymux demo billing`: a year of a subscription)."""
    if ctx.invoked_subcommand is None:
        asyncio.run(_demo())


@demo_cli.command("billing")
def demo_billing() -> None:
    """A year of a monthly subscription on a test clock: trial, upgrade, metered usage, a
    failed renewal recovered by dunning; one table per invoice."""
    from paymux.billing.demo import run_billing_demo

    asyncio.run(run_billing_demo(console))


async def _demo() -> None:
    from paymux.domain.errors import PaymuxError
    from paymux.gateways.signing import sign_header
    from paymux.jobs.worker import Worker
    from paymux.root import Paymux
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
