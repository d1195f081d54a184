"""A PayPal connection's ``trust_roots`` (offline webhook verification) is PEM text, never a
path: a merchant creating a connection must not make paymux read a file of its server. The
operator's PAYMUX_PAYPAL_TRUST_ROOTS names a file, read once at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from paymux.config import Settings
from paymux.gateways.paypal.credentials import PayPalCredentials, from_environment


def _credentials(**extra: object) -> PayPalCredentials:
    return PayPalCredentials.model_validate(
        {"client_id": "id", "client_secret": "secret", "webhook_verification": "offline", **extra}
    )


@pytest.mark.parametrize("value", ["/etc/passwd", "../../etc/shadow", "C:\\\\secrets.pem",
                                   "file:///etc/ssl/private/key.pem", ""])
def test_a_path_or_anything_but_pem_text_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _credentials(trust_roots=value)
    [error] = caught.value.errors()
    assert error["loc"] == ("trust_roots",)
    assert "file path is not accepted" in error["msg"]


def test_pem_looking_text_that_holds_no_certificate_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        _credentials(trust_roots="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert "no readable PEM certificate" in caught.value.errors()[0]["msg"]


def test_the_operators_file_is_read_at_start_up(tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "paymux test CA")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(Encoding.PEM).decode()
    roots = tmp_path / "roots.pem"
    roots.write_text(pem)
    settings = Settings(paypal_client_id="id", paypal_client_secret="secret",
                        paypal_webhook_verification="offline", paypal_trust_roots=str(roots))
    made = from_environment(settings)
    assert made is not None and made.trust_roots == pem
    assert _credentials(trust_roots=pem).trust_roots == pem
