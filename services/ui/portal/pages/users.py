"""Users (system admins only): the accounts with their e-mail, name and admin flag, found by
username; creating one, making or unmaking a system admin, resetting a password and deleting go
to `/api/v2.0/users…`, which applies the rules (`wharf_ui.users`). An admin's own row offers
none of these: the API refuses an admin their own flag and their own deletion, and their own
password needs the old one (the account page)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from wharf_shared.db.accounts import User
from wharf_shared.keys import DB
from wharf_ui import users
from wharf_ui.listing import order_by, where
from wharf_ui.portal.pages.account import password_rule
from wharf_ui.portal.pages.paging import page_of
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import PortalError, require_sysadmin
from wharf_ui.query import Fuzzy, QueryError, SortKey

PAGE_SIZE = 15
BY_NAME = (SortKey("username", False),)


@dataclass(frozen=True, slots=True)
class UserRow:
    user: User
    is_viewer: bool  # the admin looking: no flag change, no delete, no reset here


async def user_list(request: web.Request) -> web.Response:
    viewer = await require_sysadmin(request)
    username = request.query.get("username", "").strip()
    try:
        conditions = where(users.USERS, {"username": Fuzzy(username)} if username else {})
    except QueryError as exc:
        raise PortalError(str(exc)) from None
    wanted = page_of(request, PAGE_SIZE)
    async with request.app[DB].read() as conn:
        found, total = await users.list_users(conn, conditions, order_by(users.USERS, BY_NAME), wanted)
    rows = [UserRow(x, x.id == viewer.identity.user_id) for x in found]
    return await page(
        request,
        "users.html",
        title="Users",
        section="users",
        rows=rows,
        total=total,
        page_number=wanted.number,
        page_size=wanted.size,
        username=username,
        password_rule=password_rule(),
    )


PAGES = (("/harbor/users", user_list, "portal_users"),)
