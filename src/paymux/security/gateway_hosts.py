"""Where a connection may send paymux's outbound gateway calls: the rule for ``api_base``.

A connection's credentials may name another API origin (``credentials[api_base]``): for
stripe-mock, localstripe or a provider's regional host. Left open, that let any merchant with
a secret key (or a restricted key with ``connections: write``) make *the server* send HTTP
requests wherever it liked: to loopback, the operator's private network, or a cloud metadata
address (169.254.169.254). A server-side request forgery.

The rule, pure (no I/O, no DNS):

- the URL is ``http(s)://host[:port][/path]`` written plainly: letters, digits, ``.-`` in the
  host (or an IPv6 literal), no user info, no query or fragment, no backslash or escape, so
  every URL parser (ours, httpx's, the Stripe SDK's) reads the same host;
- the host is one of the connector's published API hosts (``Connector.api_hosts``), over
  https on the default port;
- or the operator allowed it with ``PAYMUX_ALLOWED_GATEWAY_HOSTS`` (a comma list of host
  names or IP literals, exact, any port, http or https): a test or development deployment
  pointing at stripe-mock on 127.0.0.1. A live connection still needs https (checked by the
  caller).

A host is compared as written, lower-cased, without a trailing dot: allowing ``127.0.0.1``
allows neither ``127.1`` nor ``localhost``, which is stricter, never looser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["api_base_problem", "host_list"]

_PLAIN_URL = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9.])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?:/[A-Za-z0-9._~/-]*)?"
)


def host_list(value: str | Iterable[str]) -> frozenset[str]:
    """Host names as compared: a comma list (an environment variable) or an iterable,
    lower-cased, without a trailing dot or IPv6 brackets, blanks dropped."""
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(_normal(item) for item in items if item.strip())


def _normal(host: str) -> str:
    # Lower-cased last, so that no other step depends on the case of what it is given.
    return host.strip().rstrip(".").removeprefix("[").removesuffix("]").lower()


def api_base_problem(
    url: str, *, published: frozenset[str], allowed: frozenset[str]
) -> str | None:
    """Why ``url`` may not be a connection's API base (a sentence for the merchant), or None
    when it may. ``published``: the connector's API hosts; ``allowed``: the operator's."""
    match = _PLAIN_URL.fullmatch(url)
    if match is None:
        return (
            "must be a plain http(s)://host[:port][/path] URL (no user info, query, fragment "
            "or escapes)."
        )
    host = _normal(match["host"])
    port = match["port"]
    if host in allowed:
        return None
    if host in published:
        if match["scheme"] != "https" or (port is not None and int(port) != 443):
            return f"{host} is reached over https on the default port only."
        return None
    hosts = ", ".join(sorted(published)) or "none"
    return (
        f"{host} is not one of this gateway's API hosts ({hosts}). The server's operator "
        f"can allow others with PAYMUX_ALLOWED_GATEWAY_HOSTS."
    )
