"""App keys every service uses; a service's own keys live in its `keys.py`.

The value types are imported for the type checker only: the proxy uses `SETTINGS` and
`METRICS`, and must not load SQLAlchemy and Redis just to name the others' types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from wharf_shared.config import Settings
    from wharf_shared.db.engine import Database
    from wharf_shared.events import EventPublisher
    from wharf_shared.metrics import Metrics
    from wharf_shared.runtime import RuntimeConfig
    from wharf_shared.runtime_watch import RuntimeWatch

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB: web.AppKey[Database] = web.AppKey("db")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
EVENTS: web.AppKey[EventPublisher] = web.AppKey("events")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# The runtime settings (`/configurations`) and their change subscriber: `runtime_watch.runtime_context`.
RUNTIME: web.AppKey[RuntimeConfig] = web.AppKey("runtime")
RUNTIME_WATCH: web.AppKey[RuntimeWatch] = web.AppKey("runtime_watch")
