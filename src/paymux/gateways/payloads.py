"""Reading a provider's webhook body: UTF-8 JSON, bounded in depth, or a clear refusal.

``json.loads`` on bytes guesses UTF-16 and UTF-32 and skips a byte-order mark, and recurses
once per level of nesting. A signed body in another encoding would then be stored as text
that can't be decoded, and a deeply nested one would raise RecursionError: a 500, or an inbox
row that fails to apply forever. Every connector reads its webhook bodies here instead, and a
body that is not what the providers send (RFC 8259 JSON, UTF-8, no BOM) is refused with
``invalid_payload`` (a 400) before anything is stored.
"""

from __future__ import annotations

import json
import re
from typing import Any

from paymux.gateways.base import WebhookVerificationError

__all__ = ["MAX_DEPTH", "load_event"]

# Provider events nest a few levels (Stripe: data.object.charges.data[].payment_method_details
# ...): 64 leaves ample room and keeps json's recursion far from Python's limit.
MAX_DEPTH = 64


# A JSON string (possibly unterminated: it runs to the end), skipped by the depth scan.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str, limit: int) -> bool:
    """Does ``text`` open more than ``limit`` arrays or objects at once? Brackets inside
    strings don't count. No recursion, and no loop over characters in Python: a text with no
    more than ``limit`` opening brackets in all (a provider's event has a dozen or two;
    brackets inside strings only add to the count) can't be too deep, which is one count in
    C; otherwise the strings are cut out (a regular expression, in C) and only the brackets
    left are looped over. The same rule as the guard middleware's ``json_too_deep``, which
    has already refused what is deeper than its own, lower limit on the API's path."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for char in _BRACKET.findall(_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def load_event(body: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The event object in a verified body; WebhookVerificationError(invalid_payload) for
    anything that is not a UTF-8 JSON object no deeper than ``max_depth``."""
    if body.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        raise WebhookVerificationError(
            "invalid_payload", "The body starts with a byte-order mark; send UTF-8 JSON."
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookVerificationError("invalid_payload", "The body is not UTF-8.") from None
    if _too_deep(text, max_depth):
        raise WebhookVerificationError(
            "invalid_payload", f"The body nests more than {max_depth} levels."
        )
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        raise WebhookVerificationError("invalid_payload", "The body is not JSON.") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("invalid_payload", "The body is not a JSON object.")
    return event
