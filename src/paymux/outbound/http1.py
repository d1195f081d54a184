"""A lean HTTP/1.1 client for webhook deliveries: small signed POSTs, many at once, to the
merchants' endpoints.

Why not httpx here: its per-request work (anyio streams, the connection pool's bookkeeping,
httpcore retrying a failed ``import sniffio`` on every request) cost about 20 ms of CPU per
delivery in bench/outbound.py, and a delivery needs none of what it buys (no redirects, no
cookies, no HTTP/2, no proxies). This client writes one request and reads one response on
an asyncio stream, and keeps connections alive per (scheme, host, port, mode).

SSRF (``ssrf``): a connection is opened only to an address ``resolve_allowed`` checked at
that moment; a kept-alive connection goes on to the address checked when it was opened,
and is dropped after ``idle_seconds`` unused, so a host is resolved (and checked) again at
least that often. The response head is limited to MAX_HEAD_BYTES and the body to what the
caller asks; a connection whose response was not read to its end is closed, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from paymux.outbound.ssrf import Blocked, resolve_allowed

__all__ = [
    "MAX_HEAD_BYTES",
    "ConnectTimeout",
    "ConnectionPool",
    "ProtocolError",
    "Response",
    "parse_head",
]

MAX_HEAD_BYTES = 16 * 1024
_SAFE_PATH = "/%:@!$&'()*+,;=-._~?"


class ProtocolError(Exception):
    """The endpoint answered something that is not an HTTP/1.x response."""


class ConnectTimeout(Exception):
    """No connection (name resolved, TCP and TLS handshakes done) within the connect timeout.
    Not an OSError (nor a TimeoutError): a caller tells it from the total timeout."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes  # at most the limit asked for


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used_at: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken socket must not raise
            self.writer.close()


def parse_head(head: bytes) -> tuple[int, bool, dict[bytes, bytes]]:
    """A response head (status line and headers, up to the blank line): the status code,
    whether the connection may be kept alive (HTTP/1.1 unless ``Connection: close``;
    HTTP/1.0 only with ``Connection: keep-alive``) and the headers (names lower-cased; a
    repeated header's values joined with commas). Pure, so it is tested on its own."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError("not an HTTP/1.x status line")
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise ProtocolError("status code out of range")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = headers[key] + b", " + value if key in headers else value
    connection = {t.strip() for t in headers.get(b"connection", b"").lower().split(b",")}
    if parts[0] == b"HTTP/1.0":
        keep = b"keep-alive" in connection
    else:
        keep = b"close" not in connection
    return status, keep, headers


def request_target(path: str, query: str) -> str:
    """The request line's target: the URL's path (``/`` if empty) and query, with any
    character that may not appear there (spaces, controls, non-ASCII) percent-encoded."""
    target = quote(path or "/", safe=_SAFE_PATH)
    return target + ("?" + quote(query, safe=_SAFE_PATH) if query else "")


_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,18}")


def _drained(reader: asyncio.StreamReader) -> bool:
    """Whether nothing the server sent is still waiting to be read. (StreamReader keeps what
    it received and nobody read in ``_buffer``; it has no public way to ask.)"""
    return not getattr(reader, "_buffer", b"")


class ConnectionPool:
    """Kept-alive connections, per (scheme, host, port, livemode)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        allow_private: bool,
        idle_seconds: float = 15.0,
        max_idle_per_host: int = 64,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.allow_private = allow_private
        self.idle_seconds = idle_seconds
        self.max_idle_per_host = max_idle_per_host
        self._tls = tls
        self._idle: dict[tuple[str, str, int, bool], list[_Conn]] = {}
        self.opened = 0  # connections opened (tests and the bench look)

    @property
    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def post(
        self,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        livemode: bool,
        max_body: int,
    ) -> Response:
        """POST ``body``; raises ``ssrf.Blocked``, ConnectTimeout, OSError, ProtocolError (the
        caller sets the total time limit). A kept-alive connection the endpoint closed in the
        meantime is replaced once, before any answer came (the request may then arrive twice:
        deliveries are at least once, the event id tells)."""
        key = (scheme, host, port, livemode)
        host_header = host if ":" not in host else f"[{host}]"
        if port != (443 if scheme == "https" else 80):
            host_header += f":{port}"
        lines = [f"POST {target} HTTP/1.1", f"host: {host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"content-length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(key, conn, raw, max_body)
            except _Stale:
                pass
        conn = await self._open(key)
        try:
            return await self._exchange(key, conn, raw, max_body)
        except _Stale:
            raise ConnectionResetError("the endpoint closed the connection") from None

    def _take(self, key: tuple[str, str, int, bool]) -> _Conn | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if (
                now - conn.used_at < self.idle_seconds
                and not conn.reader.at_eof()
                and _drained(conn.reader)
            ):
                return conn
            conn.close()
        return None

    async def _open(self, key: tuple[str, str, int, bool]) -> _Conn:
        scheme, host, port, livemode = key
        if livemode and scheme != "https":  # never a live endpoint in the clear
            raise Blocked("A live endpoint's URL must use https.")
        limit = asyncio.timeout(self.connect_timeout)
        try:
            async with limit:
                ip = await resolve_allowed(
                    host, port, livemode=livemode, allow_private=self.allow_private
                )
                if scheme == "https":
                    reader, writer = await asyncio.open_connection(
                        ip, port, ssl=self.tls, server_hostname=host, limit=MAX_HEAD_BYTES
                    )
                else:
                    reader, writer = await asyncio.open_connection(ip, port, limit=MAX_HEAD_BYTES)
        except TimeoutError:
            if limit.expired():  # this limit ran out (not a TimeoutError from the socket)
                raise ConnectTimeout(f"no connection within {self.connect_timeout:g} s") from None
            raise
        self.opened += 1
        return _Conn(reader, writer)

    async def _exchange(
        self, key: tuple[str, str, int, bool], conn: _Conn, raw: bytes, max_body: int
    ) -> Response:
        reusable = False
        try:
            try:
                conn.writer.write(raw)
                await conn.writer.drain()
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise ProtocolError("the response head was cut short") from None
                raise _Stale from None
            except ConnectionError:
                raise _Stale from None
            status, keep, headers = parse_head(head[:-4])
            while 100 <= status < 200:  # interim answers (100 Continue): read on
                head = await conn.reader.readuntil(b"\r\n\r\n")
                status, keep, headers = parse_head(head[:-4])
            body, complete = await _read_body(conn.reader, status, headers, max_body)
            # Bytes past the answer (a server that sent more than it announced) would be
            # read as the next request's answer: such a connection is not kept.
            reusable = keep and complete and _drained(conn.reader)
            return Response(status, body)
        except asyncio.LimitOverrunError:
            raise ProtocolError("a response line is too large") from None
        except asyncio.IncompleteReadError:
            raise ProtocolError("the response was cut short") from None
        finally:
            if reusable:
                conn.used_at = time.monotonic()
                idle = self._idle.setdefault(key, [])
                if len(idle) < self.max_idle_per_host:
                    idle.append(conn)
                else:
                    conn.close()
            else:
                conn.close()

    def sweep(self) -> None:
        """Close the connections left unused longer than ``idle_seconds``."""
        now = time.monotonic()
        for key, idle in list(self._idle.items()):
            fresh = []
            for conn in idle:
                if now - conn.used_at < self.idle_seconds and not conn.reader.at_eof():
                    fresh.append(conn)
                else:
                    conn.close()
            if fresh:
                self._idle[key] = fresh
            else:
                del self._idle[key]

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


class _Stale(Exception):
    """A kept-alive connection turned out closed before any answer."""


async def _read_body(
    reader: asyncio.StreamReader, status: int, headers: dict[bytes, bytes], max_body: int
) -> tuple[bytes, bool]:
    """The response body, at most ``max_body`` bytes, and whether it was read to its end
    (only then may the connection be used again)."""
    if status in (204, 304):
        return b"", True
    encoding = headers.get(b"transfer-encoding", b"").lower()
    if encoding:
        if encoding.rsplit(b",", 1)[-1].strip() != b"chunked":
            return await _read_to_eof(reader, max_body)
        received = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):  # int() would take "-1", "+a", "0x10", "1_0"
                raise ProtocolError("bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(received), True
            if len(received) + size > max_body:
                received += await reader.readexactly(max_body - len(received))
                return bytes(received), False
            received += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise ProtocolError("a chunk is longer than its size")
    length_text = headers.get(b"content-length")
    if length_text is None:
        return await _read_to_eof(reader, max_body)
    if not _DIGITS.fullmatch(length_text.strip()):  # int() would take "+5", "1_0", "-1"
        raise ProtocolError("bad content-length")
    length = int(length_text)
    if length > max_body:
        return await reader.readexactly(max_body), False
    return await reader.readexactly(length), True


async def _read_to_eof(reader: asyncio.StreamReader, max_body: int) -> tuple[bytes, bool]:
    received = bytearray()
    while len(received) < max_body:
        chunk = await reader.read(max_body - len(received))
        if not chunk:
            break
        received += chunk
    return bytes(received), False
