"""`/api/v2.0/system/oidc/groups/sync` (Wharf's, system admins only): the OIDC group sync, as
`/ldap/groups/sync` is LDAP's. `POST` asks the job service's leader for a run now (202, with its
`request_id`); `GET` shows the last run's report (404 before any), whose `request_id` names the
request it answered and `finished_at` is "" while it runs. The leader also runs it at the fire
times of `oidc_group_sync_schedule` (`wharf_shared.oidc_group_sync`)."""

from __future__ import annotations

from aiohttp import web

from wharf_shared import oidc_group_sync
from wharf_shared.errors.harbor import NotFound
from wharf_shared.keys import REDIS
from wharf_ui.responses import json_response
from wharf_ui.security import sysadmin


async def request_oidc_group_sync(request: web.Request) -> web.Response:
    await sysadmin(request)
    request_id = await oidc_group_sync.request(request.app[REDIS])
    return json_response({"request_id": request_id}, status=202)


async def get_oidc_group_sync(request: web.Request) -> web.Response:
    await sysadmin(request)
    report = await oidc_group_sync.last_report(request.app[REDIS])
    if report is None:
        raise NotFound(message="no OIDC group sync has run yet")
    return json_response(report)
