"""A merchant's webhook endpoint on 127.0.0.1: a threaded HTTP server that records every
request (headers and raw body) and answers what the test scripts (``respond``)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver:
    """``respond(n)`` -> (status, body) for the n-th request (0-based); 200 by default.
    ``delay`` seconds are waited before answering (a slow endpoint); with ``hold`` set, each
    answer waits until ``release()`` (a stuck endpoint)."""

    def __init__(
        self,
        respond: Callable[[int], tuple[int, str]] | None = None,
        delay: float = 0.0,
        path: str = "/hooks",
        hold: bool = False,
    ) -> None:
        self.respond = respond or (lambda n: (200, "ok"))
        self.delay = delay
        self.received: list[Received] = []
        self.answered: list[Received] = []  # the requests answered (no longer held)
        self.open_now = 0  # requests being answered now
        self.most_open = 0  # the most answered at once
        self._open = threading.Event()
        if not hold:
            self._open.set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.open_now += 1
                    receiver.most_open = max(receiver.most_open, receiver.open_now)
                    n = len(receiver.received)
                    status, text = receiver.respond(n)
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, status)
                    )
                if receiver.delay:
                    time.sleep(receiver.delay)
                receiver._open.wait(timeout=60)
                with receiver._lock:
                    receiver.open_now -= 1
                    receiver.answered.append(receiver.received[n])
                raw = text.encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender that went away mid-answer (a killed server) is expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let held requests (and all later ones) be answered."""
        self._open.set()

    def __exit__(self, *exc: object) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def delivered_ids(self) -> set[str]:
        """Ids of the events this receiver has answered 2xx (held ones not yet)."""
        with self._lock:
            return {r.event["id"] for r in self.answered if 200 <= r.status < 300}
