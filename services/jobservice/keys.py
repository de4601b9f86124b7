"""The job service's typed app keys."""

from __future__ import annotations

from aiohttp import web

from wharf_jobservice.consumer import StreamConsumer

CONSUMER = web.AppKey("consumer", StreamConsumer)
