"""Read-only mode on the ui: while the runtime setting `read_only` is on, every request that
could change something (any method but GET, HEAD, OPTIONS) is refused with Harbor's answer,
403 `DENIED` "The system is in read only mode…", before its handler runs.

One middleware for every route, so endpoints added later are covered without doing anything.
What stays allowed is the short list Harbor keeps (its `readonlySkippers`): changing the
configuration (how read-only mode is turned off again) and signing in and out of the portal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from wharf_shared.errors.harbor import Denied
from wharf_shared.keys import RUNTIME
from wharf_shared.runtime import READ_ONLY_MESSAGE
from wharf_ui.security import caller

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("PUT", "/api/v2.0/configurations"),
        ("POST", "/c/login"),
        ("POST", "/c/logout"),
    }
)


@web.middleware
async def read_only_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (
        request.method in _READS
        or (request.method, request.path.rstrip("/")) in ALLOWED
        or request.match_info.http_exception is not None  # no such route: its own 404 or 405
        or not (await request.app[RUNTIME].get()).read_only
    ):
        return await handler(request)
    # Credentials that prove no one are still a 401 first, as on every other request.
    await caller(request)
    raise Denied(message=READ_ONLY_MESSAGE)
