"""Edge cases of paymux.security.pan that mutation testing showed no other test pinned: invalid
UTF-8 in percent-escapes, numbers of every Python type, mappings that are not dicts, cycles in
the data, and what mask_pan_data gives back. Expected values are written out by hand."""

from __future__ import annotations

import math
from decimal import Decimal
from types import MappingProxyType

import pytest

from paymux.security.pan import (
    _scalar_text,
    body_plainly_clear,
    find_pan_param,
    looks_like_pan,
    mask_pan_data,
    mask_pans,
)

PAN = "4242424242424242"
LOOSE = "424 242 424 242 4242"  # the same digits, loosely grouped: masked, not refused


def test_invalid_utf8_in_an_escape_run_is_replaced_not_an_error() -> None:
    assert mask_pans("caf%E9 4242424242424242") == "caf%E9 ************4242"
    assert looks_like_pan("%FF%FE4242424242424242")
    assert mask_pans("%C3%28 5555555555554444 %80") == "%C3%28 ************4444 %80"


@pytest.mark.parametrize(
    "number",
    [
        4242424242424242,
        -4242424242424242,
        4242424242424242.0,
        -4242424242424242.0,
        Decimal("4242424242424242"),
        Decimal("-4242424242424242.9"),
        4000000000000000006,
        4222222222222,  # 19 and 13 digits, Luhn-valid
    ],
)
def test_a_number_of_any_type_holding_a_pan_is_found(number: object) -> None:
    assert find_pan_param({"amount": number}) == "amount"
    assert find_pan_param([number]) == "0"


@pytest.mark.parametrize(
    "number",
    [
        math.inf,
        -math.inf,
        math.nan,
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal("NaN"),
        Decimal("sNaN"),
        10**400,
        -(10**400),
        4242424242424242 * 10**4,
        424242424242,
        True,
        None,
        1e300,
        Decimal("1e300"),
        424242424242.99,
    ],
)
def test_a_number_that_cannot_be_a_pan_is_skipped_without_error(number: object) -> None:
    assert find_pan_param({"amount": number}) is None


def test_a_float_key_or_a_decimal_key_holding_a_pan_is_reported_masked() -> None:
    assert find_pan_param({4242424242424242.0: "x"}, "metadata") == "metadata[************4242]"
    assert find_pan_param({Decimal(PAN): "x"}) == "************4242"


def test_a_mapping_that_is_not_a_dict_is_searched_and_masked() -> None:
    assert find_pan_param({"a": MappingProxyType({"b": PAN})}) == "a[b]"
    assert find_pan_param(MappingProxyType({"b": [1, PAN]})) == "b[1]"
    masked = mask_pan_data(MappingProxyType({"note": LOOSE}))
    assert masked == {"note": "************4242"}
    assert type(masked) is dict


def test_a_container_holding_itself_is_not_walked_twice() -> None:
    root: dict[str, object] = {}
    root["self"] = root
    root["card"] = PAN
    assert find_pan_param(root) == "card"
    inner: dict[str, object] = {}
    inner["me"] = inner
    inner["card"] = PAN
    assert find_pan_param({"a": inner}) == "a[card]"
    items: list[object] = []
    items.append(items)
    items.append(PAN)
    assert find_pan_param({"l": items}) == "l[1]"


def test_mask_pan_data_keeps_the_container_type_and_masks_keys_and_values() -> None:
    masked = mask_pan_data(("ok", LOOSE))
    assert masked == ("ok", "************4242")
    assert type(masked) is tuple
    masked_list = mask_pan_data(["ok", LOOSE])
    assert masked_list == ["ok", "************4242"]
    assert type(masked_list) is list
    assert mask_pan_data({LOOSE: "v"}) == {"************4242": "v"}
    assert mask_pan_data({"k": LOOSE}) == {"k": "************4242"}
    assert mask_pan_data({"k": ("x", LOOSE)}) == {"k": ("x", "************4242")}


def test_mask_pan_data_returns_clean_containers_themselves() -> None:
    clean_tuple = ("a", 4242424242424242, "b")
    assert mask_pan_data(clean_tuple) is clean_tuple
    clean_list = ["a", ["b"], {"c": "d"}]
    assert mask_pan_data(clean_list) is clean_list
    clean_dict = {"a": ("b",), "c": {"d": 1}}
    assert mask_pan_data(clean_dict) is clean_dict
    proxy = MappingProxyType({"a": "b"})
    assert mask_pan_data(proxy) is proxy
    assert mask_pan_data(()) == ()
    assert mask_pan_data(1.5) == 1.5


@pytest.mark.parametrize(
    "body",
    [
        b'{"amount": 1200, "currency": "usd", "description": "order 12345"}',
        b"amount=1200&currency=usd",
        b'{"note": "3e5 in a string", "events": [{"value": 1.5}]}',
        b"",
    ],
)
def test_a_plain_body_without_long_digit_groups_is_cleared_without_parsing(body: bytes) -> None:
    assert body_plainly_clear(body)


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "caf\u00e9"}'.encode(),  # not ASCII
        b'{"note": "\\u0034"}',  # a JSON escape
        b"note=%34",  # a percent-escape
        '{"a": 1}'.encode("utf-16-le"),  # NUL bytes: UTF-16 JSON
        b'{"card": "4242424242424242"}',  # a long digit group in a string
        b'{"n": 4242 4242 4242 4242}',  # ... or outside one
        b'{"amount": 4.242424242424242e15}',  # a number with an exponent
        b'{"amount": 1E3}',
        b'[1"s"e5]',  # strings are cut out before the exponent check: what is left is 1e5
    ],
)
def test_a_body_that_may_hold_a_pan_is_not_cleared(body: bytes) -> None:
    assert not body_plainly_clear(body)


def test_hex_ids_are_set_aside_without_shifting_what_follows_or_joining_what_surrounds() -> None:
    trace = "trace 0123456789abcdef0123456789abcdef card 4242424242424242"
    assert mask_pans(trace) == "trace 0123456789abcdef0123456789abcdef card ************4242"
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    around = f"42424242-{uuid}-42424242"  # the halves of a PAN, a UUID between them
    assert mask_pans(around) == around


def test_the_last_four_are_kept_whatever_the_separators_before_the_last_digit() -> None:
    assert mask_pans("4242 4242 4242 424" + " " * 30 + "2") == "************4242"


def test_a_two_digit_chunk_never_starts_a_candidate_that_runs_on() -> None:
    assert mask_pans("42 4242424242 4242") == "42 ************4242"


def test_candidates_sharing_a_chunk_are_masked_as_one() -> None:
    # 4785 4215 0280 7267 and 4215 0280 7267 0841 both pass Luhn; all 20 digits cannot be one.
    assert mask_pans("4785 421502807267 0841") == "************0841"
    assert mask_pans("x 4785-421502807267-0841 y") == "x ************0841 y"


def test_digits_after_a_letter_are_another_group_and_never_join_a_candidate() -> None:
    # "424" + "2424242424242" would be 4242424242424242; the "x" keeps them apart.
    assert mask_pans("1111 2222 3333 424x2424242424242") == "1111 2222 3333 424x2424242424242"


def test_the_last_four_of_a_masked_number_never_start_a_new_candidate() -> None:
    assert mask_pans("************4242 424242424242") == "************4242 424242424242"
    assert mask_pans("x************4242 424242424242") == "x************4242 424242424242"
    # ... but a whole PAN right after them is masked.
    assert mask_pans("************4242 4242424242424242") == "************4242 ************4242"


def test_only_four_digits_right_after_a_mask_are_taken_for_its_last_four() -> None:
    # Five digits after the twelve asterisks are no masked number's last four.
    assert mask_pans("************42424 24242424242") == "************************4242"


def test_a_decimal_with_a_huge_exponent_is_skipped_without_building_it() -> None:
    """Decimal("1e999999999") is finite: int() of it would build a billion-digit integer.
    It is far past any card number, so it is skipped at once."""
    assert _scalar_text(Decimal("1e999999999")) is None
    assert _scalar_text(Decimal("-1e999999999")) is None
    assert _scalar_text(Decimal("4242424242424242")) == "4242424242424242"


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (10**12, "1000000000000"),  # the smallest number of 13 digits
        (-(10**12), "1000000000000"),
        (10**12 - 1, None),  # 12 digits
        (10**19 - 1, "9999999999999999999"),  # the largest of 19 digits
        (-(10**19 - 1), "9999999999999999999"),
        (10**19, None),  # 20 digits
        (-(10**19), None),
        (Decimal("1E+19"), None),
        (Decimal("-1E+19"), None),
        (Decimal("9999999999999999999.9"), "9999999999999999999"),
        (Decimal("-9999999999999999999.9"), "9999999999999999999"),
        (Decimal("999999999999.9"), None),
        (Decimal("1000000000000.5"), "1000000000000"),
        (1e19, None),
        (1e12, "1000000000000"),
    ],
)
def test_a_number_is_checked_as_its_integer_part_of_13_to_19_digits(
    number: object, text: str | None
) -> None:
    assert _scalar_text(number) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # 4-5-4: a Luhn-valid 13-digit number, but no card is written so.
        ("4222 22222 2222", "************2222"),
        # 4-4-4-5: a Luhn-valid 17-digit number whose last group is too long.
        ("4000 0000 0000 00006", "************0006"),
        ("4000-0000-0000-00006", "************0006"),
    ],
)
def test_groups_of_four_end_in_one_of_at_most_four_else_only_masked(text: str, masked: str) -> None:
    assert not looks_like_pan(text)
    assert find_pan_param({"note": text}) is None
    assert mask_pans(text) == masked
    assert looks_like_pan(text.replace(" ", "").replace("-", ""))  # the same digits, unbroken


def test_a_number_after_an_escape_run_holding_two_pans_is_masked_too() -> None:
    # One run of percent-escapes ("4242424242424242 5555555555554444" escaped) holds two
    # card numbers: both come from the same original characters, so the run is masked once.
    # The number after it is masked as well.
    run = (
        "%34%32%34%32%34%32%34%32%34%32%34%32%34%32%34%32%20"
        "%35%35%35%35%35%35%35%35%35%35%35%35%34%34%34%34"
    )
    assert mask_pans(run + " and 4000056655665556") == "************4242 and ************5556"
