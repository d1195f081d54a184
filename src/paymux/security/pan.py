"""Detection and masking of primary account numbers (card numbers, "PANs").

paymux never needs to see a raw card number: card data is tokenised by the
upstream gateway. These helpers let the API refuse request values that hold a
card number (:func:`looks_like_pan`, :func:`find_pan_param`), and mask any
number that may be one in text that is stored or logged (:func:`mask_pans`,
:func:`mask_pan_data`). docs/security.md, "The card-number rule", explains the
rule for operators; this is the precise version.

1. Normalization
----------------
Before anything is checked, the text is normalized (only for the check; the
text itself is never rewritten, except where a number is masked):

* each character goes through Unicode NFKC (full-width digits U+FF10..U+FF19,
  superscripts and circled digits become ASCII digits; the full-width full
  stop, solidus, low line and hyphen become ``./_-``), and every other
  Unicode decimal digit (Arabic-Indic, Devanagari, ...: category Nd) becomes
  its ASCII digit;
* format characters (category Cf: zero-width space, non-joiner and joiner
  U+200B..U+200D, word joiner U+2060, BOM U+FEFF, soft hyphen, bidi marks) are
  dropped, so ``"4242\\u200b4242..."`` is one run of digits;
* Unicode spaces (U+00A0, U+2000..U+200A, U+3000, ...) become a space and
  Unicode dashes (category Pd) a hyphen;
* a run of percent-escapes (``%20``, ``%C2%A0``, ``%EF%BC%94``) is decoded as
  UTF-8 and its characters normalized likewise: values are checked after the
  one decode a query string or form body gets, and a literal ``%20`` that is
  left after it (or sits in a JSON string, or in a raw log line) still counts;
* UUIDs (8-4-4-4-12 hex) and hexadecimal identifiers of 24 or more characters
  holding at least one letter a-f (hashes, trace and object ids) are set
  aside: their digits are never a card number.

2. Digit groups and candidates
------------------------------
A *separator* is any run of spaces, tabs, newlines and other whitespace,
``.``, ``/``, ``_``, ``-`` and ``+`` (a space in a form-encoded body). A
*digit group* is a maximal sequence of runs of digits (*chunks*) with a
separator between each two. Letters do not end a group's digits: a number
glued to letters (``"ref4242424242424242"``, ``"4242424242424242x"``) counts.

A *candidate* is a run of consecutive whole chunks of a group (possibly one
chunk, possibly all of them) that

* holds 13 to 19 digits,
* starts with a known card-brand prefix (:data:`CARD_PREFIXES`, two digits),
* passes the Luhn check.

Whole chunks, not arbitrary windows: a single unbroken run of 20 or more
digits (an acquirer reference number has 23) holds no candidate, and a PAN
next to other numbers (``"4242424242424242 123"``: PAN, then CVC) is found.

3. Refused, masked
------------------
A candidate is *card-shaped* when its chunks are grouped the way card numbers
are written: one unbroken run; or groups of four with a last group of one to
four digits (``4-4-4-4``, ``4-4-4-4-3``, ``4-4-4-1``); or ``4-6-5`` (Amex) or
``4-6-4`` (Diners). Whatever the separators: ``"4242.4242.4242.4242"``,
``"4242\\t4242\\t4242\\t4242"`` and ``"4242  4242  4242  4242"`` all are.

* :func:`looks_like_pan` and :func:`find_pan_param` (the request guard)
  report card-shaped candidates: the request is refused.
* :func:`mask_pans` masks card-shaped candidates and also *loosely grouped*
  ones: a candidate in which every chunk but the last holds at least three
  digits (``"424 242 424 242 4242"``, ``"424242 4242424242"``). Such a number
  can be a card number written oddly, or ordinary numbers side by side (an
  order number, then a phone number): refusing would fail legitimate input
  about one time in ten (the Luhn odds), so request text that holds one is
  stored and logged with the number masked instead
  (:func:`mask_pan_data`, applied by the request guard).

Chunks of one or two digits only join a candidate as its last chunk, so dates,
times, versions and IP addresses (``2024-01-15 10.30``, ``1.2.3``,
``192.168.1.1``) are never joined into one. The card-brand prefixes leave out
``0``, ``1`` (timestamps in ms, us and ns start with ``1`` until the year
2286), ``20``, ``21`` (dates: ``20240115103000123``), ``7`` (petroleum) and
other ranges no card network that paymux's gateways accept issues from.

Everything runs in time linear in the length of the input.
"""

from __future__ import annotations

import math
import operator
import re
import unicodedata
from collections.abc import Iterator, Mapping
from decimal import Decimal
from functools import lru_cache
from itertools import accumulate, chain

__all__ = [
    "CARD_PREFIXES",
    "MASK",
    "find_pan_param",
    "is_luhn_valid",
    "looks_like_pan",
    "mask_pan_data",
    "mask_pans",
]

MIN_PAN_DIGITS = 13
MAX_PAN_DIGITS = 19

#: What replaces every digit of a masked PAN except the last four. The length
#: is fixed so the mask does not reveal how long the number was.
MASK = "*" * 12

#: The first two digits of every card number paymux treats as one: Mir
#: (2200-2204) and Mastercard (2221-2720); Diners (30, 36, 38, 39), Amex (34,
#: 37), JCB (35); Visa (4); Mastercard, Maestro, Verve, Elo (5); Discover,
#: UnionPay, Maestro, RuPay (6); UnionPay, RuPay, UzCard (81, 82, 86); Troy
#: and Humo (97, 98).
CARD_PREFIXES = frozenset(
    ["22", "23", "24", "25", "26", "27", "30", "34", "35", "36", "37", "38", "39"]
    + [f"{d}{e}" for d in "456" for e in "0123456789"]
    + ["81", "82", "86", "97", "98"]
)

_SEP = r"[\s./_+\-]"
# A digit group holding at least MIN_PAN_DIGITS digits, in normalized text.
# Separator runs and digits are disjoint and every repetition consumes a
# digit, so there is no catastrophic backtracking.
_GROUP_RE = re.compile(rf"[0-9](?:{_SEP}*[0-9]){{{MIN_PAN_DIGITS - 1},}}")
_CHUNK_RE = re.compile(r"[0-9]+")
# Identifiers whose digits are never a card number: UUIDs, and hexadecimal
# ids (hashes, trace ids) of 24 or more characters with a letter in them.
_HEX_ID_RE = re.compile(
    r"(?<![0-9A-Za-z])(?:"
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{24,}"
    r")(?![0-9A-Za-z])"
)
# What the normalization has to look at: non-ASCII characters and runs of
# percent-escapes.
_SPECIAL_RE = re.compile(r"[^\x00-\x7f]|(?:%[0-9A-Fa-f]{2})+")

# Luhn: the value of a digit after doubling and summing the digits of the result.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

# The integers with MIN_PAN_DIGITS to MAX_PAN_DIGITS digits: from _PAN_START, below _PAN_END.
_PAN_START = 10 ** (MIN_PAN_DIGITS - 1)
_PAN_END = 10**MAX_PAN_DIGITS


def is_luhn_valid(digits: str) -> bool:
    """Return True if ``digits`` is a non-empty string of ASCII digits that passes Luhn.

    Any other character (including spaces) makes the result False.
    """
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    # Every second digit from the right is doubled: those at odd offsets from the end.
    total = sum(
        _DOUBLED[ord(ch) - 48] if i & 1 else ord(ch) - 48 for i, ch in enumerate(reversed(digits))
    )
    return total % 10 == 0


# --- normalization ----------------------------------------------------------


@lru_cache(maxsize=4096)
def _normalize_char(ch: str) -> str:
    """What one character stands for in the text that is checked ("" to drop it)."""
    if ch.isascii():
        return ch
    out = []
    for c in unicodedata.normalize("NFKC", ch):
        if c.isascii():
            out.append(c)
            continue
        category = unicodedata.category(c)
        if category == "Cf":  # zero-width characters, BOM, soft hyphen, bidi marks
            continue
        if category == "Nd":
            out.append(str(unicodedata.decimal(c)))
        elif c.isspace() or category == "Zs":
            out.append(" ")
        elif category == "Pd":
            out.append("-")
        else:
            out.append(c)
    return "".join(out)


def _decode_escapes(escapes: str) -> str:
    """``"%C2%A0%34"`` -> ``"\xa04"``; invalid UTF-8 becomes U+FFFD."""
    return bytes.fromhex(escapes.replace("%", "")).decode(errors="replace")  # UTF-8


class _Normalized:
    """Normalized text, with where each of its characters came from in the original."""

    __slots__ = ("ends", "original", "starts", "text")
    # Set only when ``text`` is not ``original`` itself.
    starts: list[int]
    ends: list[int]

    def __init__(self, original: str) -> None:
        self.original = original
        self.text = original
        if original.isascii() and "%" not in original:
            return  # the common case: nothing to do
        chars: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        pos = 0
        for m in _SPECIAL_RE.finditer(original):
            chars.append(original[pos : m.start()])
            starts.extend(range(pos, m.start()))
            ends.extend(range(pos + 1, m.start() + 1))
            piece = m.group()
            decoded = _decode_escapes(piece) if piece[0] == "%" else piece
            for ch in decoded:
                normalized = _normalize_char(ch)
                chars.append(normalized)
                starts.extend([m.start()] * len(normalized))
                ends.extend([m.end()] * len(normalized))
            pos = m.end()
        chars.append(original[pos:])
        tail = range(pos, len(original))
        starts.extend(tail)
        ends.extend(i + 1 for i in tail)
        self.text = "".join(chars)
        self.starts = starts
        self.ends = ends

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that ``self.text[start:end]`` came from."""
        if self.text is self.original:  # offsets map to themselves
            return start, end
        return self.starts[start], self.ends[end - 1]


def _without_hex_ids(text: str) -> str:
    """``text`` with UUIDs and long hexadecimal ids blanked out (same length)."""
    if len(text) < 24:
        return text
    return _HEX_ID_RE.sub(lambda m: "#" * len(m.group()), text)


# --- finding candidates -----------------------------------------------------


def _card_shaped(sizes: list[int]) -> bool:
    """Whether chunks of these sizes (13 or more digits in all) are grouped the way card
    numbers are written. Every chunk holds a digit, and chunks of four with a last one of at
    most four reach 13 digits only as four chunks or more: neither needs a check of its own."""
    if len(sizes) == 1:
        return True
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(s == 4 for s in sizes[:-1]) and sizes[-1] <= 4


def _group_candidates(text: str, start: int, end: int, strict: bool) -> list[tuple[int, int]]:
    """Merged ``(start, end)`` offsets in ``text`` of the candidates in a digit group.

    ``text[start:end]`` is a digit group matched by ``_GROUP_RE``. With
    ``strict`` only card-shaped candidates count, else loosely grouped ones
    too. Overlapping candidates are merged, so every digit of every candidate
    ends up inside a returned span.
    """
    chunks = [(m.start(), m.end()) for m in _CHUNK_RE.finditer(text, start, end)]
    digits = "".join(text[s:e] for s, e in chunks)
    n = len(digits)
    # Prefix sums of digit values for windows whose last digit has an even
    # (resp. odd) index: Luhn doubles every second digit counting from the
    # right, so which digits are doubled depends only on the parity of the
    # last index. With these, the Luhn sum of any window costs O(1).
    values = [ord(ch) - 48 for ch in digits]
    doubled = [_DOUBLED[d] for d in values]
    # Odd indexes are doubled when the last index is even, even ones when it is odd.
    sum_last_even = [0, *accumulate(doubled[i] if i & 1 else values[i] for i in range(n))]
    sum_last_odd = [0, *accumulate(values[i] if i & 1 else doubled[i] for i in range(n))]

    # Offsets in ``digits`` of each chunk's start and end.
    bounds: list[tuple[int, int]] = []
    offset = 0
    for s, e in chunks:
        bounds.append((offset, offset + e - s))
        offset += e - s

    # The first chunk is the last four of a masked number if the mask is right before it (a
    # mask is no separator, so only the first chunk of a group can follow one).
    first = 1 if bounds[0][1] <= 4 and text[max(start - 12, 0) : start] == MASK else 0
    found: list[tuple[int, int]] = []  # (first chunk, last chunk), inclusive
    for a in range(first, len(bounds)):
        d_start = bounds[a][0]
        if digits[d_start : d_start + 2] not in CARD_PREFIXES:
            continue
        sizes: list[int] = []
        for b in range(a, len(bounds)):
            d_end = bounds[b][1]
            length = d_end - d_start
            if length > MAX_PAN_DIGITS:
                break
            if sizes and sizes[-1] < 3:
                break  # a short chunk only ends a candidate (so every other has 3 or more)
            sizes.append(bounds[b][1] - bounds[b][0])
            if length < MIN_PAN_DIGITS:
                continue
            if strict and not _card_shaped(sizes):
                break  # 13+ digits, not card-shaped: no longer run of these chunks is either
            # The last digit's index is d_end - 1: even exactly when d_end is odd.
            sums = sum_last_even if d_end & 1 else sum_last_odd
            if (sums[d_end] - sums[d_start]) % 10 == 0:
                found.append((a, b))

    merged: list[tuple[int, int]] = []
    for a, b in found:  # sorted by first chunk
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return [(chunks[a][0], chunks[b][1]) for a, b in merged]


def _candidates(text: str, strict: bool = False) -> Iterator[tuple[int, int, str]]:
    """``(start, end, last four digits)`` of every candidate in ``text``, in order: only
    card-shaped ones with ``strict``, else loosely grouped ones too.

    The offsets are those of the original ``text``.
    """
    normalized = _Normalized(text)
    if _GROUP_RE.search(normalized.text) is None:
        return
    checked = _without_hex_ids(normalized.text)
    for m in _GROUP_RE.finditer(checked):
        for s, e in _group_candidates(checked, m.start(), m.end(), strict):
            # Merged spans are disjoint, so this stays linear in the length of the text.
            last4 = "".join(_CHUNK_RE.findall(checked, s, e))[-4:]
            yield (*normalized.original_span(s, e), last4)


def _plainly_clear(text: str) -> bool:
    """Whether ``text`` cannot hold a candidate, decided without the full scan: ASCII text
    without percent-escapes (normalization leaves it as it is) with no digit group long enough. The
    common case of request values (ids, names, small numbers): what ``_candidates`` would
    conclude, without its set-up."""
    if not text.isascii():
        return False
    return "%" not in text and _GROUP_RE.search(text) is None


# Outside a JSON body's strings (one without escapes): a number with an exponent, which
# names an integer its text does not spell out (``4.2e15``).
_JSON_STRING_RE = re.compile(r'"[^"]*"?')
_EXPONENT_RE = re.compile(r"[0-9][eE]")


def body_plainly_clear(body: bytes) -> bool:
    """Whether no key or value of a request body (JSON or form-encoded) can hold a
    candidate, decided on the raw bytes without parsing them: ASCII with no escapes (no
    backslash, no ``%``) and no NUL byte (UTF-16 or UTF-32 JSON), so that every string
    appears in the body as it is; no digit group of ``MIN_PAN_DIGITS`` digits anywhere in it
    (a group inside a string, a key or an integer would be one in the body too); and no
    number with an exponent. Then neither :func:`find_pan_param` nor :func:`mask_pan_data`
    can find anything, and the request guard skips them: the common case of a large JSON
    body (a batch of usage events)."""
    # A NUL byte: JSON in UTF-16 or UTF-32 (``json.loads`` detects those encodings and reads
    # them), whose digits are NUL-separated in the raw bytes. Only UTF-8 is read here.
    if not body.isascii() or b"\\" in body or b"%" in body or b"\x00" in body:
        return False
    text = body.decode()  # ASCII, checked above
    if _GROUP_RE.search(text) is not None:
        return False
    return _EXPONENT_RE.search(_JSON_STRING_RE.sub("", text)) is None


def looks_like_pan(value: str) -> bool:
    """Return True if ``value`` holds a card-shaped card number: the guard refuses it.

    The card number may be embedded in longer text (``"my card is
    4242424242424242"``) or glued to letters. See the module docstring for the
    exact rules.
    """
    if not isinstance(value, str) or _plainly_clear(value):
        return False
    return next(_candidates(value, strict=True), None) is not None


def mask_pans(text: str) -> str:
    """Replace every PAN in ``text`` with ``************`` followed by its last four digits.

    Masks what :func:`looks_like_pan` reports and also loosely grouped
    candidates (see the module docstring). Separators and anything dropped by
    the normalization inside the number go with it and the mask has a fixed
    length, so nothing but the last four digits survives. Text around the
    number, including numbers next to it that are not part of it, is kept.
    Idempotent.
    """
    if _plainly_clear(text):
        return text
    out: list[str] = []
    pos = 0
    for s, e, last4 in _candidates(text):
        if s < pos:  # two candidates from one original character (an escape run)
            continue
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
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    if isinstance(value, (int, float, Decimal)):
        # The bounds first, compared exactly and cheaply whatever the type: int() of
        # Decimal("1e999999999") would build a billion-digit integer, and str() of a huge int
        # is slow (and may raise).
        if not -_PAN_END < value < _PAN_END:
            return None
        number = abs(int(value))
        return str(number) if number >= _PAN_START else None
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
    if isinstance(obj, str | int):  # JSON's scalars: before the slower ABC check
        return None
    if isinstance(obj, dict) or isinstance(obj, Mapping):  # a dict: the fast check
        return _mapping_children(obj)
    if isinstance(obj, list | tuple):
        return enumerate(obj)
    return None


def _mapping_children(obj: Mapping[object, object]) -> Iterator[tuple[object, object]]:
    for key, value in obj.items():
        if _scalar_looks_like_pan(key):
            # Report the key itself; mask it so the path is safe to echo back.
            yield mask_pans(str(_scalar_text(key))), key  # a str: the key looks like a PAN
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


def mask_pan_data(obj: object) -> object:
    """Return JSON-like ``obj`` with :func:`mask_pans` applied to every string and key.

    For request data that passed :func:`find_pan_param`: what is left to mask
    are loosely grouped numbers in text, which are stored masked rather than
    refused. Numbers are left alone (a number is one unbroken run of digits:
    the guard has refused it already if it could be a card number). Returns
    ``obj`` itself, not a copy, when there is nothing to mask.
    """
    if isinstance(obj, str):
        return mask_pans(obj)
    if isinstance(obj, int):  # JSON's numbers: before the slower ABC check
        return obj
    if isinstance(obj, dict) or isinstance(obj, Mapping):  # a dict: the fast check
        items = [(mask_pan_data(k), mask_pan_data(v)) for k, v in obj.items()]
        if all(map(operator.is_, chain.from_iterable(items), chain.from_iterable(obj.items()))):
            return obj
        return dict(items)
    if isinstance(obj, list | tuple):
        values = [mask_pan_data(v) for v in obj]
        if all(map(operator.is_, values, obj)):
            return obj
        return values if isinstance(obj, list) else tuple(values)
    return obj
