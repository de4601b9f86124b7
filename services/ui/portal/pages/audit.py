"""The audit log (system admins only): every project's and none's rows, newest first, filtered
from the URL (`username`, `operation`, `resource_type`, `resource` contains, `from` and `to`
dates, whole UTC days) and paged. Rows come from `wharf_ui.audit_logs`, as
`/api/v2.0/audit-logs` reads them."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from wharf_shared.events import AUDIT_OPERATIONS, AUDIT_RESOURCE_TYPES
from wharf_shared.keys import DB
from wharf_ui import audit_logs
from wharf_ui.listing import order_by, where
from wharf_ui.portal.pages.paging import page_of
from wharf_ui.portal.render import page
from wharf_ui.portal.viewer import PortalError, require_sysadmin
from wharf_ui.query import Exact, Fuzzy, QueryError, Range, Term

PAGE_SIZE = 20
# What the job service records (wharf_jobservice.audit): the filters' choices.
OPERATIONS = AUDIT_OPERATIONS
RESOURCE_TYPES = AUDIT_RESOURCE_TYPES


def _day(key: str, value: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise PortalError(f"{key}: a date like 2026-12-05, not {value[:40]!r}") from None


def filter_terms(query: dict[str, str]) -> dict[str, Term]:
    """The URL's filters as the audit list's terms."""
    terms: dict[str, Term] = {}
    for key in ("username", "operation", "resource_type"):
        if query.get(key):
            terms[key] = Exact(query[key])
    if query.get("resource"):
        terms["resource"] = Fuzzy(query["resource"])
    start, end = _day("from", query.get("from", "")), _day("to", query.get("to", ""))
    if start is not None or end is not None:
        terms["op_time"] = Range(
            f"{start.isoformat()} 00:00:00" if start is not None else None,
            f"{end.isoformat()} 23:59:59.999999" if end is not None else None,
        )
    return terms


async def audit_log(request: web.Request) -> web.Response:
    await require_sysadmin(request)
    filters = {
        key: request.query.get(key, "").strip()
        for key in ("username", "operation", "resource_type", "resource", "from", "to")
    }
    try:
        conditions = where(audit_logs.AUDIT_LOGS, filter_terms(filters))
    except QueryError as exc:
        raise PortalError(str(exc)) from None
    wanted = page_of(request, PAGE_SIZE)
    order = order_by(audit_logs.AUDIT_LOGS, ())  # newest first
    async with request.app[DB].read() as conn:
        rows, total = await audit_logs.list_logs(conn, conditions, order, wanted)
    return await page(
        request,
        "audit_log.html",
        title="Audit log",
        section="logs",
        rows=rows,
        total=total,
        page_number=wanted.number,
        page_size=wanted.size,
        filters=filters,
        filtered=any(filters.values()),
        operations=OPERATIONS,
        resource_types=RESOURCE_TYPES,
    )


PAGES = (("/harbor/logs", audit_log, "portal_audit_log"),)
