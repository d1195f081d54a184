"""Tests for paymux.security.pan: card number detection, masking and location."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.security.pan import (
    MASK,
    find_pan_param,
    is_luhn_valid,
    looks_like_pan,
    mask_pans,
)
from paymux.security.redact import redact

STRIPE_TEST_CARDS = [
    "4242424242424242",
    "4000000000000002",
    "4000000000009995",
    "4000000000009987",
    "4000000000009979",
    "4000000000000069",
    "4000000000000127",
    "4000000000000119",
    "4000000000000341",
    "4000002500003155",
    "4000002760003184",
    "4000000000003220",
    "4000008260003178",
    "4100000000000019",
    "4000000000004954",
    "4000000000009235",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
]


def in_fours(number: str, sep: str) -> str:
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` Luhn-valid (reference implementation)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


@st.composite
def luhn_valid_pans(draw: st.DrawFn) -> str:
    """Luhn-valid 13-19 digit numbers starting with 2-9, as every card network issues."""
    length = draw(st.integers(min_value=13, max_value=19))
    first = draw(st.sampled_from("23456789"))
    rest = draw(st.text(alphabet="0123456789", min_size=length - 2, max_size=length - 2))
    body = first + rest
    return body + luhn_check_digit(body)


# --- is_luhn_valid ---------------------------------------------------------


@pytest.mark.parametrize("card", STRIPE_TEST_CARDS)
def test_every_stripe_test_card_passes_luhn(card: str) -> None:
    assert is_luhn_valid(card)


@pytest.mark.parametrize(
    "value", ["", "4242 4242 4242 4242", "4242-4242", "42a2", "\uff14\uff12\uff14\uff12"]
)
def test_luhn_rejects_anything_but_ascii_digits(value: str) -> None:
    assert not is_luhn_valid(value)


@given(luhn_valid_pans(), st.data())
def test_changing_any_single_digit_breaks_luhn(pan: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(pan) - 1))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != pan[i]]))
    assert is_luhn_valid(pan)
    assert not is_luhn_valid(pan[:i] + new + pan[i + 1 :])


# --- looks_like_pan --------------------------------------------------------


@pytest.mark.parametrize("card", STRIPE_TEST_CARDS)
@pytest.mark.parametrize("style", ["plain", "spaced", "dashed"])
def test_every_stripe_test_card_is_detected_plain_spaced_and_dashed(card: str, style: str) -> None:
    value = {"plain": card, "spaced": in_fours(card, " "), "dashed": in_fours(card, "-")}[style]
    assert looks_like_pan(value)


def test_an_amex_number_grouped_four_six_five_is_detected() -> None:
    assert looks_like_pan("3782 822463 10005")


def test_a_number_with_plus_signs_for_spaces_as_in_a_form_body_is_detected() -> None:
    assert looks_like_pan("card[number]=4242+4242+4242+4242")


def test_a_pan_embedded_in_a_sentence_is_detected() -> None:
    assert looks_like_pan("my card is 4242424242424242 thanks")
    assert looks_like_pan("card: 4242-4242-4242-4242.")


def test_a_pan_followed_by_a_space_and_a_cvc_is_detected() -> None:
    assert looks_like_pan("4242424242424242 123")
    assert looks_like_pan("12 4242 4242 4242 4242 99")


@pytest.mark.parametrize(
    "value",
    [
        "4242424242424241",  # Luhn-invalid 16 digits
        "4242 4242 4242 4241",
        "1700000000",  # Unix timestamp in seconds
        "1700000000004",  # Luhn-valid timestamp in milliseconds
        "1700000000000019",  # Luhn-valid timestamp in microseconds
        "pi_1234567890",
        "pi_3Nabc123",
        "ch_3NabcDEF4242xyz",
        "0000000000000000",  # Luhn-valid, but no card number starts with 0
        "424242424242",  # 12 digits
        "74242424242424242123456",  # 23 digits in one run, like an acquirer reference number
        "4242  4242  4242  4242",  # double spaces do not join groups
        "",
    ],
)
def test_values_that_are_not_card_numbers_are_not_detected(value: str) -> None:
    assert not looks_like_pan(value)


@pytest.mark.parametrize(
    "value",
    [
        "card4242424242424242",
        "4242424242424242exp",
        "550e8400-e29b-41d4-a716-446655440000",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
)
def test_digits_glued_to_letters_such_as_hex_ids_are_not_detected(value: str) -> None:
    assert not looks_like_pan(value)


def test_non_string_input_is_not_detected() -> None:
    assert not looks_like_pan(4242424242424242)  # type: ignore[arg-type]


@given(luhn_valid_pans())
def test_any_luhn_valid_13_to_19_digit_number_is_detected(pan: str) -> None:
    assert looks_like_pan(pan)
    assert looks_like_pan(in_fours(pan, " "))
    assert looks_like_pan(in_fours(pan, "-"))


@given(luhn_valid_pans(), st.text(), st.text())
def test_a_pan_surrounded_by_any_text_is_detected(pan: str, before: str, after: str) -> None:
    assert looks_like_pan(f"{before} {pan} {after}")


@given(st.integers(min_value=0, max_value=10**10 - 1))
def test_no_number_shorter_than_13_digits_is_detected(n: int) -> None:
    assert not looks_like_pan(str(n))


@given(
    st.sampled_from([10**12, 10**15, 10**18]).flatmap(
        lambda scale: st.integers(min_value=scale, max_value=2 * scale - 1)
    )
)
def test_no_unix_timestamp_in_ms_us_or_ns_is_detected(n: int) -> None:
    # Timestamps in milliseconds, microseconds and nanoseconds have 13, 16 and
    # 19 digits and start with 1 until the year 2286.
    assert not looks_like_pan(str(n))


# --- mask_pans -------------------------------------------------------------


@pytest.mark.parametrize("card", STRIPE_TEST_CARDS)
def test_masking_keeps_only_the_last_four_digits(card: str) -> None:
    for value in (card, in_fours(card, " "), in_fours(card, "-")):
        assert mask_pans(value) == MASK + card[-4:]


def test_masking_keeps_the_surrounding_text_and_neighbouring_numbers() -> None:
    assert mask_pans("pay 4242424242424242 123 now") == f"pay {MASK}4242 123 now"
    assert mask_pans("a 4242 4242 4242 4242, b 5555-5555-5555-4444.") == (
        f"a {MASK}4242, b {MASK}4444."
    )


def test_masking_hides_a_pan_glued_to_letters() -> None:
    assert mask_pans("card%3D4242424242424242") == f"card%3D{MASK}4242"


def test_masking_leaves_text_without_pans_unchanged() -> None:
    text = "order 12345 at 1700000000000 for pi_3Nabc123"
    assert mask_pans(text) is text


def test_masking_a_huge_input_of_single_digits_stays_fast() -> None:
    text = "4 " * 100_000
    assert mask_pans(text).count("*") > 0


@given(luhn_valid_pans(), st.text(), st.text())
def test_after_masking_or_redaction_the_digits_of_a_pan_are_gone(
    pan: str, before: str, after: str
) -> None:
    for value in (pan, in_fours(pan, " "), in_fours(pan, "-")):
        text = f"{before} {value} {after}"
        for out in (mask_pans(text), redact(text)):
            assert value not in out
            assert pan not in out.replace(" ", "").replace("-", "")
    assert mask_pans(pan) == MASK + pan[-4:]
    assert redact(pan) == MASK + pan[-4:]


@given(st.text())
def test_masking_is_idempotent(text: str) -> None:
    once = mask_pans(text)
    assert mask_pans(once) == once


# --- find_pan_param --------------------------------------------------------


def test_a_top_level_value_is_reported_by_its_name() -> None:
    assert find_pan_param({"amount": 1000, "description": "card 4242424242424242"}) == (
        "description"
    )


def test_a_nested_value_is_reported_with_a_stripe_style_path() -> None:
    data = {"metadata": {"order": "A-1", "note": "4242 4242 4242 4242"}}
    assert find_pan_param(data) == "metadata[note]"


def test_a_value_in_a_list_is_reported_with_its_index() -> None:
    data = {"items": [{"description": "mug"}, {"description": "4000-0000-0000-0002"}]}
    assert find_pan_param(data) == "items[1][description]"


def test_an_integer_value_is_checked_as_digits() -> None:
    assert find_pan_param({"metadata": {"card": 4242424242424242}}) == "metadata[card]"
    assert find_pan_param({"metadata": {"card": 4242424242424242.0}}) == "metadata[card]"


def test_a_key_that_looks_like_a_pan_is_reported_masked() -> None:
    assert find_pan_param({"metadata": {"4242424242424242": "x"}}) == f"metadata[{MASK}4242]"
    assert find_pan_param({"metadata": {5555555555554444: "x"}}) == f"metadata[{MASK}4444]"


def test_the_first_match_in_document_order_is_reported() -> None:
    data = {"a": ["ok", {"b": "4242424242424242"}], "c": "5555555555554444"}
    assert find_pan_param(data) == "a[1][b]"


def test_the_prefix_is_prepended_to_the_path() -> None:
    assert find_pan_param({"note": "4242424242424242"}, prefix="metadata") == "metadata[note]"
    assert find_pan_param("4242424242424242", prefix="description") == "description"


@pytest.mark.parametrize(
    "data",
    [
        {"amount": 1000, "currency": "usd", "metadata": {"ts": 1700000000004}},
        {"ok": True, "n": None, "items": [1, 2.5, "pi_3Nabc123", {"x": []}]},
        {"big": 10**5000},
        [],
        "plain",
        None,
    ],
)
def test_data_without_pans_gives_none(data: object) -> None:
    assert find_pan_param(data) is None


def test_very_deep_nesting_does_not_hit_the_recursion_limit() -> None:
    data: object = "4242424242424242"
    for _ in range(1500):
        data = {"a": [data]}
    path = find_pan_param(data)
    assert path is not None
    assert path.startswith("a[0][a][0]")


def test_self_referencing_data_terminates() -> None:
    data: dict[str, object] = {"a": "ok"}
    data["self"] = data
    assert find_pan_param(data) is None
