"""Tests for tests/support/browser.card_runs: the leak checks' scanner for card-shaped runs.

The browser tests assert that no request paymux received holds a Luhn-valid card-shaped run.
The scanner must find a card however it is grouped, and must not report the identifiers that
travel in every webhook (hex digests, UUIDs), whose digits sometimes form a Luhn-valid run.
"""

from __future__ import annotations

import uuid

from paymux.security.pan import is_luhn_valid
from support.browser import CARD_RUNS, card_runs

# A transmission id of the kind the fake PayPal sends: "c477-251510798f2e" holds the
# Luhn-valid run "477-251510798" (a CI failure of 2026-12-04 came from one like it).
UUID_WITH_A_LUHN_RUN = b"8c1f2a3b-1d2e-4f5a-c477-251510798f2e"


def test_the_uuid_holds_a_luhn_valid_run_when_read_alone() -> None:
    assert is_luhn_valid("477251510798")
    assert str(uuid.UUID(UUID_WITH_A_LUHN_RUN.decode())) == UUID_WITH_A_LUHN_RUN.decode()


def test_a_uuid_in_a_header_is_not_a_card_run() -> None:
    raw = b"paypal-transmission-id: " + UUID_WITH_A_LUHN_RUN + b"\r\n"
    assert card_runs(raw) == []


def test_a_hex_digest_is_not_a_card_run() -> None:
    # 40 hex characters holding a Luhn-valid run of 16 digits between letters: a card-shaped
    # run when read alone (the first assertion), none inside a digest.
    digest = b"abcdefab" + b"4242424242424242" + b"cdefabcdefabcdef"
    assert CARD_RUNS.findall(b"v1=" + digest) == [b"4242424242424242"]
    assert card_runs(b"v1=" + digest) == []


def test_card_numbers_are_found_plain_spaced_and_dashed() -> None:
    raw = b'{"n":"4242424242424242","s":"4000 0000 0000 0002","d":"5555-5555-5555-4444"}'
    assert card_runs(raw) == [b"4242424242424242", b"4000 0000 0000 0002", b"5555-5555-5555-4444"]


def test_a_card_number_next_to_a_uuid_is_still_found() -> None:
    raw = b"id=" + UUID_WITH_A_LUHN_RUN + b"&card=4111111111111111"
    assert card_runs(raw) == [b"4111111111111111"]


def test_a_card_grouped_like_a_uuid_tail_is_still_found() -> None:
    # Four groups of four digits is not a UUID's shape (8-4-4-4-12): it stays a run.
    assert card_runs(b"x 4111-1111-1111-1111 y") == [b"4111-1111-1111-1111"]


# A derived intent id (services' sha256 hex digests: checkout/rules.py) holding the
# Luhn-valid run of the CI failure of 2026-12-05 between two letters.
DERIVED_ID = b"pi_a426302446139848e3f9c0d1"


def test_an_object_id_is_not_a_card_run() -> None:
    assert len(DERIVED_ID) == len("pi_") + 24
    assert is_luhn_valid("426302446139848")
    assert CARD_RUNS.findall(DERIVED_ID) == [b"426302446139848"]
    for raw in (
        b'"custom_id": "' + DERIVED_ID + b'"',
        b"secret=" + DERIVED_ID + b"_secret_a4263024461398480000bcde",
        b"/v1/checkout/sessions/cs_test_a426302446139848e3f9",
    ):
        assert card_runs(raw) == [], raw


def test_a_card_number_beside_an_object_id_is_still_found() -> None:
    raw = b'{"id": "' + DERIVED_ID + b'", "number": "4242424242424242", "n": "4000 0000 0000 0002"}'
    assert card_runs(raw) == [b"4242424242424242", b"4000 0000 0000 0002"]
