"""`/api/v2.0/statistics`: project and repository counts, for signed-in callers."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.keys import DB
from wharf_ui import statistics
from wharf_ui.responses import json_response
from wharf_ui.security import signed_in


async def get_statistic(request: web.Request) -> web.Response:
    identity = await signed_in(request)
    async with request.app[DB].read() as conn:
        counted = await statistics.statistics(conn, identity)
    return json_response(counted)
