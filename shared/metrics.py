"""Prometheus metrics, one registry per app so that several apps can live in one process (tests).

HTTP metrics are labelled by route template, never the raw path, to keep cardinality bounded.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.registry import Collector

from wharf_shared.procmetrics import multiprocess_enabled

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """One service's metric families. Each is made when a part of the service that it measures
    first asks for it (the HTTP middleware, the storage wrapper, the event publisher, the
    database and Redis pools), so that a service exports only what applies to it: the proxy has
    no database, the token service no storage."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self._prefix = f"wharf_{service}"
        self._live: list[Collector] = []

    def add_live(self, collector: Collector) -> None:
        """A collector of values read at scrape time from state every process shares (not
        counted per process): the answering worker's reading is the whole answer."""
        self.registry.register(collector)
        self._live.append(collector)

    # -- HTTP (services that answer through metrics_middleware) -----------------------------------

    @functools.cached_property
    def http_requests(self) -> Counter:
        return Counter(
            f"{self._prefix}_http_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )

    @functools.cached_property
    def http_latency(self) -> Histogram:
        return Histogram(
            f"{self._prefix}_http_request_duration_seconds",
            "HTTP request latency (to the end of the handler)",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    @functools.cached_property
    def http_in_flight(self) -> Gauge:
        return Gauge(
            f"{self._prefix}_http_in_flight_requests",
            "Requests in flight",
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    # -- storage ----------------------------------------------------------------------------------

    @functools.cached_property
    def storage_latency(self) -> Histogram:
        return Histogram(
            f"{self._prefix}_storage_operation_duration_seconds",
            "Storage driver call latency",
            ["driver", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    @functools.cached_property
    def storage_errors(self) -> Counter:
        return Counter(
            f"{self._prefix}_storage_operation_errors",
            "Storage driver calls that failed",
            ["driver", "operation"],
            registry=self.registry,
        )

    # -- events -----------------------------------------------------------------------------------

    @functools.cached_property
    def events_published(self) -> Counter:
        return Counter(
            f"{self._prefix}_events_published",
            "Events appended to the stream",
            ["type"],
            registry=self.registry,
        )

    @functools.cached_property
    def events_failed(self) -> Counter:
        return Counter(
            f"{self._prefix}_events_failed",
            "Events that could not be appended",
            ["type"],
            registry=self.registry,
        )

    # -- the SQL connection pools, `pool` "read" or "write" (wharf_shared.db.engine) ---------------

    @functools.cached_property
    def db_connections_in_use(self) -> Gauge:
        return Gauge(
            f"{self._prefix}_db_connections_in_use",
            "SQL connections checked out of the pool",
            ["pool"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    @functools.cached_property
    def db_pool_size(self) -> Gauge:
        return Gauge(
            f"{self._prefix}_db_pool_size",
            "SQL connections the pool may hold (WHARF_DATABASE_POOL_SIZE per process)",
            ["pool"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    @functools.cached_property
    def db_waiting(self) -> Gauge:
        return Gauge(
            f"{self._prefix}_db_waiting",
            "Requests waiting for a SQL connection (the pool is full, or one is being opened)",
            ["pool"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    @functools.cached_property
    def db_errors(self) -> Counter:
        return Counter(
            f"{self._prefix}_db_errors",
            "SQL connections that could not be had (refused, pool timeout) or were found broken",
            ["pool"],
            registry=self.registry,
        )

    # -- the Redis client (wharf_shared.redis) ----------------------------------------------------

    @functools.cached_property
    def redis_connections_in_use(self) -> Gauge:
        return Gauge(
            f"{self._prefix}_redis_connections_in_use",
            "Redis connections checked out of the pool",
            multiprocess_mode="livesum",
            registry=self.registry,
        )

    @functools.cached_property
    def redis_errors(self) -> Counter:
        return Counter(
            f"{self._prefix}_redis_errors",
            "Redis connections that could not be had (Redis down, unreachable, refusing)",
            registry=self.registry,
        )

    def render(self) -> bytes:
        if multiprocess_enabled():
            # Each worker writes its own files; any worker can answer for all of them.
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            for collector in self._live:
                combined.register(collector)
            return generate_latest(combined)
        return generate_latest(self.registry)


def route_label(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    if route is None or route.resource is None:
        return "unmatched"
    return route.resource.canonical


def metrics_middleware(metrics: Metrics) -> Middleware:
    in_flight, latency, requests = metrics.http_in_flight, metrics.http_latency, metrics.http_requests

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_label(request)
        start = time.perf_counter()
        in_flight.inc()
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
            in_flight.dec()
            latency.labels(request.method, route).observe(time.perf_counter() - start)
            requests.labels(request.method, route, str(status)).inc()

    return middleware
