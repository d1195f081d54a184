"""The webhook client's HTTP/1.1 reading (paymux.outbound.http1), on bytes fed to a real
asyncio StreamReader: the status and keep-alive rule, chunked and sized bodies, the body cap
(a capped or close-delimited body makes the connection unusable again), bad answers."""

from __future__ import annotations

import asyncio
import contextlib

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


@pytest.mark.parametrize("length", [b"+5", b"1_0", b" ", b"5x", b"99999999999999999999"])
def test_a_content_length_int_would_read_leniently_is_a_protocol_error(length: bytes) -> None:
    with pytest.raises(ProtocolError):
        body(b"hello", {b"content-length": length}, 100)


@pytest.mark.parametrize("size", [b"-1", b"+a", b"0x10", b"1_0", b""])
def test_a_chunk_size_int_would_read_leniently_is_a_protocol_error(size: bytes) -> None:
    with pytest.raises(ProtocolError):
        body(size + b"\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
             {b"transfer-encoding": b"chunked"}, 100)


def test_a_chunk_longer_than_its_size_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        body(b"2\r\nabc\r\n0\r\n\r\n", {b"transfer-encoding": b"chunked"}, 100)


# -- the pool, against a real server on loopback ---------------------------------------------
def _serve_and_post(answers: list[bytes], posts: int) -> tuple[list[int], int, int]:
    """A loopback server that answers each request it reads with the next of ``answers``
    (raw bytes, written at once); ``posts`` POSTs through one ConnectionPool. Returns the
    statuses the pool read, the connections it opened, and the connections the server saw."""
    from paymux.outbound.http1 import ConnectionPool

    async def main() -> tuple[list[int], int, int]:
        queue = list(answers)
        accepted = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            try:
                while queue:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(dict(parse_head_lines(head)).get("content-length", "0"))
                    await reader.readexactly(length)
                    writer.write(queue.pop(0))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(connect_timeout=5, allow_private=True)
        statuses = []
        async with server:
            for _ in range(posts):
                async with asyncio.timeout(5):
                    answer = await pool.post(
                        "http", "127.0.0.1", port, "/hook", [], b"{}",
                        livemode=False, max_body=1024)
                statuses.append(answer.status)
                await asyncio.sleep(0.05)  # whatever else the server sent has arrived
            await pool.aclose()
            await asyncio.sleep(0.05)  # the server's side of each connection closes too
        return statuses, pool.opened, accepted

    return asyncio.run(main())


def parse_head_lines(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines if line)
    ]


def test_the_pool_keeps_a_connection_alive_between_deliveries() -> None:
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    assert _serve_and_post([ok, ok, ok], 3) == ([200, 200, 200], 1, 1)


def test_bytes_past_an_answer_are_never_read_as_the_next_deliverys_answer() -> None:
    """The endpoint answers the first delivery 500 and sends a whole 200 after it: the next
    delivery goes over a new connection and gets its own answer (500), not the stray 200."""
    stray = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
             b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    failed = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
    assert _serve_and_post([stray, failed], 2) == ([500, 500], 2, 2)
