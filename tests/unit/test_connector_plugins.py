"""Connectors register themselves: a fourth gateway, written outside paymux and installed as a
plugin (an entry point in ``paymux.connectors``), needs no change to any paymux file."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from paymux.config import Settings
from paymux.domain.errors import GATEWAY_CODES, card_error, map_gateway_code
from paymux.gateways.base import Gateway
from paymux.gateways.connectors import (
    CAPABILITIES,
    Connector,
    ConnectorEnv,
    DuplicateConnectorError,
    clear_connector_cache,
    connectors,
)
from paymux.gateways.registry import build_registry
from paymux.gateways.sandbox import SandboxGateway
from paymux.gateways.sandbox.spec import shared_processor

PLUGIN_MODULE = "paymux_acme_plugin"

# A gateway package as a third party would publish it: its own Gateway (the scripted fake
# under a name of its own), credentials model, error rows and Connector. It reads its own
# environment variables; paymux's Settings know nothing of it.
PLUGIN_SOURCE = '''
"""Acme Payments for paymux."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from paymux.config import Settings
from paymux.gateways.connectors import Connector, ConnectorEnv
from support.fake_gateway import ScriptedGateway


class AcmeCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr
    merchant_id: str
    webhook_secret: SecretStr | None = None


class AcmeGateway(ScriptedGateway):
    def __init__(self, credentials: AcmeCredentials, webhook_url: str) -> None:
        secret = credentials.webhook_secret
        super().__init__(
            "acme", webhook_secret=secret.get_secret_value() if secret else "whsec_acme"
        )
        self.merchant_id = credentials.merchant_id
        self.webhook_url = webhook_url


def build(credentials: AcmeCredentials, env: ConnectorEnv) -> AcmeGateway:
    return AcmeGateway(credentials, env.webhook_url)


def from_environment(settings: Settings) -> AcmeCredentials | None:
    key = os.environ.get("ACME_API_KEY")
    if not key:
        return None
    return AcmeCredentials(api_key=key, merchant_id=os.environ.get("ACME_MERCHANT_ID", "m_1"))


CONNECTOR = Connector(
    name="acme",
    credentials=AcmeCredentials,
    build=build,
    from_environment=from_environment,
    capabilities=frozenset({"refunds", "manual_capture"}),
    error_codes=[
        ("ACME-51", "card_declined", "insufficient_funds"),
        ("ACME-43", "card_declined", "stolen_card"),
    ],
)

# Another connector with the same name, as a fork of the plugin would have.
FORK = Connector(
    name="acme",
    credentials=AcmeCredentials,
    build=build,
    from_environment=from_environment,
)

# A connector named like a built-in one.
SHADOW = Connector(
    name="stripe",
    credentials=AcmeCredentials,
    build=build,
    from_environment=from_environment,
)
'''

ALL = frozenset(
    {"partial_capture", "three_d_secure", "vault", "disputes", "refunds", "manual_capture"}
)
BUILT_IN = {
    "sandbox": frozenset(
        {"partial_capture", "three_d_secure", "vault", "refunds", "manual_capture"}
    ),
    "stripe": ALL,
    "paypal": ALL,
    "square": ALL,
}


def _distribution(root: Path, name: str, entries: dict[str, str]) -> None:
    """An installed distribution as pip leaves it: ``<name>-0.dist-info`` with METADATA and
    entry_points.txt."""
    info = root / f"{name}-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[paymux.connectors]\n{lines}")


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install the plugin (with the given entry points) on sys.path; afterwards uninstall it
    and leave the connectors and the code table as they were."""
    connectors()
    before = dict(GATEWAY_CODES)
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))

    def install_(**distributions: dict[str, str]) -> None:
        for name, entries in distributions.items():
            _distribution(tmp_path, name, entries)
        monkeypatch.syspath_prepend(str(tmp_path))
        clear_connector_cache()

    yield install_
    monkeypatch.undo()  # off sys.path, and the environment as it was
    sys.modules.pop(PLUGIN_MODULE, None)
    clear_connector_cache()
    connectors()
    assert GATEWAY_CODES == before


def test_the_built_in_connectors_are_found_with_their_capabilities() -> None:
    found = connectors()
    assert {name: c.capabilities for name, c in found.items()} == BUILT_IN
    assert all(c.capabilities <= CAPABILITIES for c in found.values())
    assert [name for name, c in found.items() if c.test_only] == ["sandbox"]
    assert {name: c.secret_fields() for name, c in found.items()} == {
        "sandbox": ["webhook_secret"],
        "stripe": ["secret_key", "webhook_secrets"],
        "paypal": ["client_secret"],
        "square": ["access_token", "webhook_signature_key"],
    }


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_a_built_in_credentials_model_refuses_an_unknown_field(name: str) -> None:
    with pytest.raises(ValidationError, match="extra"):
        connectors()[name].credentials.model_validate({"colour": "blue"})


def test_the_built_in_connectors_bring_their_code_rows() -> None:
    connectors()
    assert map_gateway_code("stripe", "invalid_cvc").decline_code == "incorrect_cvc"
    assert map_gateway_code("square", "CVV_FAILURE").code == "incorrect_cvc"
    assert map_gateway_code("paypal", "5120").code == "card_declined"
    assert map_gateway_code("paypal", "5120").decline_code == "insufficient_funds"
    assert map_gateway_code("sandbox", "lost_card").decline_code == "lost_card"
    assert {gateway for gateway, _ in GATEWAY_CODES} == set(BUILT_IN)


def test_a_plugin_is_found_through_its_entry_point_and_brings_its_code_rows(
    install: Callable[..., None],
) -> None:
    install(paymux_acme_plugin={"acme": f"{PLUGIN_MODULE}:CONNECTOR"})
    found = connectors()
    assert set(found) == set(BUILT_IN) | {"acme"}
    acme = found["acme"]
    assert acme.capabilities == {"refunds", "manual_capture"}
    assert acme.secret_fields() == ["api_key", "webhook_secret"]
    assert not acme.test_only

    row = map_gateway_code("acme", "ACME-51")
    assert (row.code, row.decline_code) == ("card_declined", "insufficient_funds")
    error = card_error("acme", "ACME-43")
    assert (error.code, error.decline_code, error.gateway) == (
        "card_declined",
        "stolen_card",
        "acme",
    )
    assert map_gateway_code("acme", "ACME-99").decline_code == "generic_decline"  # unmapped


def test_a_plugin_credentials_model_refuses_unknown_fields_and_builds_its_gateway(
    install: Callable[..., None],
) -> None:
    install(paymux_acme_plugin={"acme": f"{PLUGIN_MODULE}:CONNECTOR"})
    acme = connectors()["acme"]
    with pytest.raises(ValidationError, match="colour"):
        acme.credentials.model_validate({"api_key": "ak_1", "merchant_id": "m", "colour": "red"})
    credentials = acme.credentials.model_validate({"api_key": "ak_1", "merchant_id": "m_9"})
    assert "ak_1" not in repr(credentials)
    env = ConnectorEnv(Settings(), "https://pay.example/webhooks/conn_123")
    gateway = acme.build(credentials, env)
    assert isinstance(gateway, Gateway)
    assert gateway.name == "acme"
    assert gateway.webhook_url == "https://pay.example/webhooks/conn_123"  # type: ignore[attr-defined]
    assert gateway.merchant_id == "m_9"  # type: ignore[attr-defined]


def test_build_registry_builds_a_plugin_its_environment_configures(
    install: Callable[..., None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install(paymux_acme_plugin={"acme": f"{PLUGIN_MODULE}:CONNECTOR"})
    settings = Settings(
        sandbox_enabled=False,
        sandbox_db=str(tmp_path / "sandbox.db"),
        public_url="https://pay.example/",
        default_gateway="acme",
    )
    assert "acme" not in build_registry(settings)  # not configured
    monkeypatch.setenv("ACME_API_KEY", "ak_live_1")
    monkeypatch.setenv("ACME_MERCHANT_ID", "m_42")
    registry = build_registry(settings)
    gateway = registry["acme"]
    assert gateway.name == "acme" and registry.default == "acme"
    assert gateway.webhook_url == "https://pay.example/webhooks/acme"  # type: ignore[attr-defined]
    assert gateway.merchant_id == "m_42"  # type: ignore[attr-defined]
    assert "sandbox" not in registry and registry.sandbox() is None


def test_a_plugin_named_like_a_built_in_connector_is_refused(
    install: Callable[..., None],
) -> None:
    install(paymux_acme_plugin={"stripe": f"{PLUGIN_MODULE}:SHADOW"})
    with pytest.raises(DuplicateConnectorError, match=r"'stripe'.*paymux\.gateways\.stripe\.spec"):
        connectors()


def test_two_plugins_with_one_name_are_refused(install: Callable[..., None]) -> None:
    install(
        paymux_acme_plugin={"acme": f"{PLUGIN_MODULE}:CONNECTOR"},
        acme_fork={"acme_fork": f"{PLUGIN_MODULE}:FORK"},
    )
    with pytest.raises(DuplicateConnectorError, match="two connectors are named 'acme'"):
        connectors()


def test_an_entry_point_that_is_not_a_connector_is_refused(
    install: Callable[..., None],
) -> None:
    install(paymux_acme_plugin={"acme": f"{PLUGIN_MODULE}:build"})
    with pytest.raises(TypeError, match="not a paymux Connector"):
        connectors()


def test_a_connector_must_refuse_unknown_credential_fields_and_name_known_capabilities() -> None:
    stripe = connectors()["stripe"]

    class Loose(stripe.credentials):  # type: ignore[name-defined,misc]
        model_config = {"extra": "allow"}

    with pytest.raises(ValueError, match="refuse unknown fields"):
        Connector("loose", Loose, stripe.build, stripe.from_environment)
    with pytest.raises(ValueError, match="unknown capabilities"):
        Connector(
            "odd",
            stripe.credentials,
            stripe.build,
            stripe.from_environment,
            capabilities=frozenset({"time_travel"}),
        )
    with pytest.raises(ValueError, match="lower-case"):
        Connector("Acme Pay", stripe.credentials, stripe.build, stripe.from_environment)


def test_the_environment_builds_the_same_gateways_as_before(tmp_path: Path) -> None:
    settings = Settings(
        sandbox_db=str(tmp_path / "sandbox.db"),
        public_url="https://pay.example",
        sandbox_webhook_secret="whsec_sbx",
        sandbox_latency=0.25,
        stripe_secret_key="sk_test_1",
        stripe_publishable_key="pk_test_1",
        stripe_webhook_secrets="whsec_a, ,whsec_b",
        stripe_api_base="http://127.0.0.1:9",
        paypal_client_id="id",
        paypal_client_secret="secret",
        square_access_token="EAAAsecret",
        square_location_id="L1",
        square_webhook_signature_key="k1,k2",
        gateway_timeout=7.0,
    )
    registry = build_registry(settings)
    try:
        assert set(registry) == set(BUILT_IN) and registry.default == "sandbox"
        sandbox = registry.sandbox()
        assert sandbox is not None
        assert sandbox.webhook_url == "https://pay.example/webhooks/sandbox"
        assert sandbox.webhook_secrets == ["whsec_sbx"] and sandbox.latency == 0.25
        assert sandbox.processor.public_url == "https://pay.example"
        stripe = registry["stripe"]
        assert stripe.webhook_secrets == ["whsec_a", "whsec_b"]  # type: ignore[attr-defined]
        assert stripe.publishable_key == "pk_test_1"  # type: ignore[attr-defined]
        square = registry["square"]
        assert square.webhook_url == "https://pay.example/webhooks/square"  # type: ignore[attr-defined]
        assert square.webhook_signature_keys == ["k1", "k2"]  # type: ignore[attr-defined]
        assert registry["paypal"].webhook_verification == "api"  # type: ignore[attr-defined]
    finally:
        for gateway in registry.values():
            asyncio.run(gateway.aclose())


def test_every_sandbox_connection_shares_one_simulated_provider(tmp_path: Path) -> None:
    settings = Settings(sandbox_db=str(tmp_path / "sandbox.db"), public_url="https://pay.example")
    sandbox = connectors()["sandbox"]
    one = sandbox.build(
        sandbox.credentials(), ConnectorEnv(settings, "https://pay.example/webhooks/a")
    )
    two = sandbox.build(
        sandbox.credentials.model_validate({"latency": 0.1}),
        ConnectorEnv(settings, "https://pay.example/webhooks/b"),
    )
    assert isinstance(one, SandboxGateway) and isinstance(two, SandboxGateway)
    assert one.processor is two.processor
    assert one.processor is shared_processor(str(tmp_path / "sandbox.db"), "https://pay.example")
    assert (one.webhook_url, two.webhook_url) == (
        "https://pay.example/webhooks/a",
        "https://pay.example/webhooks/b",
    )
    assert build_registry(settings).sandbox().processor is one.processor  # type: ignore[union-attr]
