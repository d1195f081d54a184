"""PayPal webhook verification, on the raw bytes, before anything acts on the event.

PayPal signs each delivery and sends ``PAYPAL-TRANSMISSION-ID``, ``-TRANSMISSION-TIME``,
``-TRANSMISSION-SIG`` (base64), ``-CERT-URL`` and ``-AUTH-ALGO`` (``SHA256withRSA``). Two ways
to check them (PAYMUX_PAYPAL_WEBHOOK_VERIFICATION):

- ``api`` (default): PayPal checks it: ``POST /v1/notifications/verify-webhook-signature``
  with the five headers, our webhook id and the event (embedded byte for byte, so PayPal sees
  exactly what it signed) answers ``verification_status`` SUCCESS or FAILURE.
- ``offline``: the signed message is
  ``<transmission id>|<transmission time>|<webhook id>|<CRC32 of the raw body, unsigned
  decimal>``, signed SHA256withRSA with the key of the certificate at PAYPAL-CERT-URL. The URL
  must be https on paypal.com or a subdomain (so a forger can't point us at their own
  certificate); the certificate must chain to a trusted root (PAYMUX_PAYPAL_TRUST_ROOTS, a PEM
  file; default: the certifi bundle httpx uses) and name a paypal.com host. The fetcher is
  injectable, so tests use their own CA and never leave 127.0.0.1.

A replayed delivery needs no timestamp window: the inbox stores each PayPal event id once.

Refusal reasons (``WebhookVerificationError.reason``): ``missing_headers``,
``cert_url_not_allowed``, ``certificate_untrusted``, ``signature_mismatch``,
``verification_failed`` (PayPal's API could not be asked, or no webhook id is configured),
``invalid_payload``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from paymux.gateways.base import WebhookVerificationError
from paymux.gateways.payloads import load_event

__all__ = [
    "CertFetcher",
    "OfflineVerifier",
    "Transmission",
    "api_request_body",
    "check_cert_url",
    "fetch_certificate",
    "load_trust_roots",
    "parse_event",
    "signed_message",
    "transmission",
]

CertFetcher = Callable[[str], Awaitable[bytes]]

_HEADERS = {
    "id": "paypal-transmission-id",
    "time": "paypal-transmission-time",
    "sig": "paypal-transmission-sig",
    "cert_url": "paypal-cert-url",
    "auth_algo": "paypal-auth-algo",
}
_MAX_CERT_BYTES = 64 * 1024
_FETCH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Transmission:
    """The PAYPAL-* headers of one delivery."""

    id: str
    time: str
    sig: str
    cert_url: str
    auth_algo: str


def transmission(headers: dict[str, str]) -> Transmission:
    """The signature headers (names lower-cased), or ``missing_headers``."""
    values = {key: (headers.get(name) or "").strip() for key, name in _HEADERS.items()}
    missing = [_HEADERS[key] for key, value in values.items() if not value]
    if missing:
        raise WebhookVerificationError(
            "missing_headers", f"Missing PayPal signature headers: {', '.join(missing)}."
        )
    return Transmission(**values)


def check_cert_url(url: str) -> None:
    """Only https URLs on paypal.com (or a subdomain), default port, no credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookVerificationError(
            "cert_url_not_allowed", "PAYPAL-CERT-URL is not a URL."
        ) from None
    host = (parts.hostname or "").lower().rstrip(".")
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.password is not None
        or port not in (None, 443)
        or not (host == "paypal.com" or host.endswith(".paypal.com"))
    ):
        raise WebhookVerificationError(
            "cert_url_not_allowed", "PAYPAL-CERT-URL must be an https URL on paypal.com."
        )


def signed_message(
    transmission_id: str, transmission_time: str, webhook_id: str, body: bytes
) -> bytes:
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()


def parse_event(body: bytes) -> dict[str, Any]:
    """The event, once verified (or to send it to PayPal's API for verification)."""
    event = load_event(body)
    if not isinstance(event.get("id"), str) or not isinstance(event.get("event_type"), str):
        raise WebhookVerificationError("invalid_payload", "The event has no id or event_type.")
    return event


def api_request_body(t: Transmission, webhook_id: str, body: bytes) -> bytes:
    """The verify-webhook-signature request, with the event embedded exactly as received (a
    re-serialized event can differ from what PayPal signed, and PayPal then says FAILURE)."""
    head = json.dumps(
        {
            "auth_algo": t.auth_algo,
            "cert_url": t.cert_url,
            "transmission_id": t.id,
            "transmission_sig": t.sig,
            "transmission_time": t.time,
            "webhook_id": webhook_id,
        },
        separators=(",", ":"),
    )
    return head[:-1].encode() + b',"webhook_event":' + body.strip() + b"}"


def load_trust_roots(pem: str | None = None) -> list[x509.Certificate]:
    """CA roots from PEM text (a connection's ``trust_roots``); None: the certifi bundle
    (PayPal's certificates chain to a public CA)."""
    if pem is None:
        import certifi

        return x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())
    return x509.load_pem_x509_certificates(pem.encode())


async def fetch_certificate(url: str) -> bytes:
    """GET the PEM at an allowed URL (checked again here), no redirects, size-capped."""
    check_cert_url(url)
    async with httpx.AsyncClient(timeout=_FETCH_TIMEOUT, follow_redirects=False) as client:
        response = await client.get(url)
        response.raise_for_status()
        if len(response.content) > _MAX_CERT_BYTES:
            raise ValueError("certificate too large")
        return response.content


def _names(cert: x509.Certificate) -> list[str]:
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names += [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    names += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [n.lower().rstrip(".") for n in names]


class OfflineVerifier:
    """Checks PayPal's signature itself: certificate URL, chain, name, then the signature."""

    def __init__(
        self,
        trust_roots: list[x509.Certificate],
        fetch: CertFetcher = fetch_certificate,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_size: int = 16,
    ) -> None:
        self._store = Store(trust_roots) if trust_roots else None
        self._fetch = fetch
        self._now = now
        self._cache: OrderedDict[str, list[x509.Certificate]] = OrderedDict()
        self._cache_size = cache_size

    async def _certificates(self, url: str) -> list[x509.Certificate]:
        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            return cached
        try:
            pem = await self._fetch(url)
            certs = x509.load_pem_x509_certificates(pem)
        except WebhookVerificationError:
            raise
        except Exception as exc:
            raise WebhookVerificationError(
                "verification_failed",
                f"Could not get the certificate at PAYPAL-CERT-URL ({type(exc).__name__}).",
            ) from None
        self._cache[url] = certs
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return certs

    def _check_chain(self, leaf: x509.Certificate, intermediates: list[x509.Certificate]) -> None:
        if self._store is None:
            raise WebhookVerificationError("certificate_untrusted", "No trust roots configured.")
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(self._now())
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError:
            raise WebhookVerificationError(
                "certificate_untrusted",
                "The certificate does not chain to a trusted root or is not valid now.",
            ) from None
        if not any(n == "paypal.com" or n.endswith(".paypal.com") for n in _names(leaf)):
            raise WebhookVerificationError(
                "certificate_untrusted", "The certificate is not issued to a paypal.com host."
            )

    async def verify(self, t: Transmission, webhook_id: str, body: bytes) -> None:
        check_cert_url(t.cert_url)
        if t.auth_algo.upper() != "SHA256WITHRSA":
            raise WebhookVerificationError(
                "verification_failed", f"Unsupported PAYPAL-AUTH-ALGO {t.auth_algo[:32]!r}."
            )
        certs = await self._certificates(t.cert_url)
        if not certs:
            raise WebhookVerificationError("certificate_untrusted", "No certificate at the URL.")
        leaf, intermediates = certs[0], certs[1:]
        self._check_chain(leaf, intermediates)
        try:
            signature = base64.b64decode(t.sig, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookVerificationError(
                "signature_mismatch", "PAYPAL-TRANSMISSION-SIG is not base64."
            ) from None
        key = leaf.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookVerificationError(
                "certificate_untrusted", "The certificate key isn't RSA."
            )
        try:
            key.verify(
                signature,
                signed_message(t.id, t.time, webhook_id, body),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise WebhookVerificationError(
                "signature_mismatch", "The signature does not match the payload."
            ) from None
