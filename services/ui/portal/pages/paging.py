"""The page of a list a portal page shows: `page` and `page_size` from its URL, with the page's
own default size (a bad number is the portal's 400 page, not the API's JSON)."""

from __future__ import annotations

from aiohttp import web

from wharf_ui.portal.viewer import PortalError
from wharf_ui.query import Page, QueryError, parse_page


def page_of(request: web.Request, default_size: int) -> Page:
    try:
        return parse_page(request.query.get("page"), request.query.get("page_size") or str(default_size))
    except QueryError as exc:
        raise PortalError(str(exc)) from None
