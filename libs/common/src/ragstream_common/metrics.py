"""Prometheus metrics endpoint of every service, on its own port (`<NAME>_METRICS_PORT`; the gateway's is never
its HTTP API port)."""

from __future__ import annotations

from prometheus_client import start_http_server


def serve_metrics(host: str, port: int) -> None:
    """Expose /metrics on `port`; 0 disables it (tests run many services on one machine)."""
    if port:
        start_http_server(port, addr=host)
