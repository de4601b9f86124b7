"""Path parameters. Harbor's clients encode a name that holds slashes twice (`team/app` is sent as
`team%252Fapp`, so that no proxy on the way turns `%2F` into a path separator); the router has
undone one layer, this undoes the other. Ids are positive integers that fit a BIGINT."""

from __future__ import annotations

import urllib.parse

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest

ID_MAX = 2**63 - 1


def decoded_name(request: web.Request, key: str) -> str:
    raw = request.match_info[key]
    try:
        name = urllib.parse.unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(message=f"{key}: not valid UTF-8 once decoded") from None
    if not name or "\x00" in name:
        raise BadRequest(message=f"{key}: empty or holding a NUL character")
    return name


def path_id(request: web.Request, key: str) -> int:
    raw = request.match_info[key]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= ID_MAX:
        raise BadRequest(message=f"{key}: {raw[:40]!r} is not a positive integer id")
    return int(raw)
