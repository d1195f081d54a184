"""Outbound gateway calls in live mode (issue 16): https only, the certificate always verified.

- A live connection's ``credentials[api_base]`` must be https on every gateway (Stripe, PayPal,
  Square), even on a host the operator allows (PAYMUX_ALLOWED_GATEWAY_HOSTS): the same URL is
  taken in test mode, refused in live mode, and nothing is stored.
- A real call from each connector, with a live key, to an API base on 127.0.0.1 served over
  TLS with a self-signed certificate made here (cryptography): it fails with a certificate
  verification error and no request reaches the server, while a client that trusts that
  certificate is answered (the server works; only the verification refused it).
- No credential field turns the verification off (each connector's credentials refuse unknown
  fields; none is named for it), and no setting does (test_ops_outbound_tls.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from paymux.config import Settings
from paymux.gateways.base import GatewayUnavailable
from paymux.gateways.connectors import ConnectorEnv, connectors
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.tls_certificates import make_certificate

db = migrated_database_fixture("ops_gateway_tls", ["sqlite"])  # no database rule at stake

# Live credentials of each gateway, with the API base to call.
LIVE: dict[str, dict[str, str]] = {
    "stripe": {"secret_key": "sk_live_" + "s" * 24},
    "paypal": {"client_id": "live-client", "client_secret": "live-secret"},
    "square": {"access_token": "EAAA" + "q" * 40, "location_id": "L1"},
}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.mark.parametrize("gateway", sorted(LIVE))
def test_a_live_connections_api_base_must_be_https(gateway: str, db: str, tmp_path: Path) -> None:
    plain = "http://127.0.0.1:9"  # an allowed host: only the live rule refuses it

    async def main() -> None:
        async with Harness.open(
            db,
            tmp_path,
            encryption_keys=generate_key_entry("k1"),
            allowed_gateway_hosts="127.0.0.1",
        ) as h:
            live, _ = await h.app.keys.create(h.account, livemode=True)
            body = {"gateway": gateway, "credentials": {**LIVE[gateway], "api_base": plain}}
            r = await h.http.post("/v1/connections", json=body, headers=bearer(live.key))
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["code"], error["param"]) == ("parameter_invalid", "credentials[api_base]")
            assert "https" in error["message"]
            listed = await h.http.get("/v1/connections", headers=bearer(live.key))
            assert listed.json()["data"] == []  # nothing stored
            # Over https, the same host is taken in live mode.
            https = {**body, "credentials": {**LIVE[gateway], "api_base": "https://127.0.0.1:9"}}
            r = await h.http.post("/v1/connections", json=https, headers=bearer(live.key))
            assert (r.status_code, r.json()["livemode"]) == (200, True), r.text
            # Test mode keeps plain http on that host (a local test double).
            test_credentials = {**LIVE[gateway], "api_base": plain}
            if gateway == "stripe":
                test_credentials["secret_key"] = "sk_test_" + "s" * 24
            r = await h.http.post(
                "/v1/connections", json={"gateway": gateway, "credentials": test_credentials}
            )
            assert (r.status_code, r.json()["livemode"]) == (200, False), r.text

    asyncio.run(main())


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield make_certificate(tmp_path)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


@pytest.mark.parametrize("gateway", sorted(LIVE))
def test_a_live_gateway_call_to_an_untrusted_certificate_fails_and_sends_nothing(
    gateway: str, certificate: tuple[Path, Path]
) -> None:
    certfile, keyfile = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certfile, keyfile)
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=served)
        base = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        connector = connectors()[gateway]
        credentials = connector.credentials.model_validate({**LIVE[gateway], "api_base": base})
        env = ConnectorEnv(Settings(database_url="sqlite://"), "https://paymux.test/webhooks/x")
        built: Any = connector.build(credentials, env)
        try:
            with pytest.raises(GatewayUnavailable) as caught:
                await built.retrieve("ref_123")
            causes = list(_causes(caught.value))
            assert any(isinstance(c, ssl.SSLCertVerificationError) for c in causes), causes
            assert requests == []  # the request was never sent
            # The server itself answers a client that trusts its certificate.
            trusting = ssl.create_default_context(cafile=str(certfile))
            async with httpx.AsyncClient(verify=trusting) as client:
                assert (await client.get(f"{base}/ping")).status_code == 200
            assert len(requests) == 1
        finally:
            await built.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


@pytest.mark.parametrize("gateway", sorted(LIVE))
def test_no_credential_field_turns_certificate_verification_off(gateway: str) -> None:
    connector = connectors()[gateway]
    fields = " ".join(connector.credentials.model_fields).lower()
    for word in ("verify", "insecure", "ssl", "cert_reqs", "tls"):
        assert word not in fields
    for switch in ({"verify": False}, {"verify_ssl": False}, {"insecure": True}):
        with pytest.raises(ValidationError):
            connector.credentials.model_validate({**LIVE[gateway], **switch})
