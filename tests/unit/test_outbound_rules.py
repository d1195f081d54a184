"""The pure rules of outbound webhooks: which addresses an endpoint may reach, the retry
schedule, and the signatures (against the Standard Webhooks spec's test vector and
stripe-python's own verifier)."""

from __future__ import annotations

import ipaddress
import random

import pytest
import standardwebhooks
import stripe

from paymux.outbound.schedule import DEFAULT_SCHEDULE, parse_schedule, retry_delay
from paymux.outbound.signing import new_secret, signed_headers
from paymux.outbound.ssrf import Blocked, address_allowed, check_url


@pytest.mark.parametrize(
    ("address", "live", "test", "widened"),
    [
        ("93.184.216.34", True, True, True),  # public
        ("2606:2800:220:1:248:1893:25c8:1946", True, True, True),
        ("127.0.0.1", False, True, True),
        ("::1", False, True, True),
        ("::ffff:127.0.0.1", False, True, True),  # IPv4-mapped loopback
        ("10.0.0.5", False, False, True),
        ("172.16.3.4", False, False, True),
        ("192.168.1.1", False, False, True),
        ("::ffff:10.0.0.5", False, False, True),
        ("fd12::1", False, False, True),  # unique local
        ("169.254.10.1", False, False, True),  # link-local
        ("fe80::1", False, False, True),
        ("169.254.169.254", False, False, False),  # cloud metadata: never
        ("::ffff:169.254.169.254", False, False, False),
        ("fd00:ec2::254", False, False, False),
        ("0.0.0.0", False, False, False),
        ("::", False, False, False),
        ("224.0.0.1", False, False, False),  # multicast
    ],
)
def test_which_addresses_each_mode_may_reach(
    address: str, live: bool, test: bool, widened: bool
) -> None:
    ip = ipaddress.ip_address(address)
    assert address_allowed(ip, livemode=True, allow_private=False) is live
    assert address_allowed(ip, livemode=False, allow_private=False) is test
    assert address_allowed(ip, livemode=True, allow_private=True) is widened


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "http:///nohost",
        "https://user:pw@example.com/x",
        "http://[::ffff:10.0.0.1]/x",
        "http://169.254.169.254/latest",
        "https://example.com:99999/x",
        "https://example.com/" + "a" * 2100,
    ],
)
def test_urls_refused_for_a_live_endpoint(url: str) -> None:
    with pytest.raises(Blocked):
        check_url(url, livemode=True, allow_private=False)


def test_urls_accepted() -> None:
    check_url("https://example.com/hooks?x=1", livemode=True, allow_private=False)
    check_url("http://127.0.0.1:3000/hook", livemode=False, allow_private=False)
    check_url("https://localhost:3000/hook", livemode=True, allow_private=False)  # DNS: later


def test_default_schedule_is_about_three_days() -> None:
    assert DEFAULT_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000,
                                36000)
    assert sum(DEFAULT_SCHEDULE) == 243_305  # 67.6 hours after the first attempt
    assert parse_schedule("0.2, 1,3") == (0.2, 1.0, 3.0)
    with pytest.raises(ValueError):
        parse_schedule("5,-1")


def test_retry_delay_follows_the_schedule_with_bounded_jitter() -> None:
    schedule = (5.0, 300.0)
    assert retry_delay(1, schedule, 0.0) == 5.0
    assert retry_delay(2, schedule, 0.0) == 300.0
    assert retry_delay(3, schedule, 0.0) is None  # spent: the delivery has failed
    rand = random.Random(7)
    delays = [retry_delay(2, schedule, 0.1, rand) for _ in range(200)]
    assert all(d is not None and 270.0 <= d <= 330.0 for d in delays)
    assert len(set(delays)) > 100  # spread, not one value


def test_standard_signature_matches_the_spec_vector() -> None:
    headers = signed_headers(
        "standard",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_new_secrets_verify_in_both_schemes() -> None:
    import time

    secret = new_secret()
    assert secret.startswith("whsec_") and secret != new_secret()
    body = b'{"id":"evt_1","object":"event","type":"customer.created"}'
    now = int(time.time())
    standard = signed_headers("standard", "evt_1", now, body, [secret])
    standardwebhooks.Webhook(secret).verify(body, standard)
    header = signed_headers("stripe", "evt_1", now, body, [secret])["Stripe-Signature"]
    event = stripe.Webhook.construct_event(body.decode(), header, secret)
    assert event.id == "evt_1"
    two = signed_headers("stripe", "evt_1", now, body, [new_secret(), secret])
    assert two["Stripe-Signature"].count("v1=") == 2
    stripe.Webhook.construct_event(body.decode(), two["Stripe-Signature"], secret)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a00:5",  # NAT64 of 10.0.0.5: behind DNS64 it reaches the private address
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "2002:a00:5::1",  # 6to4 of 10.0.0.5
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
    ],
)
def test_ipv6_forms_that_carry_a_private_ipv4_are_judged_by_it(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert address_allowed(ip, livemode=True, allow_private=False) is False


@pytest.mark.parametrize("address", ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"])
def test_container_credential_services_stay_refused_with_private_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert address_allowed(ip, livemode=True, allow_private=True) is False
    assert address_allowed(ip, livemode=False, allow_private=True) is False


def test_nat64_of_a_public_address_is_public() -> None:
    ip = ipaddress.ip_address("64:ff9b::808:808")  # 8.8.8.8
    assert address_allowed(ip, livemode=True, allow_private=False) is True
