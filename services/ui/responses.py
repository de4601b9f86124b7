"""What every `/api/` answer shares: JSON bodies, RFC 3339 timestamps, 201 with `Location`,
and the empty 200 of a PUT or DELETE (Harbor's clients read no body and no JSON type there)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

from aiohttp import web

NAME_IN_LOCATION = "X-Resource-Name-In-Location"


def timestamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 in UTC with milliseconds (`2026-12-04T18:45:08.123Z`), or None; never ""."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json", headers=headers
    )


def empty_ok() -> web.Response:
    response = web.Response(status=200)
    response.content_type = "text/plain"  # aiohttp would say octet-stream; say nothing of JSON
    return response


def created(request: web.Request, collection: str, resource_id: int, name: str) -> web.Response:
    """201 whose `Location` ends in the new id, or in its name when the client asks
    (`X-Resource-Name-In-Location: true`, as Harbor's clients do for projects)."""
    by_name = request.headers.get(NAME_IN_LOCATION, "").lower() == "true"
    last = urllib.parse.quote(name, safe="") if by_name else str(resource_id)
    response = web.Response(status=201, headers={"Location": f"{collection.rstrip('/')}/{last}"})
    response.content_type = "text/plain"
    return response
