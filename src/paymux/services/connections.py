"""Gateway connections: which gateway accounts an account's payments run through.

A connection links one account to one gateway, in test or live mode. Two kinds exist:

- **stored** (``conn_...``, made through the API or the CLI): its credentials are sealed with
  envelope encryption (security/envelope.py, PAYMUX_ENCRYPTION_KEYS) and are write-only: a
  view shows only a masked hint (the last four characters) of each field.
- **environment** (``conn_env_<gateway>``): today's PAYMUX_*/STRIPE_*/PAYPAL_*/SQUARE_*
  variables, or the registry a library user hands to ``Paymux(gateways=...)``. They belong to
  the default account (``PAYMUX_ENVIRONMENT_CONNECTIONS=all`` shares them with every account,
  as before connections existed). Their secrets stay in the environment; they are read-only.
  The sandbox is built in: every account may use it in test mode.

Objects remember the connection that ran them (``connection_id``), so a refund, a capture or a
webhook goes to the same gateway account as the payment did, even after routes change.
Built gateways are cached per connection and re-read every ``key_cache_seconds``, so an update
or a disable reaches every API process within seconds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import select

from paymux.config import Settings
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.gateways.base import (
    CredentialsCheck,
    Gateway,
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayUnavailable,
)
from paymux.gateways.connectors import Connector, ConnectorEnv, connectors
from paymux.gateways.registry import GatewayRegistry
from paymux.security.envelope import EnvelopeError, Keyring
from paymux.security.gateway_hosts import api_base_problem, host_list
from paymux.services.audit import audit_in
from paymux.services.context import Context, Routed, current_livemode, get_owned, scoped
from paymux.services.routing import (
    missing_capabilities,
    param_of,
    parse_routes,
    require_capability,
    takes_types,
    unactivated,
)
from paymux.storage.models import Connection, GatewayAttempt, PaymentIntent, PaymentMethod

__all__ = [
    "ENVIRONMENT_PREFIX",
    "ConnectionParams",
    "ConnectionsService",
    "Routed",
    "connection_view",
    "credentials_test_view",
]

log = logging.getLogger(__name__)

ENVIRONMENT_PREFIX = "conn_env_"
DEFAULT_ACCOUNT = "acct_default"  # services.accounts.DEFAULT_ACCOUNT (not imported: no cycle)
_SANDBOX = "sandbox"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What routing needs of a stored connection, cached between reads."""

    id: str
    account_id: str
    gateway: str
    livemode: bool
    disabled: bool
    currencies: tuple[str, ...] | None
    payment_method_types: tuple[str, ...] | None
    priority: int
    updated_us: int
    failover: bool = False  # unreachable (nothing sent): a new payment may go to the next


@dataclass
class ConnectionParams:
    """Create or update a stored connection (None: leave as is / the default)."""

    gateway: str | None = None
    credentials: dict[str, Any] | None = None
    livemode: bool | None = None
    name: str | None = None
    currencies: list[str] | None = None
    payment_method_types: list[str] | None = None
    priority: int | None = None
    failover: bool | None = None
    disabled: bool | None = None
    metadata: dict[str, str] | None = None


def _hint(value: Any) -> str:
    """A masked hint: the last four characters of a value longer than eight, else nothing."""
    if isinstance(value, list):
        return ", ".join(_hint(item) for item in value)
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return "••••" + text[-4:] if len(text) > 8 else "••••"


def _hints(credentials: BaseModel) -> dict[str, str]:
    """A masked hint per credential field that is set: never more than the last four."""
    return {
        name: _hint(value)
        for name, value in credentials
        if value is not None and value != "" and value != []
    }


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return [_reveal(item) for item in value]
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _plain(credentials: BaseModel) -> dict[str, Any]:
    """The credentials as JSON-able values, secrets revealed (only to be sealed)."""
    return {name: _reveal(value) for name, value in credentials}


def connection_view(row: Connection, base_url: str, connector: Connector | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "connection",
        "gateway": row.gateway,
        "livemode": row.livemode,
        "name": row.name,
        "source": row.source,
        "credentials": dict(row.credential_hints or {}),
        "currencies": row.currencies,
        "payment_method_types": row.payment_method_types,
        "priority": row.priority,
        "failover": row.failover,
        "disabled": row.disabled,
        "capabilities": sorted(connector.capabilities) if connector else [],
        "webhook_url": f"{base_url}/webhooks/{row.id}",
        "metadata": dict(row.metadata_ or {}),
        "created": row.created_us // 1_000_000,
        "updated": row.updated_us // 1_000_000,
    }


_LIVE_API_BASES = {
    "paypal": "https://api-m.paypal.com",
    "square": "https://connect.squareup.com",
}


def _creation_mode(asked: bool | None) -> bool:
    """A new connection's mode: the caller's key's (a test key can't make a live connection,
    nor a live key a test one); the body's outside a request (the CLI)."""
    mode = current_livemode.get()
    if mode is None:
        return bool(asked)
    if asked is not None and asked != mode:
        raise PaymuxError.of(
            "parameter_invalid",
            f"A {'live' if mode else 'test'}-mode key makes {'live' if mode else 'test'} "
            "connections: leave livemode out, or use a key of the mode you want.",
            param="livemode",
        )
    return mode


def environment_livemode(name: str, settings: Settings) -> bool:
    """Whether an environment connection reaches a live provider account: Stripe's secret key
    says so (sk_live_/rk_live_); PayPal and Square by their production API base. A live one
    takes only live keys' payments, a test one only test keys'."""
    if name == "stripe":
        key = settings.stripe_secret_key
        return key is not None and key.get_secret_value().startswith(("sk_live_", "rk_live_"))
    if name == "paypal":
        return settings.paypal_api_base.rstrip("/") == _LIVE_API_BASES["paypal"]
    if name == "square":
        return settings.square_api_base.rstrip("/") == _LIVE_API_BASES["square"]
    return False


class ConnectionsService:
    def __init__(self, ctx: Context, deployment: GatewayRegistry) -> None:
        self.ctx = ctx
        self.deployment = deployment
        secret = ctx.settings.encryption_keys
        self.keyring = Keyring.parse(secret.get_secret_value()) if secret else Keyring.empty()
        # connection id -> (snapshot, gateway, when to read the row again)
        self._built: dict[str, tuple[_Snapshot, Gateway, int]] = {}
        # (account, livemode) -> (snapshots by priority, when to read again)
        self._routes: dict[tuple[str, bool], tuple[list[_Snapshot], int]] = {}

    # -- who may use what --------------------------------------------------------------------
    def _shares_environment(self, account_id: str | None, name: str) -> bool:
        """May this account use the deployment's gateway ``name``?"""
        return (
            account_id is None
            or name == _SANDBOX
            or account_id == DEFAULT_ACCOUNT
            or self.ctx.settings.environment_connections == "all"
        )

    def _ttl_us(self) -> int:
        return int(self.ctx.settings.key_cache_seconds * 1_000_000)

    # -- resolving ---------------------------------------------------------------------------
    async def gateway(
        self,
        name: str | None,
        *,
        account_id: str | None = None,
        connection_id: str | None = None,
        livemode: bool = False,
        param: str = "gateway",
    ) -> Gateway:
        """The gateway for an object (by its connection) or for a gateway name."""
        if connection_id and not connection_id.startswith(ENVIRONMENT_PREFIX):
            return (await self._stored(connection_id, account_id, param=param))[1]
        if connection_id:
            # An object made through an environment connection stays with it.
            found = self.deployment.get(connection_id.removeprefix(ENVIRONMENT_PREFIX))
            if found is not None:
                return found
        return (await self.named(account_id, name, livemode=livemode, param=param)).gateway

    async def named(
        self,
        account_id: str | None,
        name: str | None,
        *,
        livemode: bool = False,
        param: str = "gateway",
    ) -> Routed:
        """The connection for a gateway name: the account's own (by priority), else the
        deployment's if the account may use it."""
        key = name or self.deployment.default
        if account_id is not None:
            for snap in await self._account_connections(account_id, livemode):
                if snap.gateway == key and not snap.disabled:
                    return Routed(
                        (await self._stored(snap.id, account_id, param=param))[1], snap.id
                    )
        found = self.deployment.get(key)
        if (
            found is not None
            and self._shares_environment(account_id, key)
            and (account_id is None or environment_livemode(key, self.ctx.settings) == livemode)
        ):
            return Routed(found, ENVIRONMENT_PREFIX + key)
        raise PaymuxError.of(
            "gateway_unknown",
            f"No {'live' if livemode else 'test'} gateway named {key!r} is configured for "
            "this account.",
            param=param,
        )

    def cached(self, name: str, connection_id: str | None) -> Gateway | None:
        """The gateway already built for an object, without I/O (for views)."""
        if connection_id and not connection_id.startswith(ENVIRONMENT_PREFIX):
            built = self._built.get(connection_id)
            return built[1] if built else None
        return self.deployment.get(
            connection_id.removeprefix(ENVIRONMENT_PREFIX) if connection_id else name
        )

    async def route(
        self,
        account_id: str,
        requested: str | None,
        currency: str,
        *,
        livemode: bool = False,
        payment_method_types: Sequence[str] | None = None,
        needs: frozenset[str] = frozenset(),
    ) -> Routed:
        """Choose the connection a new payment goes through.

        ``requested`` names a connection (``conn_...``) or a gateway; otherwise the route for
        the currency (PAYMUX_ROUTES), otherwise the account's own enabled connections that
        take the currency and every type in ``payment_method_types`` (and whose connector
        declares the capabilities in ``needs``), by priority, otherwise the deployment's
        default gateway. A payment whose types no candidate takes is a 400
        ``parameter_invalid`` (param ``payment_method_types``), before any call."""
        wanted = list(payment_method_types or [])
        if requested and requested.startswith("conn_"):
            if requested.startswith(ENVIRONMENT_PREFIX):
                key = requested.removeprefix(ENVIRONMENT_PREFIX)
                deployed = self.deployment.get(key)
                if deployed is None or not self._shares_environment(account_id, key):
                    raise _missing(requested, "gateway")
                if environment_livemode(key, self.ctx.settings) != livemode:
                    # A test key never reaches a live gateway, nor a live key a test one.
                    raise PaymuxError.of(
                        "gateway_unknown",
                        f"Connection {requested!r} is in the other mode (test/live).",
                        param="gateway",
                    )
                if not takes_types(key, None, wanted):
                    raise unactivated(wanted, currency, f"connection {requested}")
                return Routed(deployed, requested)
            snap, gateway = await self._stored(requested, account_id, param="gateway")
            if snap.disabled or snap.livemode != livemode:
                raise PaymuxError.of(
                    "gateway_unknown",
                    f"Connection {requested!r} is "
                    + ("disabled." if snap.disabled else "in the other mode (test/live)."),
                    param="gateway",
                )
            if not takes_types(snap.gateway, snap.payment_method_types, wanted):
                raise unactivated(wanted, currency, f"connection {requested}")
            return Routed(gateway, snap.id)
        name: str | None = requested or parse_routes(self.ctx.settings.routes).get(currency)
        eligible = [
            s
            for s in await self._account_connections(account_id, livemode)
            if not s.disabled
            and (name is None or s.gateway == name)
            and (s.currencies is None or currency in s.currencies)
        ]
        typed = [s for s in eligible if takes_types(s.gateway, s.payment_method_types, wanted)]
        own = [s for s in typed if not missing_capabilities(s.gateway, needs)]
        if own:
            snap, gateway = await self._stored(own[0].id, account_id, param="gateway")
            return Routed(gateway, snap.id)
        # The account has its own connection for this payment but none takes its types or
        # capabilities: refuse, rather than sending the merchant's payment through the
        # deployment's gateway (another provider account).
        if eligible and not typed:
            raise unactivated(wanted, currency, "connection of this account")
        if typed:
            for capability in missing_capabilities(typed[0].gateway, needs):
                require_capability(typed[0].gateway, capability, param=param_of(capability))
        key = name or self.deployment.default
        deployed = self.deployment.get(key)
        if (
            deployed is not None
            and self._shares_environment(account_id, key)
            and environment_livemode(key, self.ctx.settings) == livemode
        ):
            if not takes_types(key, None, wanted):
                raise unactivated(wanted, currency, "connection of this account")
            return Routed(deployed, ENVIRONMENT_PREFIX + key)
        raise PaymuxError.of(
            "gateway_unknown",
            f"No {'live' if livemode else 'test'} connection to {key!r} takes {currency} "
            "for this account.",
            param="gateway",
        )

    async def for_webhook(self, segment: str) -> tuple[Gateway, str | None, str | None]:
        """The gateway, account and connection of ``/webhooks/{segment}``: a stored
        connection's id, or (as before connections) a deployment gateway's name."""
        if segment.startswith("conn_") and not segment.startswith(ENVIRONMENT_PREFIX):
            snap, gateway = await self._stored(segment, None, param="connection")
            return gateway, snap.account_id, snap.id
        name = segment.removeprefix(ENVIRONMENT_PREFIX)
        deployed = self.deployment.get(name)
        if deployed is None:
            raise PaymuxError.of(
                "gateway_unknown", f"No gateway named {name!r} is configured.", param="gateway"
            )
        return deployed, None, ENVIRONMENT_PREFIX + name

    async def fallback(
        self,
        account_id: str,
        failed: str,
        currency: str,
        *,
        livemode: bool = False,
        payment_method_types: Sequence[str] | None = None,
        needs: frozenset[str] = frozenset(),
        tried: frozenset[str] = frozenset(),
    ) -> Routed | None:
        """Where a new payment goes when the connection ``failed`` could not be reached (the
        request was never sent): the next of the account's own enabled connections, in
        ``route``'s order, that takes the payment (its currency, the route for it, its types
        and the capabilities in ``needs``) and is not in ``tried``; None when ``failed`` does
        not allow failover (its ``failover`` setting, off by default), is not one of the
        account's stored connections (the environment's have no such setting), or no other
        connection takes the payment."""
        snaps = await self._account_connections(account_id, livemode)
        current = next((s for s in snaps if s.id == failed), None)
        if current is None or not current.failover:
            return None
        wanted = list(payment_method_types or [])
        name = parse_routes(self.ctx.settings.routes).get(currency)
        for snap in snaps:
            if (
                snap.id == failed
                or snap.id in tried
                or snap.disabled
                or (name is not None and snap.gateway != name)
                or (snap.currencies is not None and currency not in snap.currencies)
                or not takes_types(snap.gateway, snap.payment_method_types, wanted)
                or missing_capabilities(snap.gateway, needs)
            ):
                continue
            stored, gateway = await self._stored(snap.id, account_id, param="gateway")
            return Routed(gateway, stored.id)
        return None

    async def _account_connections(self, account_id: str, livemode: bool) -> list[_Snapshot]:
        now = self.ctx.now_us()
        cached = self._routes.get((account_id, livemode))
        if cached is not None and cached[1] > now:
            return cached[0]
        async with self.ctx.db.read() as s:
            rows = (
                await s.execute(
                    select(Connection)
                    .where(Connection.account_id == account_id, Connection.livemode == livemode)
                    .order_by(Connection.priority, Connection.created_us, Connection.id)
                )
            ).scalars()
            snaps = [_snapshot(row) for row in rows]
        self._routes[(account_id, livemode)] = (snaps, now + self._ttl_us())
        return snaps

    async def _stored(
        self, connection_id: str, account_id: str | None, *, param: str
    ) -> tuple[_Snapshot, Gateway]:
        """A stored connection's gateway, built once and re-checked every TTL."""
        now = self.ctx.now_us()
        built = self._built.get(connection_id)
        if built is not None and built[2] > now:
            snap, gateway, _ = built
        else:
            async with self.ctx.db.read() as s:
                row = await s.get(Connection, connection_id)
                if row is None:
                    self._built.pop(connection_id, None)
                    raise _missing(connection_id, param)
                snap = _snapshot(row)
                sealed = row.credentials
            if built is not None and built[0].updated_us == snap.updated_us:
                gateway = built[1]
            else:
                gateway = self._build(snap, sealed)
                if built is not None:
                    await _close_quietly(built[1])
            self._built[connection_id] = (snap, gateway, now + self._ttl_us())
        if account_id is not None and snap.account_id != account_id:
            raise _missing(connection_id, param)
        return snap, gateway

    def _build(self, snap: _Snapshot, sealed: str | None) -> Gateway:
        connector = connectors().get(snap.gateway)
        if connector is None:
            raise PaymuxError.of(
                "gateway_unknown",
                f"Connection {snap.id} is to {snap.gateway!r}, which this build does not have.",
                param="gateway",
            )
        plain = self._open(snap.id, sealed)
        try:
            credentials = connector.credentials.model_validate(json.loads(plain))
        except ValidationError as exc:
            # Stored under an older, looser rule (a sandbox latency above today's bound...):
            # the merchant is told which field to update, never shown its value.
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            log.warning("connection %s: stored credentials fail today's rules: %s", snap.id, fields)
            raise PaymuxError.of(
                "parameter_invalid",
                f"Connection {snap.id}: credentials[{fields[0]}] is no longer valid. "
                "Update the connection.",
                param=f"credentials[{fields[0]}]",
            ) from None
        problem = self._api_base_problem(connector, credentials)
        if problem is not None:
            # Stored before this rule, or the operator has since narrowed the allowed hosts:
            # no call goes there, and the merchant is told to update the connection.
            log.warning("connection %s: its api_base is not allowed; not used", snap.id)
            raise PaymuxError.of(
                "parameter_invalid",
                f"Connection {snap.id}: credentials[api_base]: {problem} Update the connection.",
                param="credentials[api_base]",
            )
        env = ConnectorEnv(self.ctx.settings, f"{self.ctx.settings.base_url()}/webhooks/{snap.id}")
        gateway: Gateway = connector.build(credentials, env)
        return gateway

    def _open(self, connection_id: str, sealed: str | None) -> bytes:
        if not sealed:
            return b"{}"
        try:
            return self.keyring.open(sealed, context=_context(connection_id))
        except EnvelopeError as exc:
            log.error("connection %s: its credentials cannot be opened: %s", connection_id, exc)
            raise PaymuxError.of(
                "service_unavailable",
                "This connection's credentials cannot be decrypted here (see the server log).",
            ) from None

    # -- managing ----------------------------------------------------------------------------
    def _connector(self, name: str) -> Connector:
        connector = connectors().get(name)
        if connector is None:
            raise PaymuxError.of(
                "parameter_invalid",
                f"Unknown gateway {name!r}; this build has: {', '.join(sorted(connectors()))}.",
                param="gateway",
            )
        return connector

    def _credentials(
        self, connector: Connector, values: dict[str, Any], *, livemode: bool
    ) -> BaseModel:
        try:
            credentials: BaseModel = connector.credentials.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "credentials"
            raise PaymuxError.of(
                "parameter_invalid",
                f"credentials[{field}]: {first['msg']}",
                param=f"credentials[{field}]",
            ) from None
        base = getattr(credentials, "api_base", None)
        if livemode and base and not str(base).startswith("https://"):
            # A live connection's credentials go only to the provider, over TLS.
            raise PaymuxError.of(
                "parameter_invalid",
                "credentials[api_base]: a live connection's API base must be https://.",
                param="credentials[api_base]",
            )
        problem = self._api_base_problem(connector, credentials)
        if problem is not None:
            # paymux itself calls api_base: only the provider's hosts, or the operator's.
            raise PaymuxError.of(
                "parameter_invalid",
                f"credentials[api_base]: {problem}",
                param="credentials[api_base]",
            )
        return credentials

    def _api_base_problem(self, connector: Connector, credentials: BaseModel) -> str | None:
        """Why the credentials' ``api_base`` (if any) may not be called from this server
        (paymux.security.gateway_hosts), or None."""
        base = getattr(credentials, "api_base", None)
        if base is None:
            return None
        return api_base_problem(
            str(base),
            published=host_list(connector.api_hosts),
            allowed=host_list(self.ctx.settings.allowed_gateway_hosts),
        )

    def _seal(self, connection_id: str, credentials: BaseModel) -> str:
        if not self.keyring.configured:
            raise PaymuxError.of(
                "encryption_not_configured",
                "Storing gateway credentials needs PAYMUX_ENCRYPTION_KEYS on the server.",
                param="credentials",
            )
        plain = json.dumps(_plain(credentials)).encode()
        return self.keyring.seal(plain, context=_context(connection_id))

    async def create(self, account_id: str, p: ConnectionParams) -> dict[str, Any]:
        if not p.gateway:
            raise PaymuxError.of(
                "parameter_missing", "Missing required param: gateway.", param="gateway"
            )
        connector = self._connector(p.gateway)
        livemode = _creation_mode(p.livemode)
        if livemode and connector.test_only:
            raise PaymuxError.of(
                "parameter_invalid",
                f"The {p.gateway} gateway has no live mode.",
                param="livemode",
            )
        credentials = self._credentials(connector, p.credentials or {}, livemode=livemode)
        connection_id = new_id("conn", 16)
        sealed = self._seal(connection_id, credentials)
        now = self.ctx.now_us()
        row = Connection(
            id=connection_id,
            account_id=account_id,
            gateway=p.gateway,
            livemode=livemode,
            name=p.name,
            source="api",
            credentials=sealed,
            credential_hints=_hints(credentials),
            currencies=_currencies(p.currencies),
            payment_method_types=_types(connector, p.payment_method_types),
            priority=p.priority or 0,
            failover=bool(p.failover),
            disabled=bool(p.disabled),
            metadata_=p.metadata or {},
            created_us=now,
            updated_us=now,
        )
        view = connection_view(row, self.ctx.settings.base_url(), connector)
        async with self.ctx.db.write() as s:
            s.add(row)
            await audit_in(s, view, now)  # the entry commits with the connection
        self._routes.pop((account_id, livemode), None)
        return view

    async def update(
        self, account_id: str, connection_id: str, p: ConnectionParams
    ) -> dict[str, Any]:
        if connection_id.startswith(ENVIRONMENT_PREFIX):
            raise _read_only(connection_id)
        async with self.ctx.db.write() as s:
            row = await self._owned(s, account_id, connection_id)
            connector = self._connector(row.gateway)
            if p.gateway is not None and p.gateway != row.gateway:
                raise PaymuxError.of(
                    "parameter_invalid",
                    "A connection's gateway can't change: create another connection.",
                    param="gateway",
                )
            if p.livemode is not None and p.livemode != row.livemode:
                raise PaymuxError.of(
                    "parameter_invalid",
                    "A connection's mode can't change: create another connection.",
                    param="livemode",
                )
            if p.credentials is not None:
                # New values replace the fields given; the others keep their stored values.
                current = json.loads(self._open(row.id, row.credentials))
                credentials = self._credentials(
                    connector, {**current, **p.credentials}, livemode=row.livemode
                )
                row.credentials = self._seal(row.id, credentials)
                row.credential_hints = _hints(credentials)
            if p.name is not None:
                row.name = p.name
            if p.currencies is not None:
                row.currencies = _currencies(p.currencies)
            if p.payment_method_types is not None:
                row.payment_method_types = _types(connector, p.payment_method_types)
            if p.priority is not None:
                row.priority = p.priority
            if p.failover is not None:
                row.failover = p.failover
            if p.disabled is not None:
                row.disabled = p.disabled
            if p.metadata is not None:
                row.metadata_ = {**(row.metadata_ or {}), **p.metadata}
            row.updated_us = max(self.ctx.now_us(), row.updated_us + 1)
            view = connection_view(row, self.ctx.settings.base_url(), connector)
            livemode = row.livemode
            await audit_in(s, view, self.ctx.now_us())
        self._routes.pop((account_id, livemode), None)
        built = self._built.pop(connection_id, None)
        if built is not None:
            await _close_quietly(built[1])
        return view

    async def delete(self, account_id: str, connection_id: str) -> dict[str, Any]:
        """Delete a connection nothing ran through yet; one that holds payments or saved
        cards can only be disabled (refunds and webhooks of its payments still need it)."""
        if connection_id.startswith(ENVIRONMENT_PREFIX):
            raise _read_only(connection_id)
        async with self.ctx.db.write() as s:
            row = await self._owned(s, account_id, connection_id)
            for model in (PaymentIntent, PaymentMethod, GatewayAttempt):
                used = (
                    await s.execute(
                        select(model.id).where(model.connection_id == connection_id).limit(1)
                    )
                ).first()
                if used is not None:
                    raise PaymuxError.of(
                        "connection_in_use",
                        "Payments or payment methods were made through this connection: "
                        "disable it instead (disabled=true).",
                        param="id",
                    )
            livemode = row.livemode
            await s.delete(row)
            deleted = {"id": connection_id, "object": "connection", "deleted": True}
            await audit_in(s, deleted, self.ctx.now_us())
        self._routes.pop((account_id, livemode), None)
        built = self._built.pop(connection_id, None)
        if built is not None:
            await _close_quietly(built[1])
        return deleted

    async def retrieve(self, account_id: str, connection_id: str) -> dict[str, Any]:
        for environment in self._environment_views(account_id):
            if environment["id"] == connection_id:
                return environment
        async with self.ctx.db.read() as s:
            row = await self._owned(s, account_id, connection_id)
            view: dict[str, Any] = connection_view(
                row, self.ctx.settings.base_url(), connectors().get(row.gateway)
            )
            return view

    async def all(self, account_id: str) -> list[dict[str, Any]]:
        """The account's stored connections by priority, then the environment's it may use."""
        async with self.ctx.db.read() as s:
            rows = (
                await s.execute(
                    scoped(Connection, account_id).order_by(
                        Connection.priority, Connection.created_us, Connection.id
                    )
                )
            ).scalars()
            base = self.ctx.settings.base_url()
            stored = [connection_view(r, base, connectors().get(r.gateway)) for r in rows]
        return stored + self._environment_views(account_id)

    def _environment_views(self, account_id: str) -> list[dict[str, Any]]:
        base = self.ctx.settings.base_url()
        views = []
        mode = current_livemode.get()
        for name in sorted(self.deployment):
            if not self._shares_environment(account_id, name) or (
                mode is not None and environment_livemode(name, self.ctx.settings) != mode
            ):
                continue
            connector = connectors().get(name)
            views.append(
                {
                    "id": ENVIRONMENT_PREFIX + name,
                    "object": "connection",
                    "gateway": name,
                    "livemode": environment_livemode(name, self.ctx.settings),
                    "name": "from the environment" if name != _SANDBOX else "built-in sandbox",
                    "source": "environment",
                    "credentials": {},
                    "currencies": None,
                    "payment_method_types": None,
                    "priority": None,
                    "failover": False,
                    "disabled": False,
                    "capabilities": sorted(connector.capabilities) if connector else [],
                    "webhook_url": f"{base}/webhooks/{name}",
                    "metadata": {},
                    "created": None,
                    "updated": None,
                }
            )
        return views

    async def test(self, account_id: str, connection_id: str) -> dict[str, Any]:
        """Whether the connection's stored credentials work: its connector's read-only
        ``check_credentials`` call (nothing moves, nothing is written; outside any
        transaction). A disabled connection is tested too (before enabling it again). The
        answer names the connection and, when it failed, why, with a stable code; never a
        credential nor the provider's message."""
        view = await self.retrieve(account_id, connection_id)  # 404: not this account's
        name = str(view["gateway"])
        if connection_id.startswith(ENVIRONMENT_PREFIX):
            found = self.deployment.get(name)
            if found is None:
                raise _missing(connection_id, "id")
            gateway = found
        else:
            gateway = (await self._stored(connection_id, account_id, param="id"))[1]
        checker = getattr(gateway, "check_credentials", None)  # a plugin older than the check
        try:
            if checker is None:
                check = CredentialsCheck(ok=False, code="credentials_check_unsupported")
            else:
                check = await checker()
        except GatewayRateLimited:
            check = CredentialsCheck(ok=False, code="gateway_rate_limited")
        except GatewayUnavailable:
            check = CredentialsCheck(ok=False, code="gateway_unavailable")
        except GatewayInvalidRequest as exc:
            check = CredentialsCheck(
                ok=False, code="credentials_check_failed", request_id=exc.request_id
            )
            log.info(
                "connection %s: the credentials check was refused: %s", connection_id, exc.code
            )
        outcome = "ok" if check.ok else check.code
        log.info("connection %s (%s): credentials test: %s", connection_id, name, outcome)
        return credentials_test_view(view, check, self.ctx.now_us())

    async def _owned(self, s: Any, account_id: str, connection_id: str) -> Connection:
        """The account's connection (of the request key's mode), else a 404."""
        found: Connection = await get_owned(s, Connection, connection_id, account_id)
        return found

    async def rewrap(self) -> tuple[int, int, list[str]]:
        """Re-wrap every stored credential's data key with the primary encryption key (after
        a new key was put first in PAYMUX_ENCRYPTION_KEYS). Returns (rewrapped, already
        under the primary key, the ids of those that could not be opened, left untouched)."""
        done, already, failed = 0, 0, []
        async with self.ctx.db.write() as s:
            rows = (
                await s.execute(select(Connection).where(Connection.credentials.is_not(None)))
            ).scalars()
            for row in rows:
                assert row.credentials is not None
                try:
                    if not self.keyring.needs_rewrap(row.credentials):
                        already += 1
                        continue
                    row.credentials = self.keyring.rewrap(row.credentials, context=_context(row.id))
                except EnvelopeError as exc:
                    log.error("connection %s: not rewrapped: %s", row.id, exc)
                    failed.append(row.id)
                    continue
                done += 1
        return done, already, failed

    async def aclose(self) -> None:
        for _, gateway, _ in self._built.values():
            await _close_quietly(gateway)
        self._built.clear()


_TEST_MESSAGES = {
    "credentials_invalid": "the gateway refused its credentials{status}: they are wrong, "
    "revoked or rolled. Replace them with the gateway's current ones.",
    "credentials_forbidden": "the gateway accepted its credentials but refused the check"
    "{status}: they lack a read permission the check needs.",
    "credentials_check_failed": "the gateway refused the check request{status}; the "
    "credentials may still work. See the server log.",
    "gateway_unavailable": "the gateway could not be reached or did not answer, so the "
    "credentials were not checked. Try again.",
    "gateway_rate_limited": "the gateway is rate limiting this account, so the credentials "
    "were not checked. Try again later.",
    "credentials_check_unsupported": "its connector (a plugin older than this check) has "
    "no credentials check, so the credentials were not checked.",
}


def credentials_test_view(
    connection: dict[str, Any], check: CredentialsCheck, now_us: int
) -> dict[str, Any]:
    """A credentials test's answer (``connection_test``): which connection, ``ok``, and for a
    failure the error's stable code and a message naming the connection and the reason."""
    error = None
    if not check.ok:
        code = check.code or "credentials_check_failed"
        status = f" (HTTP {check.http_status})" if check.http_status else ""
        reason = _TEST_MESSAGES.get(code, _TEST_MESSAGES["credentials_check_failed"])
        error = {
            "code": code,
            "message": f"Connection {connection['id']} ({connection['gateway']}): "
            + reason.format(status=status),
            "http_status": check.http_status,
            "request_id": check.request_id,
        }
    return {
        "id": connection["id"],
        "object": "connection_test",
        "connection": connection["id"],
        "gateway": connection["gateway"],
        "livemode": connection["livemode"],
        "ok": check.ok,
        "status": "succeeded" if check.ok else "failed",
        "error": error,
        "created": now_us // 1_000_000,
    }


def _snapshot(row: Connection) -> _Snapshot:
    return _Snapshot(
        id=row.id,
        account_id=row.account_id,
        gateway=row.gateway,
        livemode=row.livemode,
        disabled=row.disabled,
        currencies=tuple(row.currencies) if row.currencies is not None else None,
        payment_method_types=(
            tuple(row.payment_method_types) if row.payment_method_types is not None else None
        ),
        priority=row.priority,
        updated_us=row.updated_us,
        failover=row.failover,
    )


def _context(connection_id: str) -> str:
    """What a sealed credential is bound to: copied to another row, it does not open."""
    return f"connection:{connection_id}:credentials"


def _currencies(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = []
    for value in values:
        code = value.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise PaymuxError.of(
                "parameter_invalid", f"{value!r} is not an ISO 4217 code.", param="currencies"
            )
        out.append(code)
    return out


def _types(connector: Connector, values: list[str] | None) -> list[str] | None:
    """The payment method types a connection enables: only types its connector takes (a
    connection can't promise what its gateway can't do), each once."""
    if values is None:
        return None
    for value in values:
        if value not in connector.payment_method_types:
            raise PaymuxError.of(
                "parameter_invalid",
                f"The {connector.name} gateway does not take payment method type {value!r}; "
                f"it takes {', '.join(sorted(connector.payment_method_types))}.",
                param="payment_method_types",
            )
    return list(dict.fromkeys(values))


def _missing(connection_id: str, param: str) -> PaymuxError:
    return PaymuxError.of("resource_missing", f"No such connection: '{connection_id}'", param=param)


def _read_only(connection_id: str) -> PaymuxError:
    return PaymuxError.of(
        "connection_read_only",
        f"{connection_id} comes from the server's environment variables: change them there.",
        param="id",
    )


async def _close_quietly(gateway: Gateway) -> None:
    try:
        await gateway.aclose()
    except Exception:
        log.warning("closing a replaced gateway client failed", exc_info=True)
