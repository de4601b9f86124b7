"""`/api/v2.0/search`: Harbor's search over projects and repositories."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.errors.harbor import BadRequest
from wharf_shared.keys import DB
from wharf_ui import projects, search
from wharf_ui.handlers.projects import anonymous_access, lister, project_json
from wharf_ui.query import QueryError, as_text
from wharf_ui.responses import json_response


async def search_all(request: web.Request) -> web.Response:
    identity = await lister(request)
    text = request.query.get("q", "")
    if not text:
        raise BadRequest(message="q: required, the text to look for in names")
    try:
        as_text("q", text)
    except QueryError as exc:
        raise BadRequest(message=str(exc).removeprefix("q: ")) from None
    anonymous = await anonymous_access(request)
    async with request.app[DB].read() as conn:
        found = await search.find_projects(conn, identity, text)
        counts = await projects.repo_counts(conn, [x.id for x in found])
        repositories = await search.find_repositories(conn, identity, text)
    return json_response(
        {
            "project": [project_json(x, counts[x.id], identity, anonymous_access=anonymous) for x in found],
            "repository": [
                {
                    "project_id": hit.project_id,
                    "project_name": hit.project_name,
                    "project_public": hit.project_public,
                    "repository_name": hit.repository_name,
                    "pull_count": hit.pull_count,
                    "artifact_count": hit.artifact_count,
                }
                for hit in repositories
            ],
        }
    )
