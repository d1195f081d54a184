"""The failed-authentication limit counts a client by its address block: an IPv6 client by
its /64, so drawing a fresh address from its own network for each try does not escape it."""

from __future__ import annotations

import pytest

from paymux.services.ratelimit import address_hash, client_block


@pytest.mark.parametrize(("address", "block"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("::1", "::/64"),
    ("unix:/run/paymux.sock", "unix:/run/paymux.sock"),
])
def test_a_client_is_counted_by_its_block(address: str, block: str) -> None:
    assert client_block(address) == block


def test_addresses_of_one_ipv6_network_share_a_counter_and_the_next_network_does_not() -> None:
    one = address_hash("2001:db8:1:2::1")
    assert address_hash("2001:db8:1:2:ffff:ffff:ffff:ffff") == one
    assert address_hash("2001:db8:1:3::1") != one
    assert address_hash("203.0.113.7") == address_hash("::ffff:203.0.113.7")
    assert address_hash("203.0.113.7") != address_hash("203.0.113.8")
    assert "203.0.113.7" not in address_hash("203.0.113.7")  # a hash, not the address
