"""Registries (system admins): the peers replication pushes to and pulls from, with their
status, and the forms that create, edit, test and delete them through `/api/v2.0/registries`.
Never the password: only the username of a stored credential is shown."""

from __future__ import annotations

from aiohttp import web

from wharf_shared.keys import DB
from wharf_ui import registries
from wharf_ui.listing import order_by, where
from wharf_ui.pages import list_query
from wharf_ui.paths import ID_MAX
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import PortalNotFound, require_sysadmin
from wharf_ui.query import Fuzzy

PAGE_SIZE = "15"


async def registry_list(request: web.Request) -> web.Response:
    await require_sysadmin(request)
    if "page_size" not in request.query:
        request = request.clone(rel_url=request.rel_url.update_query(page_size=PAGE_SIZE))
    query = list_query(request, registries.REGISTRIES)
    name = request.query.get("name", "")
    editing = None
    edit = request.query.get("edit", "")
    conditions = where(registries.REGISTRIES, {**query.terms, **({"name": Fuzzy(name)} if name else {})})
    order = order_by(registries.REGISTRIES, query.sort)
    async with request.app[DB].read() as conn:
        found, total = await registries.list_registries(conn, conditions, order, query.page)
        if edit:
            if not edit.isdigit() or not 0 < int(edit) <= ID_MAX:
                raise PortalNotFound(f"There is no registry {edit[:40]!r}.")
            editing = await registries.get(conn, int(edit))
    return await page(
        request,
        "registries.html",
        title="Registries",
        section="registries",
        registries=found,
        types=registries.ADAPTERS,
        total=total,
        page_number=query.page.number,
        page_size=query.page.size,
        name=name,
        editing=editing,
    )


PAGES = (("/harbor/registries", registry_list, "portal_registries"),)
