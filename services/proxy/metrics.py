"""The proxy's own metrics, per pool and upstream, beside the shared HTTP ones."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from wharf_shared.metrics import Metrics


class ProxyMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.requests = Counter(
            "wharf_proxy_upstream_requests",
            "Requests forwarded, by pool, upstream and status",
            ["pool", "upstream", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "wharf_proxy_upstream_duration_seconds",
            "Time to the end of the relayed response",
            ["pool", "upstream"],
            registry=registry,
        )
        self.failures = Counter(
            "wharf_proxy_upstream_failures",
            "Attempts that failed before a response (connect errors, resets), by upstream",
            ["pool", "upstream"],
            registry=registry,
        )
        self.healthy = Gauge(
            "wharf_proxy_upstream_healthy",
            "1 while the upstream is in rotation",
            ["pool", "upstream"],
            multiprocess_mode="max",
            registry=registry,
        )
