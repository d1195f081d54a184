"""Tests for paymux.security.envelope: envelope encryption of secrets at rest, key rotation.

Expectations are stated independently of the module: the token layout is decoded here with
``base64`` and ``AESGCM`` directly, following the format documented in the module docstring.
"""

from __future__ import annotations

import base64
import string

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paymux.security.envelope import EnvelopeError, Keyring, generate_key_entry

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_C = bytes([0xFB, 0xFF] * 16)  # standard base64 has "+" and "/", urlsafe "-" and "_"
CTX = "connection:conn_1:credentials"
SECRET = b'{"api_key": "sk_test_123"}'


def std(key: bytes) -> str:
    return base64.b64encode(key).decode()


def entry(key_id: str, key: bytes) -> str:
    return f"{key_id}:{std(key)}"


def forms_of(key: bytes) -> list[str]:
    """Every text form in which key material could leak into a message."""
    return [
        std(key),
        std(key).rstrip("="),
        base64.urlsafe_b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        key.hex(),
        repr(key),
    ]


def assert_no_key_material(message: str, *keys: bytes) -> None:
    for key in keys:
        for form in forms_of(key):
            assert form not in message
        # Not even a recognisable piece of it.
        assert std(key)[:12] not in message


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


ring_a = Keyring.parse(entry("A", KEY_A))
ring_b = Keyring.parse(entry("B", KEY_B))
ring_ba = Keyring.parse(f"{entry('B', KEY_B)},{entry('A', KEY_A)}")
ring_ab = Keyring.parse(f"{entry('A', KEY_A)},{entry('B', KEY_B)}")


# --- round trip and token layout -------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext", [SECRET, b"", b"\x00\xff" * 100, "clé secrète".encode(), b"x" * 10_000]
)
def test_a_sealed_secret_opens_to_the_same_bytes(plaintext: bytes) -> None:
    token = ring_a.seal(plaintext, context=CTX)
    assert ring_a.open(token, context=CTX) == plaintext


def test_the_token_is_pmx1_key_id_wrapped_key_and_ciphertext_in_base64url() -> None:
    token = ring_a.seal(SECRET, context=CTX)
    assert token.isascii()
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")
    version, key_id, wrapped_part, ciphertext_part = token.split(".")
    assert version == "pmx1"
    assert key_id == "A"
    # 12-byte nonce + 32-byte data key + 16-byte tag = 60 bytes = 80 base64 characters.
    assert len(wrapped_part) == 80
    assert len(b64url_decode(wrapped_part)) == 60
    # 12-byte nonce + plaintext + 16-byte tag.
    assert len(b64url_decode(ciphertext_part)) == 12 + len(SECRET) + 16
    assert "=" not in token


def test_an_empty_secret_has_a_28_byte_ciphertext() -> None:
    token = ring_a.seal(b"", context=CTX)
    assert len(b64url_decode(token.split(".")[3])) == 28


def test_a_token_decrypts_by_hand_following_the_documented_format() -> None:
    token = ring_a.seal(SECRET, context=CTX)
    _, _, wrapped_part, ciphertext_part = token.split(".")
    wrapped = b64url_decode(wrapped_part)
    dek = AESGCM(KEY_A).decrypt(wrapped[:12], wrapped[12:], b"pmx1\x00dek\x00A\x00" + CTX.encode())
    assert len(dek) == 32
    ciphertext = b64url_decode(ciphertext_part)
    plaintext = AESGCM(dek).decrypt(
        ciphertext[:12], ciphertext[12:], b"pmx1\x00data\x00" + CTX.encode()
    )
    assert plaintext == SECRET


def handmade_token(key_id: str, kek: bytes, dek: bytes, plaintext: bytes, context: str) -> str:
    wrap_nonce, data_nonce = b"\x01" * 12, b"\x02" * 12
    wrapped = wrap_nonce + AESGCM(kek).encrypt(
        wrap_nonce, dek, b"pmx1\x00dek\x00" + key_id.encode() + b"\x00" + context.encode()
    )
    ciphertext = data_nonce + AESGCM(dek).encrypt(
        data_nonce, plaintext, b"pmx1\x00data\x00" + context.encode()
    )
    return f"pmx1.{key_id}.{b64url_encode(wrapped)}.{b64url_encode(ciphertext)}"


def test_a_token_made_by_hand_following_the_documented_format_opens() -> None:
    token = handmade_token("A", KEY_A, b"\x07" * 32, b"made by hand", "ctx:é")
    assert ring_a.open(token, context="ctx:é") == b"made by hand"


def test_a_data_key_of_another_length_is_refused() -> None:
    # A 31-byte data key wraps to 59 bytes: not a pmx1 token, whatever the tag says.
    nonce = b"\x01" * 12
    wrapped = nonce + AESGCM(KEY_A).encrypt(nonce, b"\x07" * 31, b"pmx1\x00dek\x00A\x00" + b"c")
    good = handmade_token("A", KEY_A, b"\x07" * 32, b"x", "c")
    parts = good.split(".")
    parts[2] = b64url_encode(wrapped)
    with pytest.raises(EnvelopeError, match="59 bytes, not 60"):
        ring_a.open(".".join(parts), context="c")


def test_the_same_secret_sealed_twice_gives_different_tokens_and_data_keys() -> None:
    first = ring_a.seal(SECRET, context=CTX)
    second = ring_a.seal(SECRET, context=CTX)
    assert first != second
    _, _, wrapped_1, ciphertext_1 = first.split(".")
    _, _, wrapped_2, ciphertext_2 = second.split(".")
    assert wrapped_1 != wrapped_2
    assert ciphertext_1 != ciphertext_2
    # Fresh nonces for both layers, and a fresh data key.
    assert b64url_decode(wrapped_1)[:12] != b64url_decode(wrapped_2)[:12]
    assert b64url_decode(ciphertext_1)[:12] != b64url_decode(ciphertext_2)[:12]
    aad = b"pmx1\x00dek\x00A\x00" + CTX.encode()
    dek_1 = AESGCM(KEY_A).decrypt(b64url_decode(wrapped_1)[:12], b64url_decode(wrapped_1)[12:], aad)
    dek_2 = AESGCM(KEY_A).decrypt(b64url_decode(wrapped_2)[:12], b64url_decode(wrapped_2)[12:], aad)
    assert dek_1 != dek_2
    assert dek_1 not in (KEY_A, KEY_B)


def test_the_ciphertext_does_not_contain_the_plaintext() -> None:
    token = ring_a.seal(SECRET, context=CTX)
    assert SECRET not in b64url_decode(token.split(".")[3])
    assert b"sk_test_123" not in token.encode()


# --- context binding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        "connection:conn_2:credentials",
        "connection:conn_1:credentials ",
        "CONNECTION:conn_1:credentials",
        "x",
    ],
)
def test_a_token_does_not_open_in_another_context(other: str) -> None:
    token = ring_a.seal(SECRET, context=CTX)
    with pytest.raises(EnvelopeError, match="does not open with key A") as excinfo:
        ring_a.open(token, context=other)
    assert str(excinfo.value) == (
        "the data key does not open with key A: the token was sealed for another context, "
        "or it was altered"
    )
    assert "sk_test" not in str(excinfo.value)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


EMPTY_CONTEXT = "context must not be empty: name where the secret is stored"


def test_an_empty_context_is_refused() -> None:
    with pytest.raises(ValueError) as excinfo:
        ring_a.seal(SECRET, context="")
    assert str(excinfo.value) == EMPTY_CONTEXT
    token = ring_a.seal(SECRET, context=CTX)
    with pytest.raises(ValueError) as excinfo:
        ring_a.open(token, context="")
    assert str(excinfo.value) == EMPTY_CONTEXT


def test_swapping_the_ciphertext_of_two_tokens_fails() -> None:
    first = ring_a.seal(b"first", context=CTX).split(".")
    second = ring_a.seal(b"second", context=CTX).split(".")
    spliced = ".".join([*first[:3], second[3]])
    with pytest.raises(EnvelopeError) as excinfo:
        ring_a.open(spliced, context=CTX)
    assert str(excinfo.value) == (
        "the ciphertext fails authentication: the token was altered, or sealed for another context"
    )


# --- tampering -------------------------------------------------------------------------------


def flip_byte(part: str, index: int) -> str:
    raw = bytearray(b64url_decode(part))
    raw[index] ^= 0x01
    return b64url_encode(bytes(raw))


@pytest.mark.parametrize(
    "index", [0, 11, 12, 43, 44, 59], ids=["nonce0", "nonce11", "key0", "key31", "tag0", "tag15"]
)
def test_a_flipped_byte_in_the_wrapped_key_fails(index: int) -> None:
    parts = ring_a.seal(SECRET, context=CTX).split(".")
    parts[2] = flip_byte(parts[2], index)
    with pytest.raises(EnvelopeError, match="does not open with key A"):
        ring_a.open(".".join(parts), context=CTX)


@pytest.mark.parametrize("index", [0, 11, 12, 12 + len(SECRET) - 1, 12 + len(SECRET), -1])
def test_a_flipped_byte_in_the_ciphertext_fails(index: int) -> None:
    parts = ring_a.seal(SECRET, context=CTX).split(".")
    parts[3] = flip_byte(parts[3], index)
    with pytest.raises(EnvelopeError, match="the ciphertext fails authentication") as excinfo:
        ring_a.open(".".join(parts), context=CTX)
    assert excinfo.value.__cause__ is None


def test_a_key_id_changed_to_another_known_key_fails() -> None:
    parts = ring_a.seal(SECRET, context=CTX).split(".")
    parts[1] = "B"
    with pytest.raises(EnvelopeError, match="does not open with key B"):
        ring_ab.open(".".join(parts), context=CTX)


def test_every_single_character_change_of_a_token_fails() -> None:
    token = ring_a.seal(SECRET, context=CTX)
    alphabet = string.ascii_letters + string.digits + "-_."
    for position, char in enumerate(token):
        for shift in (1, 17):
            other = alphabet[(alphabet.index(char) + shift) % len(alphabet)]
            changed = token[:position] + other + token[position + 1 :]
            with pytest.raises(EnvelopeError):
                ring_ab.open(changed, context=CTX)


def test_a_non_canonical_last_character_is_refused() -> None:
    # 60 bytes are exactly 80 characters, so use the ciphertext of a 1-byte secret:
    # 29 bytes = 38 characters + 6 spare bits; setting a spare bit decodes to the same bytes.
    token = ring_a.seal(b"x", context=CTX)
    parts = token.split(".")
    last = parts[3][-1]
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    sibling = alphabet[alphabet.index(last) ^ 1]
    tweaked = parts[3][:-1] + sibling
    assert b64url_decode(tweaked) == b64url_decode(parts[3])  # same bytes...
    parts[3] = tweaked
    with pytest.raises(EnvelopeError, match="ciphertext is not canonical base64url"):
        ring_a.open(".".join(parts), context=CTX)  # ...but refused


def malformed_variants(token: str) -> dict[str, str]:
    version, key_id, wrapped, ciphertext = token.split(".")
    return {
        "pmx2": f"pmx2.{key_id}.{wrapped}.{ciphertext}",
        "PMX1": f"PMX1.{key_id}.{wrapped}.{ciphertext}",
        "pmx": f"pmx.{key_id}.{wrapped}.{ciphertext}",
        "no version": f"{key_id}.{wrapped}.{ciphertext}",
        "five parts": f"{token}.x",
        "empty key id": f"{version}..{wrapped}.{ciphertext}",
        "bad key id": f"{version}.A!.{wrapped}.{ciphertext}",
        "padding": f"{version}.{key_id}.{wrapped}.{ciphertext}==",
        "std alphabet": f"{version}.{key_id}.{wrapped}.+{ciphertext[1:]}",
        "wrapped short": f"{version}.{key_id}.{wrapped[:-4]}.{ciphertext}",
        "wrapped long": f"{version}.{key_id}.{wrapped}AAAA.{ciphertext}",
        "wrapped 81 chars": f"{version}.{key_id}.{wrapped}A.{ciphertext}",
        "wrapped empty": f"{version}.{key_id}..{ciphertext}",
        "ciphertext 27 bytes": f"{version}.{key_id}.{wrapped}.{b64url_encode(b'x' * 27)}",
        "ciphertext 1 mod 4": f"{version}.{key_id}.{wrapped}.{ciphertext[:1]}",
        "ciphertext empty": f"{version}.{key_id}.{wrapped}.",
        "whitespace": f" {token}",
        "newline": f"{token}\n",
        "empty": "",
    }


# Why each variant is refused, as the error message words it.
MALFORMED_REASONS = {
    "pmx2": "not a pmx1 token",
    "PMX1": "not a pmx1 token",
    "pmx": "not a pmx1 token",
    "no version": "3 parts instead of 4",
    "five parts": "5 parts instead of 4",
    "empty key id": "invalid key id",
    "bad key id": "invalid key id",
    "padding": "the ciphertext is not canonical base64url",
    "std alphabet": "the ciphertext is not canonical base64url",
    "wrapped short": "the wrapped key is 57 bytes, not 60",
    "wrapped long": "the wrapped key is 63 bytes, not 60",
    "wrapped 81 chars": "the wrapped key is not canonical base64url",
    "wrapped empty": "the wrapped key is not canonical base64url",
    "ciphertext 27 bytes": "the ciphertext is shorter than 28 bytes",
    "ciphertext 1 mod 4": "the ciphertext is not canonical base64url",
    "ciphertext empty": "the ciphertext is not canonical base64url",
    "whitespace": "not a pmx1 token",
    "newline": "the ciphertext is not canonical base64url",
    "empty": "1 parts instead of 4",
}


def test_every_malformed_variant_has_a_stated_reason() -> None:
    assert set(MALFORMED_REASONS) == set(malformed_variants(ring_a.seal(b"x", context=CTX)))


@pytest.mark.parametrize("variant", list(malformed_variants(ring_a.seal(b"x", context=CTX))))
def test_a_malformed_token_is_refused_without_echoing_it(variant: str) -> None:
    token = ring_a.seal(SECRET, context=CTX)
    bad = malformed_variants(token)[variant]
    expected = (
        f"malformed envelope token ({MALFORMED_REASONS[variant]}); "
        "expected pmx1.<key id>.<wrapped key>.<ciphertext>"
    )
    for call in (
        lambda: ring_a.open(bad, context=CTX),
        lambda: ring_a.key_id_of(bad),
        lambda: ring_a.needs_rewrap(bad),
        lambda: ring_ab.rewrap(bad, context=CTX),
    ):
        with pytest.raises(EnvelopeError, match="malformed envelope token") as excinfo:
            call()
        message = str(excinfo.value)
        assert message == expected
        assert token.split(".")[2] not in message
        assert token.split(".")[3] not in message
        assert "pmx1.<key id>.<wrapped key>.<ciphertext>" in message


def test_a_28_byte_ciphertext_is_well_formed_but_fails_authentication() -> None:
    parts = ring_a.seal(b"", context=CTX).split(".")
    parts[3] = b64url_encode(b"\x00" * 28)
    with pytest.raises(EnvelopeError, match="the ciphertext fails authentication"):
        ring_a.open(".".join(parts), context=CTX)


# --- unknown keys and an empty keyring -------------------------------------------------------


def test_a_token_of_an_unknown_key_names_the_key_id_and_not_the_key() -> None:
    token = ring_a.seal(SECRET, context=CTX)
    with pytest.raises(EnvelopeError) as excinfo:
        ring_b.open(token, context=CTX)
    assert str(excinfo.value) == "key A is not in PAYMUX_ENCRYPTION_KEYS"
    assert_no_key_material(str(excinfo.value), KEY_A, KEY_B)
    assert "sk_test" not in str(excinfo.value)


def test_an_empty_keyring_opens_nothing() -> None:
    token = ring_a.seal(SECRET, context=CTX)
    with pytest.raises(EnvelopeError, match=r"^key A is not in PAYMUX_ENCRYPTION_KEYS$"):
        Keyring.empty().open(token, context=CTX)


def test_sealing_with_an_empty_keyring_fails() -> None:
    for ring in (Keyring.empty(), Keyring.parse(""), Keyring.parse("  "), Keyring()):
        assert not ring.configured
        assert ring.primary_key_id is None
        assert ring.key_ids == ()
        with pytest.raises(EnvelopeError) as excinfo:
            ring.seal(SECRET, context=CTX)
        assert str(excinfo.value) == ("no encryption key is configured: set PAYMUX_ENCRYPTION_KEYS")


def test_rotation_calls_on_an_empty_keyring_fail() -> None:
    token = ring_a.seal(SECRET, context=CTX)
    with pytest.raises(EnvelopeError, match="no encryption key is configured"):
        Keyring.empty().needs_rewrap(token)
    with pytest.raises(EnvelopeError, match="no encryption key is configured"):
        Keyring.empty().rewrap(token, context=CTX)


def test_envelope_error_is_a_value_error() -> None:
    assert issubclass(EnvelopeError, ValueError)


# --- rotation --------------------------------------------------------------------------------


def test_rotation_rewraps_the_data_key_and_keeps_the_ciphertext() -> None:
    old = ring_a.seal(SECRET, context=CTX)
    assert ring_a.key_id_of(old) == "A"
    assert not ring_a.needs_rewrap(old)

    # B is new and first; A stays after it.
    assert ring_ba.primary_key_id == "B"
    assert ring_ba.open(old, context=CTX) == SECRET
    assert ring_ba.needs_rewrap(old)
    # Before the rewrap, B alone cannot open it.
    with pytest.raises(EnvelopeError, match=r"^key A is not in PAYMUX_ENCRYPTION_KEYS$"):
        ring_b.open(old, context=CTX)

    new = ring_ba.rewrap(old, context=CTX)
    assert ring_ba.key_id_of(new) == "B"
    assert not ring_ba.needs_rewrap(new)
    assert new.startswith("pmx1.B.")
    assert new.split(".")[3] == old.split(".")[3]  # the data ciphertext, byte for byte
    assert new.split(".")[2] != old.split(".")[2]
    assert len(b64url_decode(new.split(".")[2])) == 60
    # A can go: B alone opens the rewrapped token.
    assert ring_b.open(new, context=CTX) == SECRET
    with pytest.raises(EnvelopeError, match=r"^key B is not in PAYMUX_ENCRYPTION_KEYS$"):
        ring_a.open(new, context=CTX)


def test_a_rewrapped_key_is_wrapped_by_hand_checkable_primary_key() -> None:
    old = ring_a.seal(SECRET, context=CTX)
    new = ring_ba.rewrap(old, context=CTX)
    aad_a = b"pmx1\x00dek\x00A\x00" + CTX.encode()
    aad_b = b"pmx1\x00dek\x00B\x00" + CTX.encode()
    old_wrapped, new_wrapped = b64url_decode(old.split(".")[2]), b64url_decode(new.split(".")[2])
    old_dek = AESGCM(KEY_A).decrypt(old_wrapped[:12], old_wrapped[12:], aad_a)
    new_dek = AESGCM(KEY_B).decrypt(new_wrapped[:12], new_wrapped[12:], aad_b)
    assert old_dek == new_dek  # the same data key, only wrapped anew


def test_rewrapping_a_token_of_the_primary_key_returns_it_unchanged() -> None:
    token = ring_ba.seal(SECRET, context=CTX)
    assert ring_ba.key_id_of(token) == "B"
    assert not ring_ba.needs_rewrap(token)
    assert ring_ba.rewrap(token, context=CTX) == token


def test_rewrapping_twice_is_idempotent() -> None:
    once = ring_ba.rewrap(ring_a.seal(SECRET, context=CTX), context=CTX)
    assert ring_ba.rewrap(once, context=CTX) == once


def test_rewrap_needs_the_right_context() -> None:
    old = ring_a.seal(SECRET, context=CTX)
    with pytest.raises(EnvelopeError, match="does not open with key A"):
        ring_ba.rewrap(old, context="connection:conn_2:credentials")


def test_rewrap_refuses_an_altered_ciphertext() -> None:
    parts = ring_a.seal(SECRET, context=CTX).split(".")
    parts[3] = flip_byte(parts[3], 20)
    with pytest.raises(EnvelopeError, match="the ciphertext fails authentication"):
        ring_ba.rewrap(".".join(parts), context=CTX)
    # Even when the token is already wrapped by the primary key.
    with pytest.raises(EnvelopeError, match="the ciphertext fails authentication"):
        ring_a.rewrap(".".join(parts), context=CTX)


def test_rewrap_of_an_unknown_key_names_it() -> None:
    token = Keyring.parse(entry("C", KEY_C)).seal(SECRET, context=CTX)
    with pytest.raises(EnvelopeError, match=r"^key C is not in PAYMUX_ENCRYPTION_KEYS$"):
        ring_ba.rewrap(token, context=CTX)


def test_the_key_id_of_a_token_is_read_without_its_key() -> None:
    token = Keyring.parse(entry("k-2026_01", KEY_C)).seal(SECRET, context=CTX)
    assert Keyring.empty().key_id_of(token) == "k-2026_01"
    assert ring_a.needs_rewrap(token)


# --- parsing PAYMUX_ENCRYPTION_KEYS ----------------------------------------------------------


def test_the_first_entry_is_the_primary_key() -> None:
    assert ring_ba.key_ids == ("B", "A")
    assert ring_ba.primary_key_id == "B"
    assert ring_ba.configured
    token = ring_ba.seal(SECRET, context=CTX)
    assert ring_ba.key_id_of(token) == "B"
    assert ring_ab.key_id_of(ring_ab.seal(SECRET, context=CTX)) == "A"


@pytest.mark.parametrize(
    "key_text",
    [
        base64.b64encode(KEY_C).decode(),
        base64.b64encode(KEY_C).decode().rstrip("="),
        base64.urlsafe_b64encode(KEY_C).decode(),
        base64.urlsafe_b64encode(KEY_C).decode().rstrip("="),
        base64.b64encode(KEY_C).decode() + "=",
        base64.urlsafe_b64encode(KEY_C).decode().rstrip("=") + "==",
    ],
    ids=[
        "standard",
        "standard unpadded",
        "urlsafe",
        "urlsafe unpadded",
        "standard over-padded",
        "urlsafe over-padded",
    ],
)
def test_standard_and_urlsafe_base64_are_the_same_key(key_text: str) -> None:
    assert "+" in std(KEY_C) and "/" in std(KEY_C)  # the alphabets do differ for this key
    sealed = handmade_token("C", KEY_C, b"\x05" * 32, SECRET, CTX)
    assert Keyring.parse(f"C:{key_text}").open(sealed, context=CTX) == SECRET


def test_whitespace_around_entries_is_ignored() -> None:
    ring = Keyring.parse(f"  B : {std(KEY_B)} ,\n A:{std(KEY_A)}\n")
    assert ring.key_ids == ("B", "A")
    assert ring.open(ring_a.seal(SECRET, context=CTX), context=CTX) == SECRET


def test_a_33_byte_key_ending_in_x_is_not_cut_to_32_bytes() -> None:
    # 33 bytes are 44 characters without padding; the last one here is "X" (0x17 & 63 = 23).
    key = KEY_B + b"\x17"
    assert std(key).endswith("X") and "=" not in std(key)
    with pytest.raises(ValueError) as excinfo:
        Keyring.parse(f"B:{std(key)}")
    assert (
        str(excinfo.value)
        == "PAYMUX_ENCRYPTION_KEYS entry 1 (key id 'B'): the key is 33 bytes, not 32"
    )


def test_a_32_character_key_id_is_accepted() -> None:
    key_id = "k" * 32
    ring = Keyring.parse(entry(key_id, KEY_A))
    assert ring.key_id_of(ring.seal(SECRET, context=CTX)) == key_id


BAD_ENTRIES = {
    "missing colon": (f"{entry('A', KEY_A)},{std(KEY_B)}", "entry 2 has no ':'"),
    "bad base64": (f"A:{std(KEY_A)[:-3]}!!=", "entry 1 (key id 'A'): the key is not valid base64"),
    "1 mod 4 base64": (
        f"A:{std(KEY_A).rstrip('=')}AA",
        "entry 1 (key id 'A'): the key is not valid base64",
    ),
    "16 bytes": (
        f"{entry('A', KEY_A)},B:{std(KEY_B[:16])}",
        "entry 2 (key id 'B'): the key is 16 bytes, not 32",
    ),
    "31 bytes": (f"B:{std(KEY_B[:31])}", "entry 1 (key id 'B'): the key is 31 bytes, not 32"),
    "33 bytes": (f"B:{std(KEY_B + b'x')}", "entry 1 (key id 'B'): the key is 33 bytes, not 32"),
    "duplicate id": (
        f"{entry('A', KEY_A)},{entry('A', KEY_B)}",
        "entry 2 (key id 'A'): the key id is listed twice",
    ),
    "empty id": (f"{entry('A', KEY_A)},:{std(KEY_B)}", "entry 2 has an empty key id"),
    "blank id": (f" : {std(KEY_B)}", "entry 1 has an empty key id"),
    "empty entry": (f"{entry('A', KEY_A)},,{entry('B', KEY_B)}", "entry 2 is empty"),
    "trailing comma": (f"{entry('A', KEY_A)},", "entry 2 is empty"),
    "dot in id": (f"a.b:{std(KEY_A)}", "entry 1 has an invalid key id"),
    "33-char id": (f"{'k' * 33}:{std(KEY_A)}", "entry 1 has an invalid key id"),
    "key and id swapped": (f"{std(KEY_A)}:A", "entry 1 has an invalid key id"),
    "second colon in the key": (
        f"A:B:{std(KEY_B)}",
        "entry 1 (key id 'A'): the key is not valid base64",
    ),
    "4 characters": ("A:AAAA", "entry 1 (key id 'A'): the key is 3 bytes, not 32"),
    "6 characters": ("A:AAAAAA", "entry 1 (key id 'A'): the key is 4 bytes, not 32"),
    "5 characters": ("A:AAAAA", "entry 1 (key id 'A'): the key is not valid base64"),
    "urlsafe key as id": (
        f"{base64.urlsafe_b64encode(KEY_A).decode().rstrip('=')}:{std(KEY_B)}",
        "entry 1 has an invalid key id",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_a_bad_entry_is_named_by_position_and_id_never_by_its_key(case: str) -> None:
    text, expected = BAD_ENTRIES[case]
    with pytest.raises(ValueError) as excinfo:
        Keyring.parse(text)
    message = str(excinfo.value)
    assert message.startswith("PAYMUX_ENCRYPTION_KEYS entry ")
    assert expected in message
    assert_no_key_material(message, KEY_A, KEY_B, KEY_B[:16], KEY_B[:31], KEY_B + b"x")
    assert excinfo.value.__cause__ is None
    assert not isinstance(excinfo.value, EnvelopeError)


def test_from_env_reads_paymux_encryption_keys() -> None:
    ring = Keyring.from_env({"PAYMUX_ENCRYPTION_KEYS": f"{entry('B', KEY_B)},{entry('A', KEY_A)}"})
    assert ring.key_ids == ("B", "A")
    assert ring.open(ring_a.seal(SECRET, context=CTX), context=CTX) == SECRET
    assert not Keyring.from_env({}).configured
    assert not Keyring.from_env({"PAYMUX_ENCRYPTION_KEYS": ""}).configured
    assert not Keyring.from_env({"OTHER": entry("A", KEY_A)}).configured


def test_from_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMUX_ENCRYPTION_KEYS", entry("A", KEY_A))
    assert Keyring.from_env().key_ids == ("A",)
    monkeypatch.delenv("PAYMUX_ENCRYPTION_KEYS")
    assert not Keyring.from_env().configured


def test_a_bad_environment_raises_value_error_without_the_key() -> None:
    with pytest.raises(ValueError, match=r"entry 1 \(key id 'A'\): the key is 16 bytes") as excinfo:
        Keyring.from_env({"PAYMUX_ENCRYPTION_KEYS": f"A:{std(KEY_A[:16])}"})
    assert_no_key_material(str(excinfo.value), KEY_A[:16])


def test_the_keyring_repr_shows_key_ids_only() -> None:
    text = repr(ring_ba)
    assert text == "Keyring(key_ids=('B', 'A'))"
    assert_no_key_material(text, KEY_A, KEY_B)


INVALID_KEY_ID = "a key id is 1 to 32 characters among A-Z a-z 0-9 _ -"


def test_the_constructor_checks_ids_lengths_and_duplicates() -> None:
    assert Keyring([("A", KEY_A)]).key_ids == ("A",)
    with pytest.raises(ValueError, match=r"key 1 \('A'\) is 16 bytes, not 32"):
        Keyring([("A", KEY_A[:16])])
    with pytest.raises(ValueError, match="key 2: key id 'A' is listed twice"):
        Keyring([("A", KEY_A), ("A", KEY_B)])
    with pytest.raises(ValueError) as excinfo:
        Keyring([("a.b", KEY_A)])
    assert str(excinfo.value) == INVALID_KEY_ID


# --- generate_key_entry ----------------------------------------------------------------------


def test_a_generated_entry_is_an_id_and_32_random_bytes_in_base64() -> None:
    first = generate_key_entry("k2026")
    second = generate_key_entry("k2026")
    key_id, _, key_text = first.partition(":")
    assert key_id == "k2026"
    assert len(key_text) == 44
    assert len(base64.urlsafe_b64decode(key_text)) == 32
    assert first != second
    ring = Keyring.parse(first)
    assert ring.key_ids == ("k2026",)
    assert ring.open(ring.seal(SECRET, context=CTX), context=CTX) == SECRET
    assert Keyring.parse(f"{first},{second.replace('k2026', 'old')}").key_ids == ("k2026", "old")


@pytest.mark.parametrize("key_id", ["", "a.b", "a:b", "a,b", "k" * 33, "é"])
def test_a_generated_entry_needs_a_valid_key_id(key_id: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        generate_key_entry(key_id)
    assert str(excinfo.value) == INVALID_KEY_ID
