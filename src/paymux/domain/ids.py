"""Prefixed object ids (``pi_``, ``cus_``, ``pm_``, ``re_``, ``evt_``, ...)."""

from __future__ import annotations

import os
import string
from collections.abc import Callable

__all__ = ["new_id"]

#: Where the random bytes come from. A seam for tests that replay a run with seeded ids
#: (tests/integration/test_fault_injection.py sets it to a seeded ``random.Random().randbytes``).
random_bytes: Callable[[int], bytes] = os.urandom

_ALPHABET = string.ascii_letters + string.digits
# Random bytes below this are mapped onto the alphabet (byte % 62); the rest are dropped, so
# every character is uniform, as with secrets.choice, from one os.urandom call instead of one
# per character.
_LIMIT = 256 - 256 % len(_ALPHABET)
# bytes.translate maps the kept bytes onto the alphabet and deletes the others in C: the same
# characters as the byte-by-byte rule above, about 20 times cheaper (two ids per delivery).
_TO_ALPHABET = bytes(ord(_ALPHABET[byte % len(_ALPHABET)]) for byte in range(256))
_DROPPED = bytes(range(_LIMIT, 256))


def new_id(prefix: str, length: int = 24) -> str:
    chars = b""
    while len(chars) < length:
        # 248/256 of the bytes are kept: ask for a few more than needed.
        chars += random_bytes(length - len(chars) + 8).translate(_TO_ALPHABET, _DROPPED)
    return prefix + "_" + chars[:length].decode("ascii")
