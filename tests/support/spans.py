"""Tracing into the OpenTelemetry SDK's in-memory exporter, for tests that read spans back.

    @pytest.fixture
    def exported() -> Iterator[InMemorySpanExporter]:
        with in_memory_spans() as exporter:
            yield exporter

Each span is exported as it ends (a simple processor, no batching); tracing is off again
after the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from paymux.observability import tracing

__all__ = ["in_memory_spans"]


@contextmanager
def in_memory_spans() -> Iterator[InMemorySpanExporter]:
    """paymux traces into a new in-memory exporter for the block."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()
