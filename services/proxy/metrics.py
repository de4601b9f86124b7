"""The proxy's own metrics: what each request came to, and what each pool and upstream went
through (failures by kind, retries elsewhere, ejections and restorations, health).

Failure kinds (`kind`): `connect` (refused, unreachable, or no connection in time), `reset`
(the connection dropped before an answer), `timeout` (silent once the request was sent, took no
byte of its body, or fell silent mid-answer), `truncated` (the answer's body broke off),
`protocol` (an answer that was not HTTP), `health` (a failed readiness check), `other`.

Requests that reached no pool (the proxy's own routes, unknown paths, malformed targets) have
`pool="none"`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from wharf_shared.metrics import Metrics

NO_POOL = "none"


class _ByStatus:
    """Counts a request's final status under `responses`: every request does, so the labelled
    child is kept here rather than looked up under the family's lock each time."""

    def __init__(self, responses: Counter) -> None:
        self._responses = responses
        self._children: dict[tuple[str, int], Any] = {}

    def __call__(self, pool: str, status: int) -> None:
        child = self._children.get((pool, status))
        if child is None:
            child = self._children[pool, status] = self._responses.labels(pool, str(status))
        child.inc()


class UpstreamHealth(Collector):
    """`wharf_proxy_upstream_healthy{pool,upstream}`, read at scrape time from the verdicts the
    workers share (board.py), for the upstreams the pools have now: an upstream that left the
    pools leaves the family too, which a gauge kept in multiprocess files could not do."""

    def __init__(self, upstreams: Callable[[], Iterable[tuple[str, str, bool]]]) -> None:
        self._upstreams = upstreams  # (pool, url, in rotation) of every upstream

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for pool, url, in_rotation in self._upstreams():
            family.add_metric([pool, url], 1 if in_rotation else 0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "wharf_proxy_upstream_healthy",
            "1 while the upstream is in rotation (0: ejected, or new and not yet checked)",
            labels=["pool", "upstream"],
        )


class ProxyMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.requests = Counter(
            "wharf_proxy_upstream_requests",
            "Requests forwarded, by pool, upstream and the upstream's status",
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
            "Failed attempts and health checks, by pool, upstream and kind "
            "(connect, reset, timeout, truncated, protocol, health, other)",
            ["pool", "upstream", "kind"],
            registry=registry,
        )
        self.responses = Counter(
            "wharf_proxy_responses",
            "Requests by the status the client saw: relayed answers and the proxy's own (400, 404, "
            "503, 504); 502 for an answer cut off mid-body, 499 when the client left first",
            ["pool", "status"],
            registry=registry,
        )
        self.retries = Counter(
            "wharf_proxy_retries",
            "Attempts moved to another instance after one failed",
            ["pool"],
            registry=registry,
        )
        self.ejections = Counter(
            "wharf_proxy_upstream_ejections",
            "Times the upstream was taken out of rotation",
            ["pool", "upstream"],
            registry=registry,
        )
        self.restorations = Counter(
            "wharf_proxy_upstream_restorations",
            "Times the upstream was put back into rotation",
            ["pool", "upstream"],
            registry=registry,
        )
        self.responded = _ByStatus(self.responses)

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
