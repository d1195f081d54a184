"""Signing PayPal webhooks in tests: a throwaway CA, a certificate for
messageverificationcerts.paypal.com issued by it, and the PAYPAL-* headers for a body, signed
the way PayPal signs (SHA256withRSA over ``id|time|webhook_id|crc32``)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from paymux.gateways.paypal.webhooks import signed_message

__all__ = ["CERT_URL", "Issued", "TestCA", "sign_headers"]

CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-test"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    def pem(self, *chain: x509.Certificate) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.cert, *chain))


class TestCA:
    """A root CA (``ca=True``) that issues leaf certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "paymux test root") -> None:
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        host: str = "messageverificationcerts.paypal.com",
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        key = _key()
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert, key)


def sign_headers(
    body: bytes,
    key: rsa.RSAPrivateKey,
    webhook_id: str,
    *,
    cert_url: str = CERT_URL,
    transmission_id: str | None = None,
    transmission_time: str | None = None,
) -> dict[str, str]:
    """The PAYPAL-* headers PayPal would send with ``body`` (names lower-cased)."""
    tid = transmission_id or str(uuid.uuid4())
    when = transmission_time or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = key.sign(
        signed_message(tid, when, webhook_id, body), padding.PKCS1v15(), hashes.SHA256()
    )
    return {
        "paypal-transmission-id": tid,
        "paypal-transmission-time": when,
        "paypal-transmission-sig": base64.b64encode(signature).decode(),
        "paypal-cert-url": cert_url,
        "paypal-auth-algo": "SHA256withRSA",
    }
