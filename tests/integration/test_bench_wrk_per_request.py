"""bench/common.py's one-connection latencies: what wrk reports and what each request took.

wrk 4 corrects its latencies for coordinated omission: for every request slower than twice
the mean interval between a connection's requests it adds samples at that latency minus one,
two, ... intervals (wrk's stats_correct, applied before done() sees the figures). For one
client sending each request after the last answer, those samples are requests that were never
made. ``run_wrk(..., per_request=True)`` records each request's latency as the client saw it
(bench/common.py ``LUA_PER_REQUEST``), which is what the sequential figures of issue 10 are
then read from (docs/benchmarks.md). Here a loopback server answers every request at once
except every 200th, which it holds 50 ms."""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import run_wrk  # noqa: E402

HOLD_EVERY = 200
HOLD_S = 0.050

SCRIPT = r"""
function request()
  return wrk.format("POST", "/pay", {["Content-Type"] = "application/json"}, "{}")
end
"""

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (.ci/run installs it)"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    served = 0
    held = 0

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the answer to the request in flight when wrk stopped: nobody reads it


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: wrk's one connection for every request

    def setup(self) -> None:
        super().setup()
        # headers and body are two writes: without this, Nagle and the delayed ACK hold the
        # body about 40 ms
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server.served += 1
        if server.served % HOLD_EVERY == 0:
            server.held += 1
            time.sleep(HOLD_S)
        body = b'{"status":"succeeded"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _wrk_corrected_p99(latencies_ms: list[float], seconds: float, requests: int) -> float:
    """wrk 4's stats_correct then stats_percentile(99) on a histogram of microseconds,
    written from wrk's source (src/stats.c), for one connection."""
    histogram = Counter(int(x * 1000) for x in latencies_ms)
    interval = int(seconds * 1e6 / requests)
    for value in range(interval * 2, max(histogram) + 1):
        count, lower = histogram.get(value, 0), value - interval
        while count and lower > interval:
            histogram[lower] += count
            lower -= interval
    rank = round(0.99 * sum(histogram.values()) + 0.5)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value / 1000
    raise AssertionError("empty histogram")


def test_per_request_latencies_are_the_requests_and_wrk_adds_corrected_samples(
    server: _Server, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    load = run_wrk(url, SCRIPT, seconds=3, connections=1, threads=1, tmp=tmp_path, per_request=True)
    assert load.errors == 0
    sent = sorted(load.per_request)
    # one latency per answered request (the last one sent may be unanswered when wrk stops)
    assert load.requests <= len(sent) <= load.requests + 1
    assert server.held >= 3
    # every held request is among them, at its 50 ms at least (but the last one held may be
    # the one wrk stopped waiting for)
    assert sum(x >= HOLD_S * 1000 for x in sent) >= server.held - 1
    # the requests' own p99 is an unheld request's: fewer than 1 % were held
    p99 = sent[int(len(sent) * 0.99)]
    assert p99 < HOLD_S * 1000
    # wrk's p99 is the same requests with its correction's samples: one held request of 50
    # ms at an interval of a millisecond or so adds dozens of samples between it and the
    # interval, a few percent of the histogram, so wrk's p99 is far above the requests' own
    assert load.p99 > max(p99, 10.0)
    expected = _wrk_corrected_p99(load.per_request, load.seconds, load.requests)
    assert load.p99 == pytest.approx(expected, rel=0.05, abs=0.2)
    # no file left behind
    assert not list(tmp_path.glob("wrk-*"))


NUMBERED = r"""
counters = {"tid_plus_one", "nthreads_at_init"}
tid_plus_one, nthreads_at_init = 0, 0
function init(args)
  tid_plus_one, nthreads_at_init = tid + 1, nthreads
end
function request()
  return wrk.format("POST", "/pay", {["Content-Type"] = "application/json"}, "{}")
end
"""


def test_threads_are_numbered_and_know_their_count_from_their_start(
    server: _Server, tmp_path: Path
) -> None:
    """``LUA_COMMON``'s setup(): each thread's ``tid`` (0, 1, ...) and the number of threads,
    both in that thread's own Lua state before its init() runs. wrk starts each thread as
    soon as it is set up, so the count cannot be written into the earlier threads' states as
    later threads are set up (it once was: thread i saw i + 1 at its start, and the write
    raced with the running thread's own Lua calls, a PANIC of wrk's seen once)."""
    url = f"http://127.0.0.1:{server.server_address[1]}"
    load = run_wrk(url, NUMBERED, seconds=1, connections=4, threads=4, tmp=tmp_path)
    assert load.errors == 0
    # tids 0-3: 1 + 2 + 3 + 4, the largest 4
    assert load.counters["tid_plus_one"] == 10
    assert load.counters["tid_plus_one_max"] == 4
    # every thread saw 4 at its init (with the count written as threads were set up: 1+2+3+4)
    assert load.counters["nthreads_at_init"] == 16
    assert load.counters["nthreads_at_init_max"] == 4
