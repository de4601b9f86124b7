"""Lists as Harbor pages them: a bare JSON array, `X-Total-Count`, and `Link` headers to the
previous and next pages whose path (not an absolute URL: the client may have come through any
proxy) repeats every query parameter of the request with `page` changed."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest
from wharf_ui.listing import ListSpec
from wharf_ui.query import Page, QueryError, SortKey, Term, parse_page, parse_q, parse_sort


@dataclass(frozen=True, slots=True)
class ListQuery:
    terms: dict[str, Term]
    sort: list[SortKey]
    page: Page


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(message=f"the query parameter {name} is given {len(values)} times")
    return values[0] if values else None


def list_query(request: web.Request, spec: ListSpec | None = None) -> ListQuery:
    """The request's `q`, `sort`, `page` and `page_size` (a list without `spec` takes no q/sort)."""
    try:
        page = parse_page(_single(request, "page"), _single(request, "page_size"))
        q, sort = _single(request, "q") or "", _single(request, "sort") or ""
        if spec is None:
            if q or sort:
                raise QueryError("this list takes no q or sort")
            return ListQuery({}, [], page)
        return ListQuery(parse_q(q), parse_sort(sort, spec.sorts), page)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None


def _link(request: web.Request, number: int, rel: str) -> str:
    # Every character outside the unreserved set percent-encoded (a space or a brace from `q`
    # would end the URL for a client that parses the header).
    pairs = [(k, v) for k, v in request.query.items() if k != "page"] + [("page", str(number))]
    query = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote, safe="")
    # The path as the client encoded it (normalised): `request.path` is decoded once, which would
    # turn a repository name sent as `web%2Fapp` into two path segments.
    path = request.rel_url.raw_path
    return f'<{path}?{query}>; rel="{rel}"'


def page_headers(request: web.Request, total: int, page: Page) -> dict[str, str]:
    headers = {"X-Total-Count": str(total)}
    links = []
    if page.number > 1 and total > 0:
        # The page before, or the last page that exists when the client ran past the end.
        last = max(1, -(-total // page.size))
        links.append(_link(request, min(page.number - 1, last), "prev"))
    if page.number * page.size < total:
        links.append(_link(request, page.number + 1, "next"))
    if links:
        headers["Link"] = " , ".join(links)
    return headers


def listed(request: web.Request, items: Sequence[Any], total: int, page: Page) -> web.Response:
    return web.Response(
        body=json.dumps(list(items)).encode(),
        content_type="application/json",
        headers=page_headers(request, total, page),
    )
