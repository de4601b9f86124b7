"""The job service's URL map: `/health`, `/health/ready` and `/metrics` (shared/health.py); its
work comes from the event stream and the job queue, not from HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from wharf_shared.health import add_health_and_metrics
from wharf_shared.metrics import Metrics


def add_routes(
    app: web.Application, metrics: Metrics, ready: Callable[[], Awaitable[dict[str, str]]]
) -> None:
    add_health_and_metrics(app, metrics, ready)
