"""Which addresses a webhook endpoint may reach (server-side request forgery).

The rule is applied where the connection is made: the host is resolved, EVERY address it
resolves to is checked, and the request goes to the checked address (``delivery``), so a
name that resolves to a public address at registration and to 127.0.0.1 later (DNS
rebinding) is still refused. Registration checks what it can without DNS (scheme, literal
addresses) to refuse an obviously bad URL early.

- live mode: only globally routable addresses, over https only (its certificate verified,
  always: outbound/http1.py);
- test mode: loopback too (a developer's machine, these tests);
- ``PAYMUX_WEBHOOK_ALLOW_PRIVATE``: private, loopback and link-local too, in both modes;
  cloud metadata addresses stay refused whatever the setting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["Blocked", "address_allowed", "check_url", "resolve_allowed"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance and container metadata/credential services (AWS/GCP/Azure/OpenStack, AWS's IPv6
# one, ECS task credentials, EKS Pod Identity): never reachable, even with allow_private.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "169.254.170.23", "fd00:ec2::23")
)
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64's well-known prefix,
# the deprecated IPv4-compatible form): judged by that IPv4 address, as the network routes them.
_EMBEDDING = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))
MAX_URL_LENGTH = 2048


class Blocked(ValueError):
    """The URL or the address it leads to may not be called. The message is safe to show."""


def _plain(ip: IPAddress) -> IPAddress:
    """An IPv6 address that carries an IPv4 one as that IPv4 address: IPv4-mapped
    (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d), IPv4-compatible (::a.b.c.d) and 6to4
    (2002:ab:cd::). :: and ::1 stay themselves."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _EMBEDDING) and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_allowed(ip: IPAddress, *, livemode: bool, allow_private: bool) -> bool:
    """Whether an endpoint of this mode may connect to ``ip``."""
    ip = _plain(ip)
    if ip in _METADATA or ip.is_unspecified or ip.is_multicast:
        return False
    if ip.is_global:
        return True
    if allow_private:
        return ip.is_private or ip.is_loopback or ip.is_link_local
    return not livemode and ip.is_loopback


def check_url(url: str, *, livemode: bool, allow_private: bool) -> None:
    """Refuse a URL that can never be delivered to (raises Blocked): not http(s), no host,
    credentials in it, or a literal address this mode may not reach."""
    if len(url) > MAX_URL_LENGTH:
        raise Blocked(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Blocked("The URL is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise Blocked("The URL must use http or https.")
    if livemode and parts.scheme != "https":
        raise Blocked("A live endpoint's URL must use https.")
    if not parts.hostname:
        raise Blocked("The URL must name a host.")
    if parts.username is not None or parts.password is not None:
        raise Blocked("The URL must not carry credentials.")
    if port == 0:
        raise Blocked("The URL's port is not valid.")
    literal = _literal(parts.hostname)
    if literal is not None and not address_allowed(
        literal, livemode=livemode, allow_private=allow_private
    ):
        raise Blocked(_refusal(livemode))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _refusal(livemode: bool) -> str:
    if livemode:
        return "A live endpoint may not reach private, loopback or link-local addresses."
    return "A test endpoint may reach only public or loopback addresses."


async def resolve_allowed(host: str, port: int, *, livemode: bool, allow_private: bool) -> str:
    """The address to connect to for ``host``: resolved now, every answer checked; raises
    Blocked if any answer may not be reached (or none came back)."""

    literal = _literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise Blocked(f"The host {host!r} does not resolve.") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise Blocked(f"The host {host!r} does not resolve.")
    for ip in addresses:
        if not address_allowed(ip, livemode=livemode, allow_private=allow_private):
            raise Blocked(_refusal(livemode))
    return str(addresses[0])
