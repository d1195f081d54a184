"""What a connection can take, enforced before any gateway call (SQLite and PostgreSQL):
``payment_method_types`` steer routing to a connection that takes them (else a 400 naming
``payment_method_types``); an operation needing a capability the connector does not declare
(manual or partial capture, a vault) is a 400 ``capability_not_supported``, never the
gateway's error; the sandbox's ``latency`` and ``webhook_delay`` have an upper bound.

Two connectors with fewer capabilities are registered in the server's process at the
connector seam: the sandbox gateway under other names, declaring less than the sandbox does
(one also takes ``paypal`` payments, which the sandbox does not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Api, RunningServer, database_url, free_port, make_settings
from paymux.gateways import connectors as connector_module
from paymux.gateways.connectors import Connector, ConnectorEnv, connectors
from paymux.gateways.sandbox import SandboxGateway
from paymux.gateways.sandbox.credentials import SandboxCredentials
from paymux.gateways.sandbox.spec import shared_processor
from paymux.security.envelope import generate_key_entry
from paymux.storage.migrate import upgrade
from support.errors import status_code_param as error_of
from support.pgcluster import PgCluster


class LimitedGateway(SandboxGateway):
    name = "limited_pay"


class BasicGateway(SandboxGateway):
    name = "basic_pay"


def _builder(cls: type[SandboxGateway]) -> Any:
    def build(credentials: SandboxCredentials, env: ConnectorEnv) -> SandboxGateway:
        return cls(shared_processor(env.settings.sandbox_db, env.settings.base_url()),
                   webhook_url=env.webhook_url)
    return build


# Holds an authorization and captures all of it, never part; no vault, no 3-D Secure.
LIMITED = Connector(
    name="limited_pay", credentials=SandboxCredentials, build=_builder(LimitedGateway),
    from_environment=lambda settings: None, test_only=True,
    capabilities=frozenset({"refunds", "manual_capture"}),
    payment_method_types=frozenset({"card", "paypal"}),
)
# Captures at once only.
BASIC = Connector(
    name="basic_pay", credentials=SandboxCredentials, build=_builder(BasicGateway),
    from_environment=lambda settings: None, test_only=True,
    capabilities=frozenset({"refunds"}),
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    connectors()  # discovered, then two more added for this module's server
    found = connector_module._found
    assert found is not None
    found.update({LIMITED.name: LIMITED, BASIC.name: BASIC})
    tmp: Path = tmp_path_factory.mktemp(f"capabilities-{request.param}")
    url = database_url(request.param, tmp, pg_cluster, f"capabilities_{request.param}")
    upgrade(url)
    settings = make_settings(url, tmp, free_port(),
                             encryption_keys=generate_key_entry("k2026"))
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()
        found.pop(LIMITED.name, None)
        found.pop(BASIC.name, None)


@pytest.fixture
def api(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


def connection(api: Api, gateway: str, **extra: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/connections", {"gateway": gateway, "credentials": {}, **extra})


def calls_at_sandbox(api: Api, pi_id: str) -> int:
    return len(api.charges(pi_id))


def test_payment_method_types_steer_routing_to_a_connection_that_takes_them(api: Api) -> None:
    cards = connection(api, "sandbox", priority=0)
    wallet = connection(api, "limited_pay", priority=1)
    assert wallet["payment_method_types"] is None  # all its connector takes
    card_pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "payment_method_types": ["card"]})
    assert card_pi["connection"] == cards["id"]  # both take cards: the first by priority
    wallet_pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "payment_method_types": ["paypal"]})
    assert wallet_pi["connection"] == wallet["id"]  # the only one that takes paypal
    assert wallet_pi["payment_method_types"] == ["paypal"]
    before = api.counts()
    # paypal through a connection named that doesn't take it, or once the one that does is
    # disabled: a 400 naming the parameter, and nothing recorded or sent.
    refused = [api.post("/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "gateway": cards["id"],
        "payment_method_types": ["paypal"]})]
    api.ok("POST", f"/v1/connections/{wallet['id']}", {"disabled": True})
    refused.append(api.post("/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "payment_method_types": ["paypal"],
        "payment_method": "pm_card_visa", "confirm": True}))
    # And with no connection of its own taking paypal left, the deployment's sandbox is
    # never used in their place (the account has its own connections for usd).
    refused.append(api.post("/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "payment_method_types": ["paypal"]}))
    for r in refused:
        assert error_of(r) == (400, "parameter_invalid", "payment_method_types"), r.text
    assert api.counts() == before


def test_a_connection_enables_only_types_its_connector_takes(api: Api) -> None:
    r = api.post("/v1/connections", {"gateway": "sandbox", "credentials": {},
                                     "payment_method_types": ["bank_transfer"]})
    assert error_of(r) == (400, "parameter_invalid", "payment_method_types")
    cards_only = connection(api, "limited_pay", payment_method_types=["card"])
    r = api.post("/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "gateway": cards_only["id"],
        "payment_method_types": ["paypal"]})
    assert error_of(r) == (400, "parameter_invalid", "payment_method_types")
    updated = api.post(f"/v1/connections/{cards_only['id']}",
                       {"payment_method_types": ["card", "bank_transfer"]})
    assert error_of(updated) == (400, "parameter_invalid", "payment_method_types")


def test_a_partial_capture_without_the_capability_is_a_clear_400(api: Api) -> None:
    limited = connection(api, "limited_pay")
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 3000, "currency": "usd", "gateway": limited["id"], "capture_method": "manual",
        "payment_method": "pm_card_visa", "confirm": True})
    assert pi["status"] == "requires_capture"
    r = api.post(f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 1000})
    assert error_of(r) == (400, "capability_not_supported", "amount_to_capture")
    assert "limited_pay" in r.json()["error"]["message"]
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (after["status"], after["amount_capturable"]) == ("requires_capture", 3000)
    captured = api.ok("POST", f"/v1/payment_intents/{pi['id']}/capture", {})
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 3000)


def test_manual_capture_and_saving_need_their_capabilities(api: Api) -> None:
    basic = connection(api, "basic_pay", priority=0)
    before = api.counts()
    r = api.post("/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "gateway": basic["id"], "capture_method": "manual",
        "payment_method": "pm_card_visa", "confirm": True})
    assert error_of(r) == (400, "capability_not_supported", "capture_method")
    cus = api.ok("POST", "/v1/customers", {"email": "c@example.com"})["id"]
    r = api.post("/v1/setup_intents", {"customer": cus, "gateway": "basic_pay",
                                       "payment_method": "pm_card_visa", "confirm": True})
    assert error_of(r) == (400, "capability_not_supported", "gateway")
    after = api.counts()
    assert {k: after[k] - before[k] for k in after} == {
        "payment_intents": 0, "refunds": 0, "customers": 1, "payment_methods": 0,
        "events": 1, "gateway_attempts": 0}  # the customer and its event only
    # The account's only connection for usd can't hold an authorization: a 400, never the
    # deployment's gateway (another provider account) in its place.
    r = api.post("/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "capture_method": "manual",
        "payment_method": "pm_card_visa", "confirm": True})
    assert error_of(r) == (400, "capability_not_supported", "capture_method"), r.text
    assert api.counts() == after
    # Routing picks a connection of the account's that can: its sandbox (priority after
    # basic_pay) holds it.
    own_sandbox = connection(api, "sandbox", priority=1)
    held = api.ok("POST", "/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "capture_method": "manual",
        "payment_method": "pm_card_visa", "confirm": True})
    assert held["status"] == "requires_capture" and held["connection"] == own_sandbox["id"]
    paid = api.ok("POST", "/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    assert paid["status"] == "succeeded" and paid["connection"] == basic["id"]


@pytest.mark.parametrize(("field", "value"), [
    ("latency", 1e9), ("latency", 60.5), ("latency", -1), ("latency", "Infinity"),
    ("latency", True), ("webhook_delay", 86400), ("webhook_delay", -0.5),
    ("webhook_delay", "NaN"),
])
def test_sandbox_delays_out_of_bounds_are_a_400_naming_the_field(
    api: Api, field: str, value: Any
) -> None:
    r = api.post("/v1/connections", {"gateway": "sandbox", "credentials": {field: value}})
    assert error_of(r) == (400, "parameter_invalid", f"credentials[{field}]"), r.text


def test_sandbox_delays_within_bounds_are_kept_and_updates_are_bounded_too(api: Api) -> None:
    made = connection(api, "sandbox", credentials={"latency": 0.01, "webhook_delay": 60})
    r = api.post(f"/v1/connections/{made['id']}", {"credentials": {"latency": 3600}})
    assert error_of(r) == (400, "parameter_invalid", "credentials[latency]")
    paid = api.ok("POST", "/v1/payment_intents", {
        "amount": 500, "currency": "usd", "gateway": made["id"],
        "payment_method": "pm_card_visa", "confirm": True})
    assert paid["status"] == "succeeded"


def test_a_test_key_naming_a_live_environment_connection_is_refused(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """``gateway: conn_env_<name>`` is checked against the request's mode like a stored
    connection. The deployment's Stripe gateway here has a live secret key (shared with every
    account), so a test key naming it gets ``gateway_unknown`` and nothing is recorded or
    sent. (Its api_base is a loopback port nobody listens on: a call would fail, not leave.)"""
    url = database_url("sqlite", tmp_path, pg_cluster, "env_mode")
    upgrade(url)
    settings = make_settings(
        url, tmp_path, free_port(), environment_connections="all",
        stripe_secret_key="sk_" + "live_" + "0" * 24,  # built here: no key-shaped literal
        stripe_api_base=f"http://127.0.0.1:{free_port()}")
    running = RunningServer(settings).start()
    client = Api(running)
    try:
        before = client.counts()
        r = client.post("/v1/payment_intents", {
            "amount": 1000, "currency": "usd", "gateway": "conn_env_stripe",
            "payment_method": "pm_card_visa", "confirm": True})
        assert error_of(r) == (400, "gateway_unknown", "gateway"), r.text
        assert "other mode" in r.json()["error"]["message"]
        assert client.counts() == before
    finally:
        client.close()
        running.stop()


def test_a_new_currency_is_routed_again_to_a_connection_that_takes_the_intents_types(
    api: Api,
) -> None:
    """Changing an open intent's currency routes it again, with its payment_method_types:
    the paypal payment stays with the one connection that takes paypal, not the first by
    priority."""
    connection(api, "sandbox", priority=0)
    wallet = connection(api, "limited_pay", priority=1)
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1000, "currency": "usd", "payment_method_types": ["paypal"]})
    assert pi["connection"] == wallet["id"]
    moved = api.ok("POST", f"/v1/payment_intents/{pi['id']}", {"currency": "eur"})
    assert (moved["currency"], moved["connection"]) == ("eur", wallet["id"])
    assert moved["payment_method_types"] == ["paypal"]
