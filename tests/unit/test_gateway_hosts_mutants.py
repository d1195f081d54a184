"""The api_base rule's exact answers (paymux.security.gateway_hosts), pinned so a mutation of
any branch, message or normalization step fails a test: the sentences are shown to merchants."""

from __future__ import annotations

from paymux.security.gateway_hosts import api_base_problem, host_list

STRIPE = frozenset({"api.stripe.com"})
NONE: frozenset[str] = frozenset()


def test_a_url_that_is_not_plain_gets_the_plain_url_sentence() -> None:
    assert api_base_problem("https://user@api.stripe.com", published=STRIPE, allowed=NONE) == (
        "must be a plain http(s)://host[:port][/path] URL (no user info, query, fragment "
        "or escapes)."
    )


def test_a_published_host_off_https_or_off_port_443_gets_the_https_sentence() -> None:
    expected = "api.stripe.com is reached over https on the default port only."
    for url in ("http://api.stripe.com", "https://API.stripe.com.:444", "https://api.stripe.com:80"):
        assert api_base_problem(url, published=STRIPE, allowed=NONE) == expected
    assert api_base_problem("https://api.stripe.com:443", published=STRIPE, allowed=NONE) is None
    assert api_base_problem("https://api.stripe.com:0443", published=STRIPE, allowed=NONE) is None


def test_an_unknown_host_gets_the_sorted_published_hosts_and_the_setting() -> None:
    published = frozenset({"b.example", "a.example"})
    assert api_base_problem("https://Evil.example./v1", published=published, allowed=NONE) == (
        "evil.example is not one of this gateway's API hosts (a.example, b.example). The "
        "server's operator can allow others with PAYMUX_ALLOWED_GATEWAY_HOSTS."
    )


def test_a_gateway_without_published_hosts_says_none() -> None:
    assert api_base_problem("https://x.example", published=NONE, allowed=NONE) == (
        "x.example is not one of this gateway's API hosts (none). The server's operator can "
        "allow others with PAYMUX_ALLOWED_GATEWAY_HOSTS."
    )


def test_an_allowed_host_passes_on_any_scheme_and_port_even_if_published() -> None:
    allowed = frozenset({"api.stripe.com"})
    assert api_base_problem("http://api.stripe.com:8080", published=STRIPE, allowed=allowed) is None
    ipv6 = host_list(["[::1]"])
    assert api_base_problem("http://[::1]:9", published=STRIPE, allowed=ipv6) is None


def test_host_list_takes_an_iterable_as_well_as_a_comma_list() -> None:
    assert host_list(["Api.Example.", " [::1] ", "", "  "]) == {"api.example", "::1"}
    assert host_list("a.example,B.example.") == {"a.example", "b.example"}
    assert host_list(["a,b"]) == {"a,b"}


def test_a_host_ending_in_a_capital_x_keeps_it() -> None:
    assert host_list("MAILBOX., [::1]") == {"mailbox", "::1"}
    assert host_list("XX.XX.") == {"xx.xx"}
