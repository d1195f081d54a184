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


def new_id(prefix: str, length: int = 24) -> str:
    chars: list[str] = []
    while len(chars) < length:
        # 248/256 of the bytes are kept: ask for a few more than needed.
        for byte in random_bytes(length - len(chars) + 8):
            if byte < _LIMIT:
                chars.append(_ALPHABET[byte % len(_ALPHABET)])
                if len(chars) == length:
                    break
    return prefix + "_" + "".join(chars)
