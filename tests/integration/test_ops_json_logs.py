"""Issue 16, section 3: "Logs stay structured JSON with the request id and the trace id". The
JSON log line (security/logging.py ``JsonFormatter``, as ``configure_logging`` installs it)
of a record logged inside a traced request carries that request's ``request_id`` and its
span's ``trace_id`` and ``span_id``; paymux in-process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conftest import migrated_database_url
from paymux.security.logging import JsonFormatter, RequestIdFilter
from support.fake_gateway import Outcome
from support.harness import Harness
from support.pgcluster import PgCluster
from support.spans import in_memory_spans

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"jlog_{next(_names)}")


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with in_memory_spans() as exporter:
        yield exporter


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger's records, as JSON lines (the formatter and filter the app uses)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


def test_a_json_log_line_inside_a_request_names_its_request_and_its_trace(
    db: str, tmp_path: Path, exported: InMemorySpanExporter, json_lines: io.StringIO
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            made = await h.post("/v1/payment_intents", {"amount": 1500, "currency": "usd"})
            pi = h.body(made)["id"]
            exported.clear()
            json_lines.truncate(0)
            # Every answer lost: the gateway-call layer logs warnings inside the request.
            h.gw.script("authorize", *[Outcome.lose_response()] * 4)
            r = await h.post(f"/v1/payment_intents/{pi}/confirm", {"payment_method": "tok_visa"})
            assert r.status_code == 200, r.text
            [request] = [s for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER]
            request_id = (request.attributes or {})["paymux.request_id"]
            assert r.headers["request-id"] == request_id
            lines = [json.loads(line) for line in json_lines.getvalue().splitlines() if line]
            assert lines  # one JSON object per line
            ours = [line for line in lines if line.get("request_id") == request_id]
            assert ours, lines
            for line in ours:
                assert line["trace_id"] == f"{request.context.trace_id:032x}"
                assert isinstance(line["span_id"], str) and len(line["span_id"]) == 16
                assert line["level"] == "WARNING"

    asyncio.run(main())
