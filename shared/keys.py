"""App keys every service uses; a service's own keys live in its `keys.py`."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from wharf_shared.config import Settings
from wharf_shared.db.engine import Database
from wharf_shared.events import EventPublisher
from wharf_shared.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", Redis)
EVENTS = web.AppKey("events", EventPublisher)
METRICS = web.AppKey("metrics", Metrics)
