"""Random test secrets and ids that no card-number guard can mistake for a card number.

``prefix + secrets.token_hex(8)`` is 16 hexadecimal characters: about one in 4,400 holds a
run of 13 or more digits that passes Luhn (such as ``4771794496671`` followed by ``af1``), and
paymux rightly refuses a request carrying it as ``card_number_forbidden``. A test that drew one
failed at random (CI, stop 24). Letters only cannot form a digit run.
"""

from __future__ import annotations

import secrets
import string

__all__ = ["random_token"]


def random_token(prefix: str = "", length: int = 16) -> str:
    """``prefix`` and ``length`` random ASCII letters."""
    return prefix + "".join(secrets.choice(string.ascii_letters) for _ in range(length))
