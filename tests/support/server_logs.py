"""The logs a server thread writes, as `paymux serve` writes them (redacted JSON lines),
captured for a test to read: ``with capture_server_logs("INFO") as logs: ... logs.text``."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from paymux.security import configure_logging

__all__ = ["Logs", "capture_server_logs"]


class _OtherThreads(logging.Filter):
    """Keeps only the server thread's records (not the test's own httpx lines)."""

    def __init__(self, excluded: int) -> None:
        super().__init__()
        self.excluded = excluded

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.excluded


@dataclass
class Logs:
    stream: io.StringIO

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@contextmanager
def capture_server_logs(level: str) -> Iterator[Logs]:
    """paymux's production logging at ``level``, into a buffer; everything restored after."""
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = {h: list(h.filters) for h in root.handlers}
    uvicorn = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved_uvicorn = [(lg, list(lg.handlers), lg.propagate) for lg in uvicorn]

    configure_logging(level=level, json_output=True)
    [handler] = [h for h in root.handlers if h not in saved_handlers]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    handler.addFilter(_OtherThreads(threading.get_ident()))
    try:
        yield Logs(stream)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved_level)
        for h, filters in saved_handlers.items():
            h.filters[:] = filters
        for lg, handlers, propagate in saved_uvicorn:
            lg.handlers[:] = handlers
            lg.propagate = propagate
