"""The webhook client's HTTP/1.1 reading (paymux.outbound.http1), on bytes fed to a real
asyncio StreamReader: the status and keep-alive rule, chunked and sized bodies, the body cap
(a capped or close-delimited body makes the connection unusable again), bad answers."""

from __future__ import annotations

import asyncio

import pytest

from paymux.outbound.http1 import ProtocolError, _read_body, parse_head, request_target


def test_status_and_keep_alive() -> None:
    assert parse_head(b"HTTP/1.1 204 No Content")[:2] == (204, True)
    assert parse_head(b"HTTP/1.1 200 OK\r\nConnection: close")[:2] == (200, False)
    assert parse_head(b"HTTP/1.0 200 OK")[:2] == (200, False)
    assert parse_head(b"HTTP/1.0 410 Gone\r\nconnection: Keep-Alive")[:2] == (410, True)
    status, _, headers = parse_head(b"HTTP/1.1 500 x\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3")
    assert status == 500
    assert headers == {b"x-a": b"1, 2", b"content-length": b"3"}


@pytest.mark.parametrize(
    "head", [b"HTTP/2 200", b"SSH-2.0-OpenSSH", b"HTTP/1.1 abc", b"HTTP/1.1 200\r\nno colon"]
)
def test_not_http_1(head: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_head(head)


def test_request_target_encodes_what_a_request_line_cannot_carry() -> None:
    assert request_target("", "") == "/"
    assert request_target("/hooks/a b", "x=1&y=é") == "/hooks/a%20b?x=1&y=%C3%A9"
    assert request_target("/p%20q", "") == "/p%20q"


def body(
    raw: bytes, headers: dict[bytes, bytes], cap: int, status: int = 200
) -> tuple[bytes, bool]:
    async def main() -> tuple[bytes, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await _read_body(reader, status, headers, cap)

    return asyncio.run(main())


def test_sized_chunked_and_close_delimited_bodies() -> None:
    assert body(b"hello", {b"content-length": b"5"}, 100) == (b"hello", True)
    chunked = {b"transfer-encoding": b"chunked"}
    assert body(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n", chunked, 100) == (b"abcde", True)
    assert body(b"until close", {}, 100) == (b"until close", False)
    assert body(b"", {}, 100, status=204) == (b"", True)


def test_bodies_over_the_cap_are_cut_and_the_connection_not_reused() -> None:
    assert body(b"0123456789", {b"content-length": b"10"}, 4) == (b"0123", False)
    chunked = {b"transfer-encoding": b"chunked"}
    assert body(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", chunked, 4) == (b"abcd", False)
    assert body(b"0123456789", {}, 4) == (b"0123", False)


def test_bad_lengths_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        body(b"x", {b"content-length": b"-1"}, 10)
    with pytest.raises(ProtocolError):
        body(b"zz\r\n", {b"transfer-encoding": b"chunked"}, 10)
