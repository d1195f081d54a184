"""Detection and masking of primary account numbers (card numbers, "PANs").

paymux never needs to see a raw card number: card data is tokenised by the
upstream gateway. These helpers let the API refuse request values that look
like a PAN (:func:`looks_like_pan`, :func:`find_pan_param`) and let logging
mask any PAN that slips into a log line (:func:`mask_pans`).

What counts as a PAN
--------------------
Text is split into *digit groups*: maximal runs of ASCII digits in which a
single space, dash or plus sign (a space in a form-encoded body) may sit
between two digits, so ``"4242 4242 4242 4242"``, ``"4242-4242-4242-4242"``
and ``"4242424242424242"`` are each one group. The separators split a group
into *chunks* (``"4242"``, ``"4242"``, ...).

A group contains a PAN when some run of consecutive whole chunks (possibly
the whole group, possibly a single chunk)

* holds 13 to 19 digits,
* starts with a digit from 2 to 9, and
* passes the Luhn check.

For :func:`looks_like_pan` and :func:`find_pan_param` the run must also not be
glued to an ASCII letter (``"card4242424242424242"``, ``"…c1a2345678901234567"``);
:func:`mask_pans` masks such runs too.

Why these rules:

* Runs of whole chunks, not arbitrary windows, catch a PAN that is joined by
  a space to neighbouring numbers (``"4242424242424242 123"``: PAN, then CVC)
  while a single unbroken run of 20 or more digits (an acquirer reference
  number has 23) is never reported. Checking every 13-19 digit window of a
  long run would flag almost every long number, and most Luhn-invalid 16
  digit numbers as well.
* Every card network paymux's gateways accept (Visa, Mastercard, Amex,
  Discover, Diners, JCB, UnionPay, ...) issues numbers whose first digit is 2
  to 9. Rejecting a leading 0 or 1 (ISO/IEC 7812 industry 0, and 1 for
  airlines (UATP)) keeps millisecond, microsecond and nanosecond Unix
  timestamps (13, 16 and 19 digits, all starting with ``1`` until the year
  2286) from being mistaken for card numbers: one number in ten passes Luhn.
* Hexadecimal identifiers (UUIDs, hashes, trace ids) often hold a run of 13
  or more decimal digits; about one in 400 random SHA-256 hex digests would
  be flagged if the letters around the run were ignored. Rejecting an API
  request for that would be a baffling, data-dependent failure, so the
  request checks require the run to stand apart from letters. Masking a log
  line by mistake costs little, so :func:`mask_pans` ignores letters and also
  catches ``"card%3D4242424242424242"``.

Prefixed identifiers such as ``pi_3Nabc123`` and 10 digit Unix timestamps are
never PANs. Everything runs in time linear in the length of the input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal

__all__ = [
    "MASK",
    "find_pan_param",
    "is_luhn_valid",
    "looks_like_pan",
    "mask_pans",
]

MIN_PAN_DIGITS = 13
MAX_PAN_DIGITS = 19

#: What replaces every digit of a masked PAN except the last four. The length
#: is fixed so the mask does not reveal how long the number was.
MASK = "*" * 12

# A digit group holding at least MIN_PAN_DIGITS digits. The match is always a
# whole maximal group: a group of 13 or more digits matches from its first
# digit, and no part of a shorter group can match. Every repetition consumes a
# digit, so there is no catastrophic backtracking.
_GROUP_RE = re.compile(rf"[0-9](?:[ +-]?[0-9]){{{MIN_PAN_DIGITS - 1},}}")
_CHUNK_RE = re.compile(r"[0-9]+")

# Luhn: the value of a digit after doubling and summing the digits of the result.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_FIRST_DIGITS = frozenset("23456789")

_INT_LOW = 10 ** (MIN_PAN_DIGITS - 1)
_INT_HIGH = 10**MAX_PAN_DIGITS


def is_luhn_valid(digits: str) -> bool:
    """Return True if ``digits`` is a non-empty string of ASCII digits that passes Luhn.

    Any other character (including spaces) makes the result False.
    """
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    double = False
    for ch in reversed(digits):
        d = ord(ch) - 48
        total += _DOUBLED[d] if double else d
        double = not double
    return total % 10 == 0


def _is_letter(text: str, index: int) -> bool:
    return 0 <= index < len(text) and text[index].isascii() and text[index].isalpha()


def _pan_spans(text: str, start: int, end: int, strict: bool) -> list[tuple[int, int]]:
    """Return merged ``(start, end)`` offsets in ``text`` of PANs in the digit group there.

    ``text[start:end]`` is a digit group matched by ``_GROUP_RE``. Overlapping
    PAN candidates are merged, so every digit of every candidate ends up inside
    a returned span. With ``strict``, chunks glued to a letter are skipped.
    """
    glued_start = strict and _is_letter(text, start - 1)
    glued_end = strict and _is_letter(text, end)
    group = text[start:end]
    if group.isdigit():
        # The common case: one unbroken run of digits.
        if (
            not (glued_start or glued_end)
            and len(group) <= MAX_PAN_DIGITS
            and group[0] in _FIRST_DIGITS
            and is_luhn_valid(group)
        ):
            return [(start, end)]
        return []

    chunks = [(m.start(), m.end()) for m in _CHUNK_RE.finditer(text, start, end)]
    digits = "".join(text[s:e] for s, e in chunks)
    n = len(digits)
    # Prefix sums of digit values for windows whose last digit has an even
    # (resp. odd) index: Luhn doubles every second digit counting from the
    # right, so which digits are doubled depends only on the parity of the
    # last index. With these, the Luhn sum of any window costs O(1).
    sum_last_even = [0] * (n + 1)
    sum_last_odd = [0] * (n + 1)
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i & 1:  # odd index: doubled when the last index is even
            sum_last_even[i + 1] = sum_last_even[i] + _DOUBLED[d]
            sum_last_odd[i + 1] = sum_last_odd[i] + d
        else:
            sum_last_even[i + 1] = sum_last_even[i] + d
            sum_last_odd[i + 1] = sum_last_odd[i] + _DOUBLED[d]

    # Offsets in ``digits`` of each chunk's start and end.
    bounds: list[tuple[int, int]] = []
    offset = 0
    for s, e in chunks:
        bounds.append((offset, offset + e - s))
        offset += e - s

    first = 1 if glued_start else 0
    last = len(bounds) - (2 if glued_end else 1)
    found: list[tuple[int, int]] = []  # (first chunk, last chunk), inclusive
    for a in range(first, last + 1):
        d_start = bounds[a][0]
        if digits[d_start] not in _FIRST_DIGITS:
            continue
        for b in range(a, last + 1):
            d_end = bounds[b][1]
            length = d_end - d_start
            if length > MAX_PAN_DIGITS:
                break
            if length < MIN_PAN_DIGITS:
                continue
            sums = sum_last_odd if (d_end - 1) & 1 else sum_last_even
            if (sums[d_end] - sums[d_start]) % 10 == 0:
                found.append((a, b))

    merged: list[tuple[int, int]] = []
    for a, b in found:  # sorted by first chunk
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return [(chunks[a][0], chunks[b][1]) for a, b in merged]


def looks_like_pan(value: str) -> bool:
    """Return True if ``value`` contains something that looks like a card number.

    The card number may be embedded in longer text (``"my card is
    4242424242424242"``). See the module docstring for the exact rules; digits
    glued to a letter do not count here.
    """
    if not isinstance(value, str):
        return False
    return any(
        _pan_spans(value, m.start(), m.end(), strict=True) for m in _GROUP_RE.finditer(value)
    )


def mask_pans(text: str) -> str:
    """Replace every PAN in ``text`` with ``************`` followed by its last four digits.

    Separators inside the PAN are dropped and the mask has a fixed length, so
    nothing but the last four digits survives. Text around the PAN, including
    numbers next to it that are not part of it, is kept. Unlike
    :func:`looks_like_pan` this also masks digits glued to letters: it masks
    everything :func:`looks_like_pan` reports, and more. Idempotent.
    """
    out: list[str] = []
    pos = 0
    for m in _GROUP_RE.finditer(text):
        for s, e in _pan_spans(text, m.start(), m.end(), strict=False):
            last4 = "".join(ch for ch in text[s:e] if ch.isdigit())[-4:]
            out.append(text[pos:s])
            out.append(MASK + last4)
            pos = e
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _scalar_text(value: object) -> str | None:
    """The text to check for a scalar value from JSON-like data, or None to skip it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # Bounds first: str() of a huge int is slow (and may raise).
        return str(abs(value)) if _INT_LOW <= abs(value) < _INT_HIGH else None
    if isinstance(value, float):
        if math.isfinite(value) and _INT_LOW <= abs(value) < _INT_HIGH:
            return str(int(abs(value)))
        return None
    if isinstance(value, Decimal):
        if value.is_finite() and _INT_LOW <= abs(value) < _INT_HIGH:
            return str(int(abs(value)))
        return None
    return None


def _scalar_looks_like_pan(value: object) -> bool:
    text = _scalar_text(value)
    return text is not None and looks_like_pan(text)


def _child_path(prefix: str, key: object) -> str:
    return f"{prefix}[{key}]" if prefix else str(key)


def _children(obj: object) -> Iterator[tuple[object, object]] | None:
    """Iterate ``(path segment, value)`` pairs of a container; None for a scalar.

    A mapping key that looks like a PAN is yielded as a pseudo-child whose
    value is the key itself and whose segment is the key, masked.
    """
    if isinstance(obj, Mapping):
        return _mapping_children(obj)
    if isinstance(obj, list | tuple):
        return enumerate(obj)
    return None


def _mapping_children(obj: Mapping[object, object]) -> Iterator[tuple[object, object]]:
    for key, value in obj.items():
        if _scalar_looks_like_pan(key):
            # Report the key itself; mask it so the path is safe to echo back.
            yield mask_pans(_scalar_text(key) or ""), key
        else:
            yield key, value


def find_pan_param(obj: object, prefix: str = "") -> str | None:
    """Return the Stripe-style path of the first value in ``obj`` that looks like a PAN.

    ``obj`` is JSON-like data: mappings, lists and tuples of strings and
    numbers (integers are checked as digit strings; booleans and ``None`` are
    ignored). Paths look like ``description``, ``metadata[note]`` or
    ``items[0][description]``; ``prefix`` is the path of ``obj`` itself.

    Mapping keys are checked too. When a key looks like a PAN, the returned path
    ends in that key with the PAN masked (``metadata[************4242]``), so the
    path can be put in an error message without echoing the card number.

    Returns None when nothing looks like a PAN.
    """
    if _scalar_looks_like_pan(obj):
        return prefix
    root = _children(obj)
    if root is None:
        return None
    # Iterative depth-first walk in document order, so deeply nested input
    # cannot exhaust the recursion limit. Paths are only built for containers
    # and for the match, not for every scalar.
    stack: list[tuple[str, Iterator[tuple[object, object]]]] = [(prefix, root)]
    seen: set[int] = {id(obj)}
    while stack:
        path, items = stack[-1]
        for segment, value in items:
            if _scalar_looks_like_pan(value):
                return _child_path(path, segment)
            children = _children(value)
            if children is not None and id(value) not in seen:
                seen.add(id(value))
                stack.append((_child_path(path, segment), children))
                break
        else:
            stack.pop()
    return None
