"""Prometheus metrics, one registry per app so that several apps can live in one process (tests).

HTTP metrics are labelled by route template, never the raw path, to keep cardinality bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from wharf_shared.procmetrics import multiprocess_enabled

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        prefix = f"wharf_{service}"
        self.http_requests = Counter(
            f"{prefix}_http_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            f"{prefix}_http_request_duration_seconds",
            "HTTP request latency (to the end of the handler)",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_in_flight = Gauge(
            f"{prefix}_http_in_flight_requests",
            "Requests in flight",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.storage_latency = Histogram(
            f"{prefix}_storage_operation_duration_seconds",
            "Storage driver call latency",
            ["driver", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.storage_errors = Counter(
            f"{prefix}_storage_operation_errors",
            "Storage driver calls that failed",
            ["driver", "operation"],
            registry=self.registry,
        )
        self.events_published = Counter(
            f"{prefix}_events_published", "Events appended to the stream", ["type"], registry=self.registry
        )
        self.events_failed = Counter(
            f"{prefix}_events_failed", "Events that could not be appended", ["type"], registry=self.registry
        )

    def render(self) -> bytes:
        if multiprocess_enabled():
            # Each worker writes its own files; any worker can answer for all of them.
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return generate_latest(combined)
        return generate_latest(self.registry)


def route_label(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    if route is None or route.resource is None:
        return "unmatched"
    return route.resource.canonical


def metrics_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_label(request)
        start = time.perf_counter()
        metrics.http_in_flight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            # aiohttp cancels a handler whose client hung up (handler_cancellation): no answer
            # was given, and a client that left is no server error. nginx's "client closed request".
            status = 499
            raise
        finally:
            metrics.http_in_flight.dec()
            metrics.http_latency.labels(request.method, route).observe(time.perf_counter() - start)
            metrics.http_requests.labels(request.method, route, str(status)).inc()

    return middleware
