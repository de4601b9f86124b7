"""The runtime configuration (system admins only), read as `/api/v2.0/configurations` shows it
(`wharf_ui.configurations.current`: Harbor's keys, straight from SQL) and saved with one PUT of
those keys. The auth mode is shown, not offered (the identity modes' keys are set through the
API)."""

from __future__ import annotations

from aiohttp import web

from wharf_shared import runtime
from wharf_shared.keys import DB, SETTINGS
from wharf_ui import configurations
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import require_sysadmin


async def config_page(request: web.Request) -> web.Response:
    await require_sysadmin(request)
    async with request.app[DB].read() as conn:
        shown = await configurations.current(conn, runtime.defaults(request.app[SETTINGS]))
    return await page(
        request,
        "configs.html",
        title="Configuration",
        section="configs",
        config={name: item["value"] for name, item in shown.items()},
        token_minutes_max=configurations.TOKEN_MINUTES_MAX,
    )


PAGES = (("/harbor/configs", config_page, "portal_configs"),)
