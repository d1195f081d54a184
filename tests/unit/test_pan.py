"""Tests for paymux.security.pan: card number detection, masking and location."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.security.pan import (
    CARD_PREFIXES,
    MASK,
    find_pan_param,
    is_luhn_valid,
    looks_like_pan,
    mask_pan_data,
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
    """Luhn-valid 13-19 digit numbers with a card-brand prefix."""
    length = draw(st.integers(min_value=13, max_value=19))
    first = draw(st.sampled_from(sorted(CARD_PREFIXES)))
    rest = draw(st.text(alphabet="0123456789", min_size=length - 3, max_size=length - 3))
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
        "",
    ],
)
def test_values_that_are_not_card_numbers_are_not_detected(value: str) -> None:
    assert not looks_like_pan(value)


@pytest.mark.parametrize(
    "value",
    [
        "550e8400-e29b-41d4-a716-446655440000",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
)
def test_hex_ids_are_not_detected(value: str) -> None:
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
    assert mask_pans("card4242424242424242exp") == f"card{MASK}4242exp"


def test_masking_leaves_text_without_pans_unchanged() -> None:
    text = "order 12345 at 1700000000000 for pi_3Nabc123"
    assert mask_pans(text) is text


@pytest.mark.parametrize(
    "text",
    [
        "4 " * 20_000,
        "4242 " * 20_000,
        "4242\u00a0" * 20_000,
        "4242%20" * 20_000,
        "\uff14\u200b" * 20_000,
        "1" + " \t._/-" * 20_000 + "1",
    ],
)
def test_a_huge_input_of_digits_and_separators_is_masked_and_nothing_is_left(text: str) -> None:
    """Inputs built to make a backtracking matcher explode: they finish (under the suite's
    per-test timeout; their time is printed by ``bench/pan.py``, not asserted here) and
    what is masked holds no card number any more."""
    masked = mask_pans(text)
    assert looks_like_pan(masked) is False
    assert mask_pans(masked) == masked


def test_masking_a_huge_input_of_grouped_pans_masks_them() -> None:
    masked = mask_pans("4242 " * 20_000)
    assert "4242 4242" not in masked and masked.endswith(f"{MASK}4242 ")


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


# --- forms of writing a card number (the card-number rule) ----------------
#
# Every form is stated literally, so a failure names the exact text.

VISA = "4242424242424242"
AMEX = "378282246310005"

# Refused by the request guard (card-shaped) and masked in logs and storage.
CARD_SHAPED_FORMS = [
    # plain, and the separators the guard always knew
    ("plain", "4242424242424242"),
    ("single spaces", "4242 4242 4242 4242"),
    ("dashes", "4242-4242-4242-4242"),
    ("plus signs", "4242+4242+4242+4242"),
    ("amex 4-6-5", "3782 822463 10005"),
    ("diners 4-6-4", "3056 930902 5904"),
    ("visa 13 digits 4-4-4-1", "4222 2222 2222 2"),
    ("19 digits 4-4-4-4-3", "6011 1111 1111 1111 110"),
    # other ASCII separators
    ("dots", "4242.4242.4242.4242"),
    ("slashes", "4242/4242/4242/4242"),
    ("underscores", "4242_4242_4242_4242"),
    ("double spaces", "4242  4242  4242  4242"),
    ("tabs", "4242\t4242\t4242\t4242"),
    ("newlines", "4242\n4242\n4242\n4242"),
    ("CRLF", "4242\r\n4242\r\n4242\r\n4242"),
    ("spaced dashes", "4242 - 4242 - 4242 - 4242"),
    ("mixed separators", "4242 4242-4242.4242"),
    # percent-encoded separators left after one decode
    ("%20", "4242%204242%204242%204242"),
    ("%20 lowercase escapes", "4242%2d4242%2e4242%2f4242"),
    ("%C2%A0", "4242%C2%A04242%C2%A04242%C2%A04242"),
    ("percent-encoded digits", "%34%32%34%32%34%32%34%32%34%32%34%32%34%32%34%32"),
    # Unicode spaces
    ("no-break space U+00A0", "4242\u00a04242\u00a04242\u00a04242"),
    ("narrow no-break space U+202F", "4242\u202f4242\u202f4242\u202f4242"),
    ("em space U+2003", "4242\u20034242\u20034242\u20034242"),
    ("thin space U+2009", "4242\u20094242\u20094242\u20094242"),
    ("figure space U+2007", "4242\u20074242\u20074242\u20074242"),
    ("ideographic space U+3000", "4242\u30004242\u30004242\u30004242"),
    ("line separator U+2028", "4242\u20284242\u20284242\u20284242"),
    ("en dash U+2013", "4242\u20134242\u20134242\u20134242"),
    ("non-breaking hyphen U+2011", "4242\u20114242\u20114242\u20114242"),
    ("full-width hyphen U+FF0D", "4242\uff0d4242\uff0d4242\uff0d4242"),
    ("full-width full stop U+FF0E", "4242\uff0e4242\uff0e4242\uff0e4242"),
    # zero-width characters
    ("zero-width space U+200B", "4242\u200b4242\u200b4242\u200b4242"),
    ("zero-width non-joiner U+200C", "4\u200c242424242424242"),
    ("zero-width joiner U+200D", "4242\u200d4242\u200d4242\u200d4242"),
    ("word joiner U+2060", "4242\u20604242\u20604242\u20604242"),
    ("BOM U+FEFF", "\ufeff4242424242424242"),
    ("soft hyphen U+00AD", "4242\u00ad4242\u00ad4242\u00ad4242"),
    ("zero-width between every digit", "\u200b".join("4242424242424242")),
    ("zero-width next to spaces", "4242 \u200b4242\u200b 4242 4242"),
    # other digits
    (
        "full-width digits",
        "\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12"
        "\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12",
    ),
    (
        "full-width digits spaced",
        "\uff14\uff12\uff14\uff12 \uff14\uff12\uff14\uff12 "
        "\uff14\uff12\uff14\uff12 \uff14\uff12\uff14\uff12",
    ),
    ("some full-width digits", "4242\uff14\uff12\uff14\uff1242424242"),
    (
        "Arabic-Indic digits",
        "\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662"
        "\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662",
    ),
    (
        "Devanagari digits",
        "\u096a\u0968\u096a\u0968\u096a\u0968\u096a\u0968"
        "\u096a\u0968\u096a\u0968\u096a\u0968\u096a\u0968",
    ),
    (
        "mathematical bold digits",
        "\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0"
        "\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0"
        "\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0"
        "\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0",
    ),
    # glued to letters
    ("letters before", "ref4242424242424242"),
    ("letters after", "4242424242424242x"),
    ("letters around", "card4242424242424242exp"),
    ("glued, grouped", "ref4242 4242 4242 4242"),
    ("glued to non-Latin letters", "\u043a\u0430\u0440\u0442\u04304242424242424242"),
    # in text
    ("in a sentence", "my card is 4242.4242.4242.4242, thanks"),
    ("with a CVC after", "4242 4242 4242 4242 123"),
    ("after a short number", "12 4242 4242 4242 4242"),
    ("in a URL", "https://example.com/?n=4242%204242%204242%204242"),
    ("in JSON text", '{"note": "4242_4242_4242_4242"}'),
    ("amex with dots", "3782.822463.10005"),
]

# Never refused (they cannot be told apart from ordinary numbers side by side),
# but masked before they are stored or logged.
LOOSELY_GROUPED_FORMS = [
    ("3-3-3-3-4", "424 242 424 242 4242"),
    ("6-10", "424242 4242424242"),
    ("8-8", "42424242 42424242"),
    ("5-5-6 with dots", "42424.24242.424242"),
]

FALSE_POSITIVES = [
    ("object id", "pi_3NabcDEF4242xyz"),
    ("object id with digits", "cus_1234567890123"),
    ("request id", "req_Ab3dE4242424242"),
    ("unix timestamp", "1700000000"),
    ("timestamp in ms, Luhn-valid", "1700000000004"),
    ("timestamp in us, Luhn-valid", "1700000000000019"),
    ("timestamp in ns", "1700000000000000007"),
    ("compact date-time, Luhn-valid, prefix 20", "20240115103000126"),
    ("order number with a date, glued", "ORD20240115103000126"),
    ("amount", "1234567.89"),
    ("amount in cents", "123456789012"),
    ("amounts side by side", "12.50 4.75 100.00 2500.00"),
    ("ISO date", "2024-01-15"),
    ("ISO date-time", "2024-01-15T10:30:00.123456Z"),
    ("date range", "2024/01/15 - 2024/02/15"),
    ("dates and times", "2024-01-15 10.30.00 2024-02-15 11.45.30"),
    ("version and IP", "v4.2.42 on 192.168.100.200"),
    ("phone, international", "+44 20 7946 0958"),
    ("phone, US", "(415) 555-2671"),
    ("phone, dotted", "415.555.2671"),
    ("UUID", "550e8400-e29b-41d4-a716-446655440000"),
    ("UUID, all digits", "42424242-4242-4242-4242-424242424242"),
    ("UUID, upper case", "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"),
    ("SHA-256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("hex id glued to a PAN-like run", "5f1d7a2b4242424242424242"),
    ("16 digits, not Luhn-valid", "4242424242424241"),
    ("16 digits, not Luhn-valid, dotted", "4242.4242.4242.4241"),
    ("19 digits, not Luhn-valid", "6011111111111111113"),
    ("Luhn-valid, prefix 0", "0000000000000000"),
    ("Luhn-valid, prefix 1 (UATP)", "1234567812345670"),
    ("Luhn-valid, prefix 20", "2000000000000008"),
    ("Luhn-valid, prefix 7 (petroleum)", "7000000000000007"),
    ("Luhn-valid, prefix 99", "9900000000000007"),
    ("12 digits", "424242424242"),
    ("20 digits in one run", "42424242424242424242"),
    ("acquirer reference number", "74242424242424242123456"),
    ("pairs of digits", "42 42 42 42 42 42 42 42"),
    ("percent sign in text", "50% of 4242 items"),
    ("the last four of a masked number", "************4242"),
]


@pytest.mark.parametrize(("form", "text"), CARD_SHAPED_FORMS, ids=[f for f, _ in CARD_SHAPED_FORMS])
def test_a_card_shaped_number_is_detected_in_every_form(form: str, text: str) -> None:
    assert looks_like_pan(text), form
    assert find_pan_param({"metadata": {"note": text}}) == "metadata[note]"
    assert find_pan_param({"description": f"order 7: {text} (thanks)"}) == "description"


@pytest.mark.parametrize(("form", "text"), CARD_SHAPED_FORMS, ids=[f for f, _ in CARD_SHAPED_FORMS])
def test_a_card_shaped_number_is_masked_in_every_form(form: str, text: str) -> None:
    masked = mask_pans(f"before {text} after")
    assert masked.startswith("before ") and masked.endswith(" after"), masked
    assert MASK in masked
    assert not digits_of_a_pan_in(masked), masked
    assert mask_pans(masked) == masked


@pytest.mark.parametrize(
    ("form", "text"), LOOSELY_GROUPED_FORMS, ids=[f for f, _ in LOOSELY_GROUPED_FORMS]
)
def test_a_loosely_grouped_number_is_not_refused_but_masked(form: str, text: str) -> None:
    assert not looks_like_pan(text), form
    assert find_pan_param({"description": text}) is None
    masked = mask_pans(f"note: {text}.")
    assert MASK + "4242" in masked and not digits_of_a_pan_in(masked), masked
    assert mask_pan_data({"description": text}) == {"description": mask_pans(text)}


@pytest.mark.parametrize(("what", "text"), FALSE_POSITIVES, ids=[w for w, _ in FALSE_POSITIVES])
def test_ordinary_values_are_neither_refused_nor_masked(what: str, text: str) -> None:
    assert not looks_like_pan(text), what
    assert find_pan_param({"metadata": {what: text}}) is None
    assert mask_pans(text) == text
    assert mask_pans(f"a {text} b") == f"a {text} b"


def digits_of_a_pan_in(text: str) -> bool:
    """Whether 8 or more digits of the test PANs survive in ``text`` (normalized)."""
    squeezed = "".join(
        str(unicodedata.decimal(ch)) if unicodedata.category(ch) == "Nd" else ch
        for ch in unicodedata.normalize("NFKC", text)
    )
    squeezed = re.sub(r"[^0-9*]", "", squeezed)
    return any(run in squeezed for pan in (VISA, AMEX) for run in (pan[:8], pan[4:12]))


def test_masking_keeps_only_the_last_four_of_a_unicode_number() -> None:
    fw = "".join(chr(0xFF10 + int(d)) for d in VISA)
    assert mask_pans(f"x {fw} y") == f"x {MASK}4242 y"
    assert mask_pans("a 4242\u200b4242\u200b4242\u200b4242") == f"a {MASK}4242"
    assert mask_pans("n=4242%204242%204242%204242&m=1") == f"n={MASK}4242&m=1"
    assert mask_pans("ref" + "\u0664\u0662" * 8) == f"ref{MASK}4242"


def test_every_card_brand_prefix_is_detected() -> None:
    for prefix in sorted(CARD_PREFIXES):
        body = prefix + "0" * 13
        pan = body + luhn_check_digit(body)
        assert looks_like_pan(pan), pan
        assert looks_like_pan(in_fours(pan, ".")), pan


def test_mask_pan_data_masks_strings_and_keys_and_returns_clean_data_itself() -> None:
    clean = {"amount": 2000, "metadata": {"order": "A-1", "ts": 1700000000004}, "x": [1, "a"]}
    assert mask_pan_data(clean) is clean
    data = {"metadata": {"424 242 424 242 4242": ["note 424242 4242424242", 7]}}
    assert mask_pan_data(data) == {"metadata": {f"{MASK}4242": [f"note {MASK}4242", 7]}}
