"""The directory syncs the job service's leader runs, on the API (system admins only): `POST`
asks for a run now (202, with its `request_id`); `GET` shows the last run's report (404 before
any), whose `request_id` names the request it answered and `finished_at` is "" while it runs.
Harbor has neither: `/ldap/groups/sync` (LDAP groups, `wharf_shared.group_sync`) and
`/system/oidc/groups/sync` (OIDC users' groups by their refresh tokens,
`wharf_shared.oidc_group_sync`) are Wharf's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from wharf_shared import group_sync, oidc_group_sync
from wharf_shared.errors.harbor import NotFound
from wharf_shared.keys import REDIS
from wharf_ui.responses import json_response
from wharf_ui.security import sysadmin

Handler = Callable[[web.Request], Awaitable[web.Response]]


def sync_handlers(
    ask: Callable[[Redis], Awaitable[str]],
    last_report: Callable[[Redis], Awaitable[dict[str, Any] | None]],
    what: str,
) -> tuple[Handler, Handler]:
    """The request and report handlers of one sync (`what` names it in the 404)."""

    async def request_run(request: web.Request) -> web.Response:
        await sysadmin(request)
        return json_response({"request_id": await ask(request.app[REDIS])}, status=202)

    async def report(request: web.Request) -> web.Response:
        await sysadmin(request)
        found = await last_report(request.app[REDIS])
        if found is None:
            raise NotFound(message=f"no {what} has run yet")
        return json_response(found)

    return request_run, report


request_ldap_group_sync, get_ldap_group_sync = sync_handlers(
    group_sync.request, group_sync.last_report, "LDAP group sync"
)
request_oidc_group_sync, get_oidc_group_sync = sync_handlers(
    oidc_group_sync.request, oidc_group_sync.last_report, "OIDC group sync"
)
