"""Rendering a portal page: one Jinja2 environment (autoescaped), the filters every page uses, and
`page(...)`, which adds what the layout needs (who is looking, the CSRF token, the navigation)."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from wharf_shared.keys import RUNTIME, SETTINGS
from wharf_shared.rbac import Role
from wharf_ui.portal.viewer import VIEWER, Viewer

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/portal"
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
ROLE_LABELS = {
    Role.PROJECT_ADMIN: "Project admin",
    Role.MAINTAINER: "Maintainer",
    Role.DEVELOPER: "Developer",
    Role.GUEST: "Guest",
    Role.LIMITED_GUEST: "Limited guest",
}


def role_label(role: Role | int | None) -> str:
    if role is None:
        return "—"
    try:
        return ROLE_LABELS[Role(role)]
    except ValueError:
        return str(role)


def size(value: int | None) -> str:
    """Bytes as a person reads them: 1.4 MiB."""
    if value is None:
        return "—"
    amount = float(value)
    for unit in _UNITS:
        if amount < 1024 or unit == _UNITS[-1]:
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def when(value: dt.datetime | str | None) -> str:
    """A time as `2026-12-05 21:14 UTC` (tables show minutes; the tooltip has the rest)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: dt.datetime | str | None) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def short_digest(digest: str | None) -> str:
    """`sha256:0123abcd…`: the algorithm and the first 12 hex digits."""
    if not digest:
        return ""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}:{hex_part[:12]}" if hex_part else digest[:19]


def segment(value: str) -> str:
    """A name as one URL path segment (slashes included)."""
    return urllib.parse.quote(value, safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the page (and its test), not blank
        trim_blocks=True,
        lstrip_blocks=True,
        enable_async=False,
    )
    env.filters.update(
        size=size, when=when, iso=iso, short_digest=short_digest, segment=segment, role_label=role_label
    )
    return env


ENVIRONMENT = _environment()


def query_with(request: web.Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one): links keep filters."""
    query = dict(request.query)
    for key, value in changes.items():
        if value is None or value == "":
            query.pop(key, None)
        else:
            query[key] = str(value)
    encoded = urllib.parse.urlencode(query)
    # The path as sent: `request.path` is decoded, which would split a repository `team%2Fapp`.
    return request.rel_url.raw_path + (f"?{encoded}" if encoded else "")


async def page(
    request: web.Request,
    template: str,
    *,
    title: str,
    section: str = "",
    status: int = 200,
    **context: Any,
) -> web.Response:
    """The page `template` rendered for the request's viewer. `section` marks the navigation entry
    the page belongs to (`projects`, `users`, …)."""
    viewer: Viewer | None = request.get(VIEWER)
    runtime = await request.app[RUNTIME].get()
    html = ENVIRONMENT.get_template(template).render(
        title=title,
        section=section,
        viewer=viewer,
        csrf=viewer.session.csrf if viewer is not None else "",
        read_only=runtime.read_only,
        runtime=runtime,
        external_url=request.app[SETTINGS].external_url.rstrip("/"),
        registry_host=registry_host(request),
        static=STATIC_PREFIX,
        request_path=request.path_qs,
        query_with=lambda **changes: query_with(request, **changes),
        **context,
    )
    response = web.Response(status=status, text=html, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    # The portal's script and styles are its own: nothing runs that another origin sent.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def registry_host(request: web.Request) -> str:
    """The host (and port) clients push to and pull from: the external URL's, as `docker pull`
    wants it (no scheme)."""
    parsed = urllib.parse.urlsplit(request.app[SETTINGS].external_url)
    return parsed.netloc or request.host
