"""A loopback proxy in front of localstripe that takes off what real Stripe accepts and
localstripe refuses, and keeps what it took off for the test to check.

localstripe's ``PaymentIntent`` takes a fixed list of arguments and answers 400 "Unexpected
description" to anything else (``localstripe/resources.py``, ``PaymentIntent.__init__``);
real Stripe takes ``description`` (and ``statement_descriptor_suffix``) on a PaymentIntent. An
invoice's payment carries ``description=Invoice <number>``, so a renewal through the Stripe
connector fails against localstripe alone. paymux's connector is left as real Stripe needs it;
this proxy (the test's seam, never product code) drops those fields from ``POST
/v1/payment_intents`` on the way to localstripe, and records each such request's parameters
as paymux sent them (``created``), so a test can state what real Stripe would have received."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode

import httpx

__all__ = ["LocalStripeProxy"]

UNSUPPORTED = ("description", "statement_descriptor_suffix")
_HOP = {"connection", "content-length", "transfer-encoding", "host", "keep-alive"}


class LocalStripeProxy:
    """``url`` forwards everything to ``target`` (localstripe's URL) on 127.0.0.1."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.created: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST" and self.path.split("?")[0] == "/v1/payment_intents":
                    body = proxy._strip(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                answer = proxy._client.request(
                    self.command, proxy.target + self.path, content=body, headers=headers
                )
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP and key.lower() != "content-encoding":
                        self.send_header(key, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _strip(self, body: bytes) -> bytes:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
        with self._lock:
            self.created.append(dict(pairs))
        kept = [(k, v) for k, v in pairs if k not in UNSUPPORTED]
        return body if len(kept) == len(pairs) else urlencode(kept).encode()

    def start(self) -> LocalStripeProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
