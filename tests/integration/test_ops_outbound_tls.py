"""Live outbound webhooks over TLS (issue 16): the receiver's certificate is always verified.
An endpoint behind a certificate no public authority signed (made here) gets no request at
all, the attempt is recorded failed with the verification error, and no setting turns the
check off. paymux in-process (support/harness.py), SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from paymux.config import Settings
from paymux.outbound.delivery import DeliveryRunner
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.tls_certificates import make_certificate

db = migrated_database_fixture("outbound_tls")


def test_a_live_endpoint_with_an_untrusted_certificate_gets_nothing(
    db: str, tmp_path: Path
) -> None:
    certfile, keyfile = make_certificate(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certfile, keyfile)
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=served)
        port = server.sockets[0].getsockname()[1]
        async with Harness.open(
            db,
            tmp_path,
            encryption_keys=generate_key_entry("k1"),
            webhook_allow_private=True,  # loopback, as a private network's endpoint would be
        ) as h:
            runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            # The context the deliveries are made with: the certificate and the host name
            # checked, against the system's authorities only.
            tls = runner.client.tls
            assert tls.verify_mode == ssl.CERT_REQUIRED and tls.check_hostname is True
            assert tls.minimum_version >= ssl.TLSVersion.TLSv1_2
            try:
                new, _ = await h.app.keys.create(h.account, livemode=True)
                live = {"authorization": f"Bearer {new.key}"}
                r = await h.http.post(
                    "/v1/webhook_endpoints",
                    headers=live,
                    json={"url": f"https://localhost:{port}/hooks", "enabled_events": ["*"]},
                )
                assert r.status_code == 200, r.text
                ep = r.json()["id"]
                r = await h.http.post("/v1/customers", headers=live, json={"email": "x@e.com"})
                assert r.status_code == 200, r.text
                await runner.drain()
            finally:
                await runner.client.aclose()
                server.close()
                await server.wait_closed()
            assert seen == []  # not a byte of the event reached the receiver
            rows = await h.sql(
                "select status, error from webhook_attempts where endpoint_id = :e", e=ep
            )
            assert len(rows) == 1 and rows[0][0] == "failed", rows
            assert rows[0][1].startswith("SSLCertVerificationError")

    asyncio.run(main())


def test_no_setting_turns_certificate_verification_off() -> None:
    names = " ".join(Settings.model_fields).lower()
    for word in ("verify", "insecure", "tls_skip", "ssl_verify", "cert_reqs"):
        assert word not in names
