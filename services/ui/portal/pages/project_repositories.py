"""A project's repositories (`/harbor/projects/{project}/repositories`): one page of them with
artifact count, pull count, stored size and the pull command; search by name (`?name=`,
contains), Harbor's `sort`, pages. The page is the API's `/projects/{p}/repositories` query (a
range of the unique name index, LIMIT/OFFSET) plus the sizes of that page's rows only, so it
costs the same in a project of 10,000 repositories (`tests/bench/portal.py` measures it)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB
from wharf_ui import repositories
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query
from wharf_ui.portal.pages.project import project_page, project_view
from wharf_ui.query import Fuzzy, QueryError, SortKey
from wharf_ui.repositories import RepositoryInfo

PAGE_SIZE = "15"
# The orders the page offers (Harbor's `sort` values); by name unless asked, so that pages of a
# large project stay put while repositories are pushed.
SORTS = (
    ("name", "Name"),
    ("-update_time", "Recently updated"),
    ("-creation_time", "Newest"),
    ("-pull_count", "Most pulled"),
)
DEFAULT_SORT = [SortKey("name", False)]


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    repository: RepositoryInfo
    short_name: str  # without the project: what the repository's own page's path holds
    size: int


async def repository_list(request: web.Request) -> web.Response:
    view = await project_view(request, "repositories")
    if "page_size" not in request.query:
        request = request.clone(rel_url=request.rel_url.update_query(page_size=PAGE_SIZE))
    query = list_query(request, repositories.REPOSITORIES)
    terms = dict(query.terms)
    name = request.query.get("name", "")
    if name:
        terms["name"] = Fuzzy(name)
    try:
        conditions = where(repositories.REPOSITORIES, terms)
    except QueryError as exc:
        raise BadRequest(message=str(exc)) from None
    order = order_by(repositories.REPOSITORIES, query.sort or DEFAULT_SORT)
    project = view.project
    async with request.app[DB].read() as conn:
        found, total = await repositories.list_in_project(
            conn, project.id, project.name, conditions, order, query.page
        )
        sizes = await repositories.stored_sizes(conn, [x.id for x in found])
    prefix = project.name + "/"
    rows = [RepositoryRow(x, x.name.removeprefix(prefix), sizes.get(x.id, 0)) for x in found]
    return await project_page(
        request,
        view,
        "repositories",
        "project_repositories.html",
        rows=rows,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        name=name,
        sort=request.query.get("sort", "name"),
        sorts=SORTS,
        may_delete=view.may_change("repository", "delete"),
    )


PAGES = (("/harbor/projects/{project}/repositories", repository_list, "portal_project_repositories"),)
