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

        # Transfers continued on another instance when their upstream died mid-body (continuation.py).
        self.continued = Counter(
            "wharf_proxy_continued_transfers",
            "Transfers whose upstream died mid-body: continued on another instance, or failed",
            ["pool", "direction", "result"],  # direction: pull | push; result: continued | failed
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "wharf_proxy_spool_bytes",
            "Bytes of upload bodies held on disk in case their upstream dies (spool.py)",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.spool_overflows = Counter(
            "wharf_proxy_spool_overflows",
            "Upload bodies that outgrew the spool (per request or in total) or whose spool failed",
            ["limit"],  # request | total | error
            registry=registry,
        )
