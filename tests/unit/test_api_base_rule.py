"""The api_base rule (paymux.security.gateway_hosts): a connection's outbound calls go only to
its gateway's published hosts over https, or to hosts the operator allowed."""

from __future__ import annotations

import pytest

from paymux.gateways.connectors import connectors
from paymux.security.gateway_hosts import api_base_problem, host_list

STRIPE = frozenset({"api.stripe.com"})
LOOPBACK = frozenset({"127.0.0.1"})


@pytest.mark.parametrize("url", [
    "https://api.stripe.com",
    "https://api.stripe.com/",
    "https://api.stripe.com:443/v1",
    "https://API.Stripe.com",
    "https://api.stripe.com./",
])
def test_a_published_host_over_https_is_allowed(url: str) -> None:
    assert api_base_problem(url, published=STRIPE, allowed=frozenset()) is None


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",   # cloud metadata
    "http://10.0.0.1", "https://192.168.1.10", "http://[::1]:8080",  # private, loopback
    "http://127.0.0.1:9", "http://localhost:9", "http://127.1", "http://2130706433",
    "http://0x7f000001", "http://0177.0.0.1",  # loopback spelled otherwise
    "https://api.stripe.com.attacker.example", "https://attacker.example/api.stripe.com",
    "http://api.stripe.com",  # published host, but not over TLS
    "https://api.stripe.com:8443",  # ... or not its port
    "https://api.stripe.com@169.254.169.254/",  # user info: the host is the second one
    "https://user:pw@api.stripe.com",
    "https://api.stripe.com\\@169.254.169.254", "https://api.stripe.com%2F@10.0.0.1",
    "https://api.stripe.com/?x=1", "https://api.stripe.com/#f", "https://api.stripe.com/%2e%2e",
    "ftp://api.stripe.com", "file:///etc/passwd", "//api.stripe.com", "api.stripe.com", "",
    "https://api.stripe.com\n.attacker.example", " https://api.stripe.com",
])
def test_anything_else_is_refused_with_a_reason(url: str) -> None:
    problem = api_base_problem(url, published=STRIPE, allowed=frozenset())
    assert problem is not None and problem.endswith(".")


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://127.0.0.1:12111", LOOPBACK),
    ("https://127.0.0.1", LOOPBACK),
    ("http://stripe-mock:12111/", host_list("stripe-mock, 127.0.0.1")),
    ("http://[::1]:8080", host_list("[::1]")),
])
def test_the_operator_may_allow_other_hosts_on_any_port(
    url: str, allowed: frozenset[str]
) -> None:
    assert api_base_problem(url, published=STRIPE, allowed=allowed) is None


@pytest.mark.parametrize("url", ["http://localhost:12111", "http://127.1:12111",
                                 "http://127.0.0.2", "http://127.0.0.1.nip.io"])
def test_an_allowed_host_is_matched_exactly(url: str) -> None:
    assert api_base_problem(url, published=STRIPE, allowed=LOOPBACK) is not None


def test_the_refusal_names_the_gateway_s_hosts_and_the_setting() -> None:
    problem = api_base_problem("http://10.0.0.1", published=STRIPE, allowed=frozenset())
    assert problem is not None
    assert "api.stripe.com" in problem and "PAYMUX_ALLOWED_GATEWAY_HOSTS" in problem


def test_host_list_reads_the_environment_variable_s_form() -> None:
    assert host_list(" 127.0.0.1, Stripe-Mock.,, [::1] ,") == {"127.0.0.1", "stripe-mock", "::1"}
    assert host_list("") == frozenset()


def test_every_built_in_gateway_that_takes_an_api_base_publishes_its_hosts() -> None:
    found = connectors()
    takes_base = sorted(n for n, c in found.items() if "api_base" in c.credentials.model_fields)
    assert takes_base == ["paypal", "square", "stripe"]
    assert found["stripe"].api_hosts == {"api.stripe.com"}
    assert found["paypal"].api_hosts >= {"api-m.paypal.com", "api-m.sandbox.paypal.com"}
    assert found["square"].api_hosts == {"connect.squareup.com", "connect.squareupsandbox.com"}
    # Each one's own default api_base passes its rule, with nothing allowed by the operator.
    for name in takes_base:
        default = found[name].credentials.model_fields["api_base"].default
        if default is not None:
            assert api_base_problem(
                default, published=found[name].api_hosts, allowed=frozenset()) is None
