"""Who is paying, as far as the request tells: the payer's IP address, IP country and user
agent, held for the duration of one API request (a context variable the API layer sets).

Where they come from (docs/fraud.md, "Passing the payer's IP"):

- A confirm made from the payer's browser (a publishable key and the client secret): the
  request's own address (the peer, or ``X-Forwarded-For`` from ``PAYMUX_TRUSTED_PROXIES``)
  and its ``User-Agent``.
- A confirm made from the merchant's server (a secret or restricted key): the headers
  ``Paymux-Payer-Ip`` and ``Paymux-Payer-User-Agent`` the server copies from the payer's
  request. The server's own address is never taken for the payer's: counting a merchant's
  server as one IP would let its first declines block all its payers.
- A hosted page (checkout, invoice) is the payer's browser: its address and user agent.
- IP country: from the MaxMind database when one is configured, else ``CF-IPCountry``, but
  only for a browser's request and only when paymux runs behind proxies the operator named
  (``PAYMUX_TRUSTED_PROXIES``), which set that header themselves. paymux can't tell a
  request that came through the proxy from one sent to it directly (uvicorn replaces the
  peer with the forwarded client): with trusted proxies set, don't expose paymux directly.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["PayerRequest", "payer_from_headers", "payer_request", "set_browser_payer"]

_MAX_UA = 500
log = logging.getLogger(__name__)
_warned: list[bool] = []  # once per process


@dataclass(frozen=True, slots=True)
class PayerRequest:
    ip_address: str | None = None
    ip_country: str | None = None  # from a trusted proxy's header; the database wins
    user_agent: str | None = None


payer_request: ContextVar[PayerRequest | None] = ContextVar("paymux_payer", default=None)


def _ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None  # not an address: no IP, rather than a made-up key


def _country(value: str | None) -> str | None:
    if value and len(value.strip()) == 2 and value.strip().isalpha():
        return value.strip().upper()
    return None  # Cloudflare's XX (unknown) and T1 (Tor) are not countries


def payer_from_headers(
    headers: Mapping[str, str],
    *,
    peer: str | None,
    from_browser: bool,
    behind_trusted_proxy: bool,
) -> PayerRequest:
    """The payer's request, from a request's headers (lowercase names) and peer address."""
    if from_browser:
        ip, agent = _ip(peer), headers.get("user-agent")
        if ip is not None and not behind_trusted_proxy and not _warned:
            _warn_if_shared(ip)
    else:
        ip, agent = _ip(headers.get("paymux-payer-ip")), headers.get("paymux-payer-user-agent")
    # A proxy's country header describes the browser's connection: only for a browser's own
    # request (a server's call would carry its own country), behind the operator's proxies.
    trusted = from_browser and behind_trusted_proxy
    country = _country(headers.get("cf-ipcountry")) if trusted else None
    return PayerRequest(ip, country, agent[:_MAX_UA] if agent else None)


def _warn_if_shared(ip: str) -> None:
    """A browser's request from a private or loopback address with no trusted proxies set:
    most likely a proxy paymux wasn't told about, so every payer has its address, and five
    declines anywhere block everyone (``card_testing_ip``). Said once, to the operator."""
    found = ipaddress.ip_address(ip)
    if found.is_private or found.is_loopback:
        _warned.append(True)
        log.warning(
            "payers' requests come from %s, a private address, and PAYMUX_TRUSTED_PROXIES is "
            "not set: if a proxy is in front of paymux, name it there, or every payer "
            "shares one address in the fraud rules (docs/fraud.md)",
            ip,
        )


def set_browser_payer(
    headers: Mapping[str, str], peer: str | None, *, behind_trusted_proxy: bool
) -> None:
    """A hosted page's request (checkout, invoice): the payer's own browser, so its
    address (``client_address``) and user agent are the payer's."""
    payer_request.set(
        payer_from_headers(
            headers, peer=peer, from_browser=True, behind_trusted_proxy=behind_trusted_proxy
        )
    )
