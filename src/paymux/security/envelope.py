"""Envelope encryption of secrets at rest (gateway credentials, webhook secrets), with key rotation.

Keys
----
Key-encryption keys (KEKs) come from ``PAYMUX_ENCRYPTION_KEYS``: a comma-separated list of
``<key id>:<base64 of 32 random bytes>`` entries (standard or urlsafe base64, padding
optional; whitespace around entries is ignored). The FIRST entry is the *primary* key, which
seals; every listed key opens. A key id is 1 to 32 characters among ``A-Z a-z 0-9 _ -``
(no ``.``, ``:`` or ``,``, which delimit). :func:`generate_key_entry` makes an entry.

Errors never carry key material or plaintext: a bad entry is named by its position and (when
it is well formed) its key id.

Token format (version ``pmx1``)
-------------------------------
:meth:`Keyring.seal` makes a fresh random 32-byte data key (DEK) per secret and returns one
ASCII string of four ``.``-separated parts::

    pmx1.<kek id>.<wrapped DEK>.<ciphertext>

* ``wrapped DEK``: base64url without padding of ``nonce (12) || AES-256-GCM(KEK, DEK)``,
  always 60 bytes (12 + 32 + 16-byte tag); associated data
  ``b"pmx1\\x00dek\\x00" + kek_id + b"\\x00" + context`` (UTF-8), so the wrap is bound to the
  key id and the context;
* ``ciphertext``: base64url without padding of ``nonce (12) || AES-256-GCM(DEK, plaintext)``
  (12 + len(plaintext) + 16 bytes); associated data ``b"pmx1\\x00data\\x00" + context``. It does
  not name the KEK, so rotation re-wraps the DEK and leaves this part byte for byte as it was.

Both nonces are random (``os.urandom``). Base64 must be canonical (the encoder's exact output),
so no two strings decode to the same token. ``context`` names where the secret lives (for
example ``"connection:conn_123:credentials"``): a token copied to another row or field does
not open.

Rotation
--------
Put the new key first, keep the old one after it; :meth:`Keyring.needs_rewrap` tells which
tokens were wrapped by a key other than the primary, :meth:`Keyring.rewrap` re-wraps their DEK
with the primary (after checking that the whole token opens); then drop the old key.

Exceptions
----------
``ValueError``
  * :class:`EnvelopeError`: a token does not open (unknown key id, malformed token, other
    context, altered token), or no key is configured.

A bad ``PAYMUX_ENCRYPTION_KEYS`` or an invalid key id or context raises a plain ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENV_VAR",
    "KEY_BYTES",
    "TOKEN_VERSION",
    "EnvelopeError",
    "Keyring",
    "generate_key_entry",
]

ENV_VAR: Final = "PAYMUX_ENCRYPTION_KEYS"
TOKEN_VERSION: Final = "pmx1"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
WRAPPED_DEK_BYTES: Final = NONCE_BYTES + KEY_BYTES + TAG_BYTES  # 60
MIN_CIPHERTEXT_BYTES: Final = NONCE_BYTES + TAG_BYTES  # 28: an empty plaintext

_KEY_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_B64_KEY: Final = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_NO_KEY: Final = f"no encryption key is configured: set {ENV_VAR}"


class EnvelopeError(ValueError):
    """A token does not open, or there is no key to seal with. Never holds key or plaintext."""


def _valid_key_id(key_id: str) -> bool:
    return _KEY_ID.fullmatch(key_id) is not None


def _check_key_id(key_id: str) -> None:
    if not _valid_key_id(key_id):
        # Not echoed: a malformed id may be a key pasted in the wrong place.
        raise ValueError("a key id is 1 to 32 characters among A-Z a-z 0-9 _ -")


def _check_context(context: str) -> bytes:
    if not context:
        raise ValueError("context must not be empty: name where the secret is stored")
    return context.encode()


def _wrap_aad(key_id: str, context: str) -> bytes:
    return b"pmx1\x00dek\x00" + key_id.encode() + b"\x00" + _check_context(context)


def _data_aad(context: str) -> bytes:
    return b"pmx1\x00data\x00" + _check_context(context)


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(part: str) -> bytes | None:
    """Canonical unpadded base64url, or None."""
    if _B64URL.fullmatch(part) is None or len(part) % 4 == 1:
        return None
    # The decoder ignores padding past the last group; canonicity is checked just below.
    raw = base64.urlsafe_b64decode(part + "==")
    return raw if _b64url_encode(raw) == part else None


def _decode_key(text: str) -> bytes | None:
    """Standard or urlsafe base64, padding optional, or None."""
    if _B64_KEY.fullmatch(text) is None:
        return None
    try:
        # Only the alphabet and trailing "=" get here; the decoder ignores padding past the
        # last group, and rejects a last group of one character.
        return base64.b64decode(text.replace("-", "+").replace("_", "/") + "==")
    except binascii.Error:
        return None


def generate_key_entry(key_id: str) -> str:
    """A new ``<key id>:<urlsafe base64 of 32 random bytes>`` entry for the keys variable."""
    _check_key_id(key_id)
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()}"


class _Token:
    __slots__ = ("ciphertext", "ciphertext_part", "key_id", "wrapped")

    def __init__(self, key_id: str, wrapped: bytes, ciphertext: bytes, ciphertext_part: str):
        self.key_id = key_id
        self.wrapped = wrapped
        self.ciphertext = ciphertext
        self.ciphertext_part = ciphertext_part


def _malformed(reason: str) -> EnvelopeError:
    return EnvelopeError(
        f"malformed envelope token ({reason}); expected "
        f"{TOKEN_VERSION}.<key id>.<wrapped key>.<ciphertext>"
    )


def _parse_token(token: str) -> _Token:
    parts = token.split(".")
    if len(parts) != 4:
        raise _malformed(f"{len(parts)} parts instead of 4")
    version, key_id, wrapped_part, ciphertext_part = parts
    if version != TOKEN_VERSION:
        raise _malformed(f"not a {TOKEN_VERSION} token")
    if not _valid_key_id(key_id):
        raise _malformed("invalid key id")
    wrapped = _b64url_decode(wrapped_part)
    if wrapped is None:
        raise _malformed("the wrapped key is not canonical base64url")
    if len(wrapped) != WRAPPED_DEK_BYTES:
        raise _malformed(f"the wrapped key is {len(wrapped)} bytes, not {WRAPPED_DEK_BYTES}")
    ciphertext = _b64url_decode(ciphertext_part)
    if ciphertext is None:
        raise _malformed("the ciphertext is not canonical base64url")
    if len(ciphertext) < MIN_CIPHERTEXT_BYTES:
        raise _malformed(f"the ciphertext is shorter than {MIN_CIPHERTEXT_BYTES} bytes")
    return _Token(key_id, wrapped, ciphertext, ciphertext_part)


class Keyring:
    """The KEKs, primary first. ``repr`` shows key ids only."""

    __slots__ = ("_aeads", "_key_ids")

    def __init__(self, keys: Iterable[tuple[str, bytes]] = ()) -> None:
        aeads: dict[str, AESGCM] = {}
        for position, (key_id, key) in enumerate(keys, start=1):
            _check_key_id(key_id)
            if key_id in aeads:
                raise ValueError(f"key {position}: key id {key_id!r} is listed twice")
            if len(key) != KEY_BYTES:
                raise ValueError(
                    f"key {position} ({key_id!r}) is {len(key)} bytes, not {KEY_BYTES}"
                )
            aeads[key_id] = AESGCM(bytes(key))
        self._aeads: Final = aeads
        self._key_ids: Final = tuple(aeads)

    @classmethod
    def empty(cls) -> Keyring:
        return cls(())

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Parse ``PAYMUX_ENCRYPTION_KEYS``; blank text gives an empty keyring.

        Raises ``ValueError`` naming the entry by position (1-based) and key id, never the key.
        """
        if not text.strip():
            return cls.empty()
        keys: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for position, raw_entry in enumerate(text.split(","), start=1):
            entry = raw_entry.strip()
            where = f"{ENV_VAR} entry {position}"
            if not entry:
                raise ValueError(f"{where} is empty")
            key_id, colon, key_text = entry.partition(":")
            if not colon:
                raise ValueError(f"{where} has no ':' (expected <key id>:<base64 key>)")
            key_id = key_id.strip()
            if not key_id:
                raise ValueError(f"{where} has an empty key id")
            if not _valid_key_id(key_id):
                raise ValueError(
                    f"{where} has an invalid key id (1 to 32 characters among A-Z a-z 0-9 _ -)"
                )
            where = f"{where} (key id {key_id!r})"
            if key_id in seen:
                raise ValueError(f"{where}: the key id is listed twice")
            seen.add(key_id)
            key = _decode_key(key_text.strip())
            if key is None:
                raise ValueError(f"{where}: the key is not valid base64")
            if len(key) != KEY_BYTES:
                raise ValueError(f"{where}: the key is {len(key)} bytes, not {KEY_BYTES}")
            keys.append((key_id, key))
        return cls(keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Keyring:
        return cls.parse(environ.get(ENV_VAR, ""))

    @property
    def configured(self) -> bool:
        return bool(self._key_ids)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Primary first."""
        return self._key_ids

    @property
    def primary_key_id(self) -> str | None:
        return self._key_ids[0] if self._key_ids else None

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self._key_ids!r})"

    def _primary(self) -> tuple[str, AESGCM]:
        if not self._key_ids:
            raise EnvelopeError(_NO_KEY)
        key_id = self._key_ids[0]
        return key_id, self._aeads[key_id]

    def _wrap(self, dek: bytes, context: str) -> tuple[str, str]:
        key_id, kek = self._primary()
        nonce = os.urandom(NONCE_BYTES)
        wrapped = nonce + kek.encrypt(nonce, dek, _wrap_aad(key_id, context))
        return key_id, _b64url_encode(wrapped)

    def _unwrap(self, token: _Token, context: str) -> bytes:
        kek = self._aeads.get(token.key_id)
        if kek is None:
            raise EnvelopeError(f"key {token.key_id} is not in {ENV_VAR}")
        nonce, body = token.wrapped[:NONCE_BYTES], token.wrapped[NONCE_BYTES:]
        try:
            return kek.decrypt(nonce, body, _wrap_aad(token.key_id, context))
        except InvalidTag:
            raise EnvelopeError(
                f"the data key does not open with key {token.key_id}: the token was sealed "
                "for another context, or it was altered"
            ) from None

    def _decrypt(self, token: _Token, dek: bytes, context: str) -> bytes:
        nonce, body = token.ciphertext[:NONCE_BYTES], token.ciphertext[NONCE_BYTES:]
        try:
            return AESGCM(dek).decrypt(nonce, body, _data_aad(context))
        except InvalidTag:
            raise EnvelopeError(
                "the ciphertext fails authentication: the token was altered, "
                "or sealed for another context"
            ) from None

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Encrypt under a fresh data key wrapped by the primary key; see the token format."""
        aad = _data_aad(context)
        self._primary()  # no key: fail before doing anything
        dek = os.urandom(KEY_BYTES)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = nonce + AESGCM(dek).encrypt(nonce, plaintext, aad)
        key_id, wrapped_part = self._wrap(dek, context)
        return f"{TOKEN_VERSION}.{key_id}.{wrapped_part}.{_b64url_encode(ciphertext)}"

    def open(self, token: str, *, context: str) -> bytes:
        """The plaintext of a token sealed for ``context``, or :class:`EnvelopeError`."""
        parsed = _parse_token(token)
        return self._decrypt(parsed, self._unwrap(parsed, context), context)

    def key_id_of(self, token: str) -> str:
        """The id of the key that wraps the token's data key (the token is checked for form)."""
        return _parse_token(token).key_id

    def needs_rewrap(self, token: str) -> bool:
        """Whether the token is wrapped by a key other than the primary."""
        primary_id, _ = self._primary()
        return _parse_token(token).key_id != primary_id

    def rewrap(self, token: str, *, context: str) -> str:
        """The token with its data key wrapped by the primary key; the ciphertext is unchanged.

        The whole token must open first. A token already wrapped by the primary is returned as is.
        """
        parsed = _parse_token(token)
        primary_id, _ = self._primary()
        dek = self._unwrap(parsed, context)
        self._decrypt(parsed, dek, context)
        if parsed.key_id == primary_id:
            return token
        key_id, wrapped_part = self._wrap(dek, context)
        return f"{TOKEN_VERSION}.{key_id}.{wrapped_part}.{parsed.ciphertext_part}"
