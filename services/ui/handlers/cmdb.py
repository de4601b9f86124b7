"""`POST /api/v2.0/system/cmdb/sync` (Wharf's own, system admins): one run of the CMDB ownership
sync now, here, answered with its report (`wharf_shared.cmdb`); `?dry_run=true` plans it and
changes nothing. The job service runs the same sync on `cmdb_schedule`."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.cmdb import sync
from wharf_shared.keys import DB, SETTINGS
from wharf_shared.logging import get_logger
from wharf_shared.secrets import SecretBox
from wharf_ui.handlers.scope import flag
from wharf_ui.keys import HTTP, RUNTIME
from wharf_ui.responses import json_response
from wharf_ui.security import sysadmin

log = get_logger(__name__)


async def sync_cmdb(request: web.Request) -> web.Response:
    identity = await sysadmin(request)
    dry_run = flag(request, "dry_run", False)
    config = (await request.app[RUNTIME].get()).cmdb
    box = SecretBox(request.app[SETTINGS].secret_key_bytes())
    log.info("cmdb_sync_requested", by=identity.username, dry_run=dry_run)
    report = await sync.run(request.app[DB], request.app[HTTP], config, box, dry_run=dry_run)
    return json_response(report.as_json())
