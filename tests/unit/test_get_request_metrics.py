"""``observe_request`` (observability/metrics.py) counts each request in the children of its
(method, route, status), looked up once per such triple and kept (issue 10: ``labels()``
twice per request was a measurable part of a GET), and still counts exactly: each status
its own series, an unknown method as OTHER, the duration in the method's and route's
histogram. Read back from the process's registry as /metrics would render it.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from paymux.observability import metrics
from paymux.observability.metrics import observe_request

# A route template of this test alone: no other request has been counted under it.
ROUTE = "/v1/test_get_request_metrics/{id}"


def _value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_request_is_counted_in_its_own_series_with_the_labels_looked_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[tuple[str, ...]] = []
    labels = type(metrics.REQUESTS).labels

    def counted(self: Any, *values: str) -> Any:
        looked_up.append(values)
        return labels(self, *values)

    monkeypatch.setattr(type(metrics.REQUESTS), "labels", counted)
    monkeypatch.setattr(type(metrics.REQUEST_SECONDS), "labels", counted)

    for _ in range(3):
        observe_request("GET", ROUTE, 200, 0.002)
    observe_request("GET", ROUTE, 404, 0.001)
    observe_request("BREW", ROUTE, 200, 0.003)

    total = "paymux_http_requests_total"
    assert _value(total, {"method": "GET", "route": ROUTE, "status": "200"}) == 3
    assert _value(total, {"method": "GET", "route": ROUTE, "status": "404"}) == 1
    assert _value(total, {"method": "OTHER", "route": ROUTE, "status": "200"}) == 1
    seconds = "paymux_http_request_duration_seconds_count"
    assert _value(seconds, {"method": "GET", "route": ROUTE}) == 4
    assert _value(seconds, {"method": "OTHER", "route": ROUTE}) == 1
    assert _value(
        "paymux_http_request_duration_seconds_sum", {"method": "GET", "route": ROUTE}
    ) == pytest.approx(0.007)
    # Two look-ups (counter, histogram) for each of the three triples, not one per request.
    assert len(looked_up) == 6
