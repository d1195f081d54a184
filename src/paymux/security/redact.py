"""Redaction of card data and credentials from log output.

:func:`redact` masks, in free text:

* card numbers (see :mod:`paymux.security.pan`): ``************4242``;
* card security codes written as key/value pairs: ``cvc=123``,
  ``"cvc": "123"``, ``card[cvc]=123``, ``card%5Bcvc%5D=123`` and the same for
  ``cvc2``, ``cvv``, ``cvv2``, ``cvn``, ``csc`` and ``security_code``
  (``cvc_check`` and similar are left alone);
* API keys: ``sk_live_``, ``sk_test_``, ``pk_live_``, ``pk_test_``, ``rk_``
  (Stripe), ``whsec_`` (Stripe webhook secrets), ``EAAA...`` (Square access
  tokens) and Stripe client secrets (``pi_..._secret_...``); the prefix is
  kept: ``sk_test_***``;
* ``Authorization`` and ``Proxy-Authorization`` values in header, dict, repr
  and ASGI-scope form (``(b'authorization', b'Bearer abc')``), keeping the
  scheme: ``Authorization: Bearer ***``;
* ``Bearer <token>`` anywhere;
* ``password``, ``client_secret``, ``api_key``, ``access_token``,
  ``refresh_token``, ``admin_key``, ``secret_key`` and ``webhook_secret`` key/value pairs;
* the values given to :func:`register_secret` (the admin key, whatever its form).

:class:`RedactingFilter` applies this to every part of a log record that a
formatter may print. Attach it to *handlers* (not loggers) so it sees records
propagated from every logger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from paymux.security.pan import mask_pans

__all__ = ["RedactingFilter", "redact", "redact_data", "register_secret"]

REDACTED: Final = "***"

# A key must not be glued to a preceding letter or digit ("preauthorization",
# "task_test_"), except for the URL-encoded "[" of "card%5Bcvc%5D".
_KEY_START = r"(?:(?<![A-Za-z0-9])|(?<=%5B))"
# Between key and value: an optional closing quote (possibly JSON-escaped) or
# bracket, ':' or '=', then an optional opening quote (possibly bytes).
_KEY_END = r"""(?:\\?["']|\]|%5D)?\s{0,8}[:=]\s{0,8}(?:b?\\?["'])?"""
# The same for the repr of a pair, as in ASGI headers: (b'authorization', b'...').
# A comma only separates key and value right after "(" or "[", so that a
# sentence ending in a key word cannot mask the next JSON key.
_PAIR_START = r"""(?:(?<=[(\[]b["'])|(?<=[(\[]["']))"""
_PAIR_END = r"""["']\s{0,8},\s{0,8}(?:b?["'])?"""
# A value runs up to whitespace, a quote, a backslash or a delimiter.
_VALUE = r"""[^\s"'\\&,;)\]}]+"""
_NOT_LITERAL = r"(?!(?:null|none|true|false)(?![A-Za-z0-9_]))"

_CVC_KEYS = r"(?:cvc2?|cvv2?|cvn2?|csc|security[_-]?code)"
_SECRET_KEYS = (
    r"(?:password|passwd|client[_-]?secret|api[_-]?key|access[_-]?token|refresh[_-]?token"
    r"|admin[_-]?key|secret[_-]?key|webhook[_-]?secret)"
)
_AUTH_KEYS = r"authorization"
_AUTH_SCHEMES = r"(?:bearer|basic|token|digest|apikey|bot)"


def _key(names: str) -> str:
    """A pattern for a key named ``names`` and what separates it from its value."""
    return rf"(?:{_KEY_START}{names}{_KEY_END}|{_PAIR_START}{names}{_PAIR_END})"


_KEY_VALUE_RE = re.compile(
    rf"(?P<key>{_key(f'(?:{_CVC_KEYS}|{_SECRET_KEYS})')}){_NOT_LITERAL}{_VALUE}",
    re.IGNORECASE,
)
_AUTH_RE = re.compile(
    rf"(?P<key>{_key(_AUTH_KEYS)}(?:{_AUTH_SCHEMES}[ \t]+)?){_NOT_LITERAL}{_VALUE}",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(?P<key>(?<![A-Za-z0-9])bearer[ \t]+)[A-Za-z0-9\-._~+/]+=*", re.I)
_PREFIXED_SECRET_RE = re.compile(
    r"(?P<key>(?<![A-Za-z0-9])(?:"
    r"(?:sk|pk)_(?:live|test)_"
    r"|rk_(?:live_|test_)?+"
    r"|whsec_"
    r"|(?:pi|seti|cs_live|cs_test)_[A-Za-z0-9]+_secret_"
    r"))[A-Za-z0-9+/=_-]+"
    r"|(?P<square>(?<![A-Za-z0-9])EAAA)[A-Za-z0-9_-]{20,}"
)

# Cheap pre-checks on the lowercased text: a pattern only runs if the text
# contains a word it needs. Most log lines contain none.
_KEY_VALUE_TRIGGER_RE = re.compile(
    r"cv[cvn]|csc|security|passw|secret|api[_-]?key|admin[_-]?key|token"
)

# Mapping keys (and extra attribute names) whose values are masked whatever they are.
_SENSITIVE_KEY_RE = re.compile(
    rf"{_KEY_START}(?:{_CVC_KEYS}|{_SECRET_KEYS})(?:\]|%5D)?$", re.IGNORECASE
)
_AUTH_KEY_RE = re.compile(rf"{_KEY_START}{_AUTH_KEYS}$", re.IGNORECASE)
_AUTH_VALUE_RE = re.compile(rf"(?P<key>{_AUTH_SCHEMES}[ \t]+)?\S.*", re.IGNORECASE | re.DOTALL)

_MAX_DEPTH = 12
_NOT_SENSITIVE: Final = object()
# Integers with 13 to 19 digits; only these can be a PAN. ``in range`` is O(1) for ints.
_PAN_SIZED_INTS: Final = range(10**12, 10**19)
# Bytes are decoded as latin-1: every byte maps to one character and back.
_BYTES_ENCODING: Final = "latin-1"


def _keep_key(m: re.Match[str]) -> str:
    return m.group("key") + REDACTED


def _prefixed_secret(m: re.Match[str]) -> str:
    return (m.group("key") or m.group("square")) + REDACTED


# Secrets whose value is known but whose form is not (the admin key): masked wherever they
# appear. Filled by register_secret() at start-up.
_KNOWN_SECRETS: set[str] = set()
_MIN_KNOWN_SECRET = 8


def register_secret(value: str) -> None:
    """Mask ``value`` itself wherever it appears in redacted text (values under 8 characters
    are ignored: masking them would garble ordinary text)."""
    if len(value) >= _MIN_KNOWN_SECRET:
        _KNOWN_SECRETS.add(value)


def redact(text: str) -> str:
    """Return ``text`` with card numbers and credentials masked. Idempotent."""
    for secret in _KNOWN_SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    lowered = text.lower()
    # Credentials first: a token may contain digits that PAN masking would
    # otherwise turn into a mask in the middle of the token. Masking only
    # removes text, so a pattern cannot need a keyword the original lacked.
    if "authorization" in lowered:
        text = _AUTH_RE.sub(_keep_key, text)
    if "bearer" in lowered:
        text = _BEARER_RE.sub(_keep_key, text)
    if "k_" in lowered or "whsec_" in lowered or "_secret_" in lowered or "EAAA" in text:
        text = _PREFIXED_SECRET_RE.sub(_prefixed_secret, text)
    if _KEY_VALUE_TRIGGER_RE.search(lowered) is not None:
        text = _KEY_VALUE_RE.sub(_keep_key, text)
    return mask_pans(text)


def _key_name(key: object) -> str | None:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode(_BYTES_ENCODING)
    return None


def _redact_sensitive(name: str, value: object) -> object:
    """Mask ``value`` stored under the key ``name``, if that key names a secret."""
    if value is None or isinstance(value, bool):
        return value
    if _SENSITIVE_KEY_RE.search(name):
        return REDACTED
    if _AUTH_KEY_RE.search(name):
        text = _key_name(value)
        if text is None:
            return REDACTED
        m = _AUTH_VALUE_RE.match(text)
        masked = (m.group("key") or "") + REDACTED if m else REDACTED
        return masked.encode(_BYTES_ENCODING) if isinstance(value, bytes) else masked
    return _NOT_SENSITIVE


def redact_data(obj: object, _depth: int = 0) -> object:
    """Return a copy of JSON-like ``obj`` with card data and credentials masked.

    Strings (and bytes) go through :func:`redact`; numbers that look like a PAN
    become masked strings; values stored under a secret-looking key
    (``cvc``, ``password``, ``authorization``, ...) are masked whatever their
    type, in mappings and in ``(key, value)`` pairs such as ASGI headers.
    Other objects are returned unchanged. Nothing deeper than a fixed depth is
    copied: deeper containers are replaced with a placeholder.
    """
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, bytes):
        return redact(obj.decode(_BYTES_ENCODING)).encode(_BYTES_ENCODING)
    if isinstance(obj, int) and abs(obj) not in _PAN_SIZED_INTS:
        # Too short or too long to be a PAN (bools land here); str() of huge ints is slow.
        return obj
    if isinstance(obj, int | float | Decimal):
        # Use the lenient masking rule, as the final pass over a JSON line does;
        # a number it would mask must become a string or the JSON breaks.
        text = str(obj)
        masked_text = mask_pans(text)
        return obj if masked_text == text else masked_text
    if _depth >= _MAX_DEPTH and isinstance(obj, Mapping | list | tuple):
        return "[nested too deep]"
    if isinstance(obj, Mapping):
        out: dict[object, object] = {}
        for key, value in obj.items():
            name = _key_name(key)
            masked = _redact_sensitive(name, value) if name is not None else _NOT_SENSITIVE
            out[redact_data(key, _depth + 1)] = (
                redact_data(value, _depth + 1) if masked is _NOT_SENSITIVE else masked
            )
        return out
    if type(obj) is tuple and len(obj) == 2:
        name = _key_name(obj[0])
        if name is not None:
            masked = _redact_sensitive(name, obj[1])
            if masked is not _NOT_SENSITIVE:
                return (obj[0], masked)
    if type(obj) is tuple or type(obj) is list:
        items = [redact_data(item, _depth + 1) for item in obj]
        return items if type(obj) is list else tuple(items)
    return obj


# Attributes every LogRecord has; everything else was added through ``extra=``.
_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}

_EXC_FORMATTER = logging.Formatter()


def _format_args_safely(record: logging.LogRecord) -> str:
    """The record's message when ``msg % args`` fails, with everything redacted."""
    try:
        msg = str(record.msg)
    except Exception:
        msg = "<unprintable log message>"
    try:
        args = repr(record.args)
    except Exception:
        args = "<unprintable arguments>"
    return f"{msg} [could not format arguments: {args}]"


class RedactingFilter(logging.Filter):
    """A logging filter that masks card data and credentials in a record.

    It formats the message (``msg % args``), redacts it and stores it back in
    ``record.msg`` with ``record.args = None``; redacts ``extra`` attributes;
    and formats any exception into a redacted ``record.exc_text``, clearing
    ``record.exc_info`` so no formatter prints the raw exception again.

    It never drops a record and never raises. If redaction fails, the message
    is replaced with a placeholder rather than let through unredacted.
    Running it twice over a record is harmless.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact_record(record)
        except Exception as exc:
            # Fail closed: print nothing from the record that might be unredacted.
            record.msg = f"[log message withheld: redaction failed with {type(exc).__name__}]"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            for key in list(record.__dict__):
                if key not in _STANDARD_ATTRS:
                    record.__dict__[key] = REDACTED
        return True

    @staticmethod
    def _redact_record(record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            # A bad format string would make the handler print msg and args,
            # unredacted, to stderr. Print them redacted instead.
            message = _format_args_safely(record)
        record.msg = redact(message)
        record.args = None
        if "message" in record.__dict__:
            record.message = record.msg

        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)

        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                masked = _redact_sensitive(key, value)
                record.__dict__[key] = redact_data(value) if masked is _NOT_SENSITIVE else masked
