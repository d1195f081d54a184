"""A probe for bench/sequential_split.py, loaded by a server process the bench starts with
this folder on PYTHONPATH (Python imports ``sitecustomize`` at start-up): with
``BENCH_REQUEST_TIMING`` set to a folder, it records, for each HTTP request uvicorn serves,
when its first bytes were parsed (httptools' ``on_message_begin``), when the task that runs
the app started, and when it ended (the response sent), and appends them to
``<folder>/<pid>.jsonl`` every second. Nothing when the variable is not set; never part of
paymux (uvicorn's internals, patched here, are the bench's business only)."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

_FOLDER = os.environ.get("BENCH_REQUEST_TIMING", "")


def _install(folder: str) -> None:
    try:
        from uvicorn.protocols.http import httptools_impl as impl
    except ImportError:  # no httptools: nothing recorded (the bench says so)
        return
    clock = time.monotonic  # (CLOCK_MONOTONIC: one clock for every process of the machine)
    records: list[tuple[float, float, float, str]] = []
    protocol = impl.HttpToolsProtocol
    message_begin = protocol.on_message_begin
    headers_complete = protocol.on_headers_complete
    run_asgi = impl.RequestResponseCycle.run_asgi

    def on_message_begin(self: Any) -> None:
        self._bench_begin = clock()
        message_begin(self)

    def on_headers_complete(self: Any) -> None:
        headers_complete(self)
        self.cycle._bench_begin = self._bench_begin

    async def timed_run_asgi(self: Any, app: Any) -> None:
        started = clock()
        try:
            await run_asgi(self, app)
        finally:
            path = str(self.scope.get("path", ""))
            records.append((getattr(self, "_bench_begin", started), started, clock(), path))

    protocol.on_message_begin = on_message_begin  # type: ignore[method-assign]
    protocol.on_headers_complete = on_headers_complete  # type: ignore[method-assign]
    impl.RequestResponseCycle.run_asgi = timed_run_asgi  # type: ignore[method-assign]

    def write() -> None:
        done = 0
        path = os.path.join(folder, f"{os.getpid()}.jsonl")
        while True:
            time.sleep(1.0)
            upto = len(records)
            if upto > done:
                with open(path, "a", encoding="utf-8") as out:
                    out.write("".join(json.dumps(r) + "\n" for r in records[done:upto]))
                done = upto

    threading.Thread(target=write, name="bench-request-timing", daemon=True).start()


if _FOLDER:
    _install(_FOLDER)
