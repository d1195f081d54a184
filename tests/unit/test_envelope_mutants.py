"""paymux.security.envelope: the unpadded base64url of a token's parts keeps every character
of the alphabet at its end (mutation testing found no test whose encoding ended in a letter
that stripping could take: only "=" padding goes). Expected values are written out by hand."""

from __future__ import annotations

from paymux.security.envelope import _b64url_decode, _b64url_encode


def test_only_padding_is_stripped_from_the_end() -> None:
    # 0x00 0x00 0x17: the 6-bit groups 0, 0, 0, 23, "AAAX" (X is 23 in the alphabet).
    assert _b64url_encode(b"\x00\x00\x17") == "AAAX"
    assert _b64url_decode("AAAX") == b"\x00\x00\x17"
    assert _b64url_encode(b"\x00") == "AA"  # "AA==" unpadded
    assert _b64url_encode(b"\xfb\xff") == "-_8"  # "-_8=": the urlsafe alphabet, unpadded
