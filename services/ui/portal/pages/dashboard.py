"""The dashboard: how much each project stores, pushes and pulls over the last two weeks, the
counts `/statistics` gives, and for system admins the instances behind each proxy with their
health (each proxy's `/health/upstreams`, fetched from here with the metrics token).

Proxies: `WHARF_UI__PROXY_URLS`, or the external URL (one proxy in front, as `wharf run`).
The job service's workers are not listed: they register nowhere (no heartbeat in Redis), so
nothing could say which of them are running.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from wharf_shared.keys import DB, SETTINGS
from wharf_ui import dashboard, statistics, users
from wharf_ui.keys import HTTP
from wharf_ui.portal.charts import Series, grouped_chart, hbar_chart
from wharf_ui.portal.render import page, size
from wharf_ui.portal.viewer import require_viewer

CHART_PROJECTS = 10
POOL_LABELS = {"registry": "Registry", "token": "Token service", "ui": "UI and API"}


async def dashboard_page(request: web.Request) -> web.Response:
    viewer = await require_viewer(request)
    identity = viewer.identity
    today = dt.datetime.now(dt.UTC).date()
    async with request.app[DB].read() as conn:
        storage = await dashboard.storage_by_project(conn, identity)
        activity = await dashboard.daily_activity(conn, identity, today)
        counts = await statistics.statistics(conn, identity)
        user_count = await users.count(conn) if viewer.sysadmin else None
    # A system admin's total counts each object once across projects; anyone else's is the sum
    # of the projects they see (a layer two of them share counts twice).
    stored = counts["total_storage_consumption"] if viewer.sysadmin else sum(x.size for x in storage)
    proxies: list[dashboard.ProxyHealth] = []
    if viewer.sysadmin:
        settings = request.app[SETTINGS]
        urls = list(settings.ui.proxy_urls) or [settings.external_url]
        token = settings.metrics.token.get_secret_value() if settings.metrics.token is not None else None
        proxies = await dashboard.proxies_health(request.app[HTTP], urls, token)
    top = storage[:CHART_PROJECTS]
    # The axis names a month where it starts (and on the first day shown); other days by number.
    days = [
        f"{x.day:%b} {x.day.day}" if i == 0 or x.day.day == 1 else str(x.day.day)
        for i, x in enumerate(activity)
    ]
    return await page(
        request,
        "dashboard.html",
        title="Dashboard",
        section="dashboard",
        counts=counts,
        user_count=user_count,
        stored=stored,
        storage=top,
        more_projects=len(storage) - len(top),
        storage_chart=hbar_chart([(x.name, x.size) for x in top], size),
        activity=activity,
        activity_total=(sum(x.pushes for x in activity), sum(x.pulls for x in activity)),
        activity_chart=grouped_chart(
            days,
            [
                Series("pushes", "bar", [x.pushes for x in activity]),
                Series("pulls", "bar-alt", [x.pulls for x in activity]),
            ],
            names=[x.day.isoformat() for x in activity],
        ),
        proxies=proxies,
        pool_labels=POOL_LABELS,
    )


PAGES = (("/harbor/dashboard", dashboard_page, "portal_dashboard"),)
