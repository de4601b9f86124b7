"""Parsing helpers the `/v2/` handlers share."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from aiohttp import web

from wharf_shared.accel import UPLOAD_OFFSET
from wharf_shared.digests import Digest, DigestError
from wharf_shared.errors.oci import DigestInvalid, PaginationNumberInvalid, RangeInvalid, SizeInvalid
from wharf_shared.keys import SETTINGS

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)$")
UNPAGED_LIMIT = 10_000
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


def repository_name(request: web.Request) -> str:
    return request.match_info["name"]


def parse_digest(value: str | None, *, what: str = "digest") -> Digest:
    if not value:
        raise DigestInvalid(detail={"reason": f"{what} is required"}, message=f"{what} is required")
    try:
        return Digest.parse(value)
    except DigestError as exc:
        raise DigestInvalid(detail={"digest": value, "reason": str(exc)}, message=str(exc)) from None


def content_length(request: web.Request) -> int | None:
    raw = request.headers.get("Content-Length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise SizeInvalid(detail={"Content-Length": raw})
    return int(raw)


def content_range(request: web.Request) -> tuple[int, int] | None:
    """(start, length) from the spec's `Content-Range: <start>-<end>`, checked against Content-Length."""
    raw = request.headers.get("Content-Range")
    if raw is None:
        return None
    match = _CONTENT_RANGE.match(raw.strip())
    if not match:
        raise RangeInvalid(detail={"Content-Range": raw})
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RangeInvalid(detail={"Content-Range": raw})
    length = end - start + 1
    declared = content_length(request)
    if declared is not None and declared != length:
        raise RangeInvalid(detail={"Content-Range": raw, "Content-Length": declared})
    return start, length


def body_start(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) of a PATCH or PUT body: the Content-Range, else the front door's
    `X-Wharf-Upload-Offset` (a body of unknown length that must start there), else (None, the
    Content-Length): appended wherever the upload stands."""
    chunk = content_range(request)
    if chunk is not None:
        return chunk
    raw = request.headers.get(UPLOAD_OFFSET)
    if raw is not None and not (raw.isascii() and raw.isdigit()):
        raise RangeInvalid(detail={UPLOAD_OFFSET: raw})
    return (int(raw) if raw is not None else None), content_length(request)


def page(request: web.Request) -> tuple[int, str | None, bool]:
    """(limit, last, explicit n) from `n` and `last`."""
    raw_n = request.query.get("n")
    last = request.query.get("last") or None
    if raw_n is None or raw_n == "":
        return UNPAGED_LIMIT, last, False
    if not (raw_n.isascii() and raw_n.isdigit()):  # str.isdigit alone takes "²", which int() refuses
        raise PaginationNumberInvalid(detail={"n": raw_n})
    return min(int(raw_n), request.app[SETTINGS].registry.page_size_max), last, True


def next_link(path: str, limit: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": limit, "last": last})}>; rel="next"'
