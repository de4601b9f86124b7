"""The ui's changes and their events: a write through the API records what it did as an event
(`wharf_shared.events`, the `<resource>.<operation>` types) in the same transaction, to the
outbox, so the audit log never misses a committed change nor shows one that rolled back.

Domain functions call `record` inside their transaction; `relay_middleware` wakes the relay
after every write request, so the event reaches the stream right after the commit rather than at
the relay's next poll.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from wharf_shared.events import EventRelay, new_event, write_events
from wharf_shared.rbac import Identity

RELAY = web.AppKey("relay", EventRelay)
_READS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def operator(identity: Identity) -> str:
    """The event's operator: the username, "" for an anonymous caller (events' convention)."""
    return identity.username if not identity.anonymous else ""


async def record(conn: AsyncConnection, event_type: str, identity: Identity, **fields: Any) -> None:
    """Write one `<resource>.<operation>` event in the caller's transaction."""
    await write_events(conn, [new_event(event_type, operator=operator(identity), **fields)])


@web.middleware
async def relay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    finally:
        if request.method not in _READS:
            relay = request.app.get(RELAY)
            if relay is not None:
                relay.wake()
