"""Running paymux in production: Prometheus metrics (metrics.py), health and worker
heartbeats (health.py), the operator's endpoints (routes.py) and OpenTelemetry tracing
(tracing.py). See docs/operations.md."""
